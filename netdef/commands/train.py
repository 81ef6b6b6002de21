"""`netdef train <solver.prototxt>`: train with a solver file, logging Caffe's lines; resume from
a .solverstate (--snapshot) or fine-tune from caffemodels (--weights). SIGINT snapshots and
stops, SIGHUP snapshots and goes on. Every run writes its log in glog format to <snapshot_prefix>.log
(--log FILE elsewhere, --log none not at all; a resumed run appends): netdef/logfile.py.
--tensorboard DIR writes TensorBoard event files (netdef/tensorboard.py)."""
import logging

from ..errors import NetdefError
from ..logfile import LogFile
from ..solver import get_solver, read_solver
from ._common import (add_device_arguments, add_file_argument, add_log_format_argument,
                      file_argument, select_device, set_log_format)

log = logging.getLogger("netdef")

HELP = "train a net with a solver file; logs as Caffe does"


def configure(p):
    add_file_argument(p, "solver", "solver", "solver .prototxt")
    p.add_argument("--weights", help="caffemodel(s) to fine-tune from, comma-separated")
    p.add_argument("--snapshot", help=".solverstate to resume from")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar with ETA (auto: when stdout is a terminal)")
    p.add_argument("--log", metavar="FILE", help="log file in glog format (default: <snapshot_prefix>.log "
                   "next to the snapshots; 'none': no file); a resumed run appends to it")
    p.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard event files (scalars, "
                   "validation predictions) to DIR; needs pip install 'netdef[tensorboard]'")
    add_log_format_argument(p)
    add_device_arguments(p)


def run(args):
    args.solver = file_argument(args, "solver", "solver")
    if args.snapshot and args.weights:
        raise NetdefError("give --snapshot to resume or --weights to fine-tune, not both")
    set_log_format(args)
    logfile = None if args.log == "none" else LogFile().attach()
    try:
        if logfile and args.log:
            logfile.open(args.log, append=bool(args.snapshot))
        return _train(args, logfile)
    except NetdefError as e:
        if logfile:
            logfile.write_error(f"{type(e).__name__}: {e}")
        raise
    finally:
        if logfile:
            logfile.close()


def _train(args, logfile):
    param, filename = read_solver(args.solver)
    select_device(args, param)
    log.info("Starting Optimization")
    solver = get_solver(param, filename=filename)
    if logfile and logfile.path is None:
        try:
            logfile.open(solver.snapshot_prefix + ".log", append=bool(args.snapshot))
        except NetdefError as e:
            raise NetdefError(f"{e}; give --log FILE, or --log none") from None
    monitor = None
    if args.tensorboard:
        from ..tensorboard import TensorBoardMonitor

        monitor = TensorBoardMonitor(solver, args.tensorboard)
    if args.weights:
        for w in args.weights.split(","):
            if w:
                solver.copy_trained_layers(w)
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    try:
        with solver.handle_signals():
            solver.solve(args.snapshot, progress=progress)
    finally:
        if monitor:
            monitor.close()
        solver.close()
    return 0
