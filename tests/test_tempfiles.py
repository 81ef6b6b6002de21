"""Temporary files carry their process's pid: the next write of the same target removes those of
processes that no longer exist, and never a live one's, another target's, or a foreign file."""
import os
import subprocess
import sys

from netdef import proto, tempfiles


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid  # reaped: no such process now (barring reuse in these milliseconds)


def test_write_removes_what_dead_writers_left_for_the_same_target(tmp_path):
    dead = dead_pid()
    stale = tmp_path / f"m.caffemodel.{dead}.abc123.tmp"
    stale_dir = tmp_path / f".tmp-set-{dead}.xyz"
    live = tmp_path / f"m.caffemodel.{os.getpid()}.def456.tmp"   # a write in progress here
    other = tmp_path / f"n.caffemodel.{dead}.abc123.tmp"          # another target
    foreign = tmp_path / "m.caffemodel.notapid.tmp"
    for f in (stale, live, other, foreign):
        f.write_bytes(b"x")
    stale_dir.mkdir()
    (stale_dir / "set").mkdir()
    proto.atomic_write(tmp_path / "m.caffemodel", b"payload")
    assert (tmp_path / "m.caffemodel").read_bytes() == b"payload"
    assert not stale.exists()
    assert live.exists() and other.exists() and foreign.exists()
    tempfiles.mkdtemp(str(tmp_path), ".tmp-set-")
    assert not stale_dir.exists()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([live.name, other.name, foreign.name, "m.caffemodel"] +
                          [n for n in left if n.startswith(f".tmp-set-{os.getpid()}.")])


def test_names_carry_the_pid(tmp_path):
    fd, path = tempfiles.mkstemp(str(tmp_path), "w.solverstate.", ".tmp")
    os.close(fd)
    assert os.path.basename(path).startswith(f"w.solverstate.{os.getpid()}.") and path.endswith(".tmp")
