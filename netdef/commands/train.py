"""`netdef train <solver.prototxt>`: train with a solver file, logging Caffe's lines; resume from
a .solverstate (--snapshot) or fine-tune from caffemodels (--weights). SIGINT snapshots and
stops, SIGHUP snapshots and goes on."""
import logging

from ..errors import NetdefError
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
    add_log_format_argument(p)
    add_device_arguments(p)


def run(args):
    args.solver = file_argument(args, "solver", "solver")
    if args.snapshot and args.weights:
        raise NetdefError("give --snapshot to resume or --weights to fine-tune, not both")
    set_log_format(args)
    param, filename = read_solver(args.solver)
    select_device(args, param)
    log.info("Starting Optimization")
    solver = get_solver(param, filename=filename)
    if args.weights:
        for w in args.weights.split(","):
            if w:
                solver.copy_trained_layers(w)
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    try:
        with solver.handle_signals():
            solver.solve(args.snapshot, progress=progress)
    finally:
        solver.close()
    return 0
