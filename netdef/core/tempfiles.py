"""Temporary files and directories named after the process that makes them, so that the next
writer of the same target removes what a killed process left behind (SIGKILL skips every
cleanup, and a VGG16 snapshot's temporary file is half a gigabyte).

Names: `<lead><pid>.<random><suffix>`, e.g. `m_iter_10.caffemodel.4711.k2j9x.tmp`. A leftover is
removed only when its process no longer exists; a reused pid keeps it (the safe way round)."""
import os
import shutil
import tempfile


def prefix(lead):
    return f"{lead}{os.getpid()}."


def mkstemp(directory, lead, suffix):
    """(fd, path) of a new temporary file in `directory` for the target named by `lead`,
    after removing the ones that dead processes left for the same target."""
    remove_stale(directory, lead, suffix)
    return tempfile.mkstemp(prefix=prefix(lead), suffix=suffix, dir=directory)


def mkdtemp(directory, lead):
    remove_stale(directory, lead, "")
    return tempfile.mkdtemp(prefix=prefix(lead), dir=directory)


def remove_stale(directory, lead, suffix):
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not name.startswith(lead) or not name.endswith(suffix):
            continue
        pid = name[len(lead):].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
