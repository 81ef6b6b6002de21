"""`netdef run script.py [args...]`: run a Caffe/FCN Python script with `import caffe` = netdef.

The script runs as __main__ in this process, with sys.argv = [script, args...] and the
script's directory first on sys.path, as `python script.py args...` would run it, after
netdef.caffe_compat.install() has put the `caffe` alias on sys.modules. A real Caffe that is
importable is never hidden silently: the command refuses, naming it, unless --force. The exit
status is the script's (sys.exit), 0 when it returns; its exceptions propagate as Python's
would (with a traceback), except netdef's own errors, printed in one line as for every command.
"""
import os
import runpy
import sys

from ..pycaffe import caffe_compat
from ..errors import NetdefError

HELP = "run a Caffe/FCN Python script with `import caffe` answered by netdef"


def configure(p):
    p.add_argument("--force", action="store_true",
                   help="run on netdef even when a real Caffe is importable (hiding it)")
    p.add_argument("script", help="the Python script (e.g. FCN's solve.py or infer.py)")
    p.add_argument("args", nargs="...", help="the script's own arguments")


def run(args):
    script = args.script
    if not os.path.isfile(script):
        raise NetdefError("no such script", file=script)
    caffe_compat.install(force=args.force)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [script] + list(args.args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)  # sys.exit("message"), as the interpreter prints it
        return 1
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return 0
