"""`netdef train <solver.prototxt>`: train with a solver file, logging Caffe's lines; resume from
a .solverstate (--snapshot) or fine-tune from caffemodels (--weights). SIGINT snapshots and
stops, SIGHUP snapshots and goes on. Every run writes its log in glog format to <snapshot_prefix>.log
(--log FILE elsewhere, --log none not at all; a resumed run appends): netdef/logfile.py.
--tensorboard DIR writes TensorBoard event files (netdef/tensorboard.py).

Data-parallel (netdef/solver/distributed.py): `mpiexec -n N netdef train S --gpu 0,1,...` (rank r
on the r-th listed device; `--cpu` for CPU ranks; any MPI launcher: mpiexec with hosts, srun), or
`netdef train S --gpu 0,1` / `--gpu all` / `--cpu --procs N`, which start the N ranks themselves
through mpiexec (the one next to this Python first, as the mpich wheel installs it). Rank 0 logs,
writes the log file, the TensorBoard events and the snapshots; other ranks print only warnings and
errors, prefixed with their rank. Launched by netdef on the CPU, each rank gets cores / N
OpenMP/BLAS threads unless OMP_NUM_THREADS is set."""
import logging
import os
import shutil
import signal
import subprocess
import sys

from ..errors import NetdefError
from ..watch.logfile import LogFile
from ..solver import get_solver, read_solver
from ..solver import distributed
from ._common import (add_device_arguments, add_file_argument, add_log_format_argument,
                      file_argument, gpu_ids, select_device, set_log_format)

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
    p.add_argument("--procs", type=int, metavar="N", help="data-parallel training in N processes "
                   "(started through mpiexec; with --gpu 0,1,...: one per listed device); needs "
                   "pip install 'netdef[mpi]'")
    add_log_format_argument(p)
    add_device_arguments(p)


def run(args):
    args.solver = file_argument(args, "solver", "solver")
    if args.snapshot and args.weights:
        raise NetdefError("give --snapshot to resume or --weights to fine-tune, not both")
    gpus = gpu_ids(args.gpu) if args.gpu is not None else None
    if args.procs is not None and args.procs < 1:
        raise NetdefError(f"--procs must be >= 1, got {args.procs}")
    if gpus and len(gpus) > 1 and args.procs not in (None, len(gpus)):
        raise NetdefError(f"--procs {args.procs} but --gpu {args.gpu} lists {len(gpus)} devices: "
                          "one process per device")
    ranks = len(gpus) if gpus and len(gpus) > 1 else (args.procs or 1)
    comm = distributed.init_world()
    if comm is None and ranks > 1:
        if gpus:
            from ..backend import cuda
            from ..errors import BackendError

            try:
                for g in gpus:  # before starting processes that would all fail the same way
                    cuda.check_available(g)
            except BackendError as e:
                raise NetdefError(f"--gpu {args.gpu}: {e}") from None
        return launch(args, ranks, gpus)
    if comm is not None:
        if gpus and len(gpus) > 1:
            if len(gpus) != comm.size:
                raise NetdefError(f"--gpu {args.gpu} lists {len(gpus)} devices for {comm.size} MPI "
                                  "processes: one device per process")
            args.gpu = str(gpus[comm.rank])
        elif args.procs not in (None, comm.size):
            raise NetdefError(f"--procs {args.procs} inside an MPI job of {comm.size} processes")
    with distributed.abort_on_error(comm):
        return _run(args, comm)


def launch(args, ranks, gpus):
    """Start `ranks` processes of this command through mpiexec; their exit status."""
    distributed.mpi()  # the clear error naming the extra, before starting anything
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    mpiexec = beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")
    if mpiexec is None:
        raise NetdefError("no mpiexec found (next to this Python or on PATH): pip install 'netdef[mpi]'")
    argv = [sys.executable, "-m", "netdef", "train", args.solver]
    for option in ("weights", "snapshot", "log", "tensorboard"):
        if getattr(args, option):
            argv += [f"--{option}", getattr(args, option)]
    argv += ["--progress", args.progress, "--log-format", args.log_format]
    if gpus:
        argv += ["--gpu", ",".join(map(str, gpus))]
    else:
        argv += ["--cpu"] if args.cpu else []
    if args.tf32:
        argv.append("--tf32")
    if args.precision:
        argv += ["--precision", args.precision]
    if getattr(args, "debug", False):
        argv.append("--debug")
    env = dict(os.environ)
    if not (gpus and len(gpus) > 1):
        threads = str(max(1, (os.cpu_count() or 1) // ranks))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, threads)
    cmd = [mpiexec] + _mpiexec_flags(mpiexec) + ["-n", str(ranks)] + argv
    log.info("Launching %d ranks: %s", ranks, " ".join(cmd))
    # mpiexec in its own process group, so that a Ctrl-C at the terminal reaches it once, from
    # here: mpiexec passes it on to every rank (each snapshots once and stops); a second Ctrl-C
    # makes mpiexec abort the job
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    forward = lambda signum, frame: proc.send_signal(signum)
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _mpiexec_flags(mpiexec):
    """Open MPI refuses to run as root without --allow-run-as-root; MPICH needs nothing."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        try:
            out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
        if "Open MPI" in out or "OpenRTE" in out:
            return ["--allow-run-as-root"]
    return []


def _run(args, comm):
    set_log_format(args)
    root = comm is None or comm.rank == 0
    logfile = None if args.log == "none" or not root else LogFile().attach()
    try:
        if logfile and args.log:
            logfile.open(args.log, append=bool(args.snapshot))
        return _train(args, logfile, root)
    except NetdefError as e:
        if logfile:
            logfile.write_error(f"{type(e).__name__}: {e}")
        raise
    finally:
        if logfile:
            logfile.close()


def _train(args, logfile, root=True):
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
    if args.tensorboard and root:
        from ..watch.tensorboard import TensorBoardMonitor

        monitor = TensorBoardMonitor(solver, args.tensorboard)
    if args.weights:
        for w in args.weights.split(","):
            if w:
                solver.copy_trained_layers(w)
    progress = {"auto": None, "on": True, "off": False}[args.progress] if root else False
    try:
        with solver.handle_signals():
            solver.solve(args.snapshot, progress=progress)
    finally:
        if monitor:
            monitor.close()
        solver.close()
    return 0
