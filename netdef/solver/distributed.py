"""Data-parallel training: one process per device, launched by MPI, gradients all-reduced in
the solver's reduce_gradients step (MPI on the CPU, NCCL through CuPy on GPUs).

    mpiexec -n 2 netdef train solver.prototxt --cpu        # or netdef train ... --cpu --procs 2
    mpiexec -n 4 netdef train solver.prototxt --gpu 0,1,2,3 # or --gpu all, launched by netdef

Semantics. Every rank runs the solver on its own share of the data (the one sampler every reader
uses shards the global order: netdef.data.base.EpochSampler), with the batch size of the net
file, as Caffe. After the backward passes the trainable params' diffs (lr_mult != 0; frozen
params' diffs stay zero on every rank) are summed over the ranks, and apply_update divides by
iter_size * N, so that

    N ranks x batch B x iter_size k  computes what  1 rank x batch B x iter_size N*k  computes:

the same samples in an iteration (rank r's pass i reads the block i*N + r of the iteration's
N*k blocks), the same summed gradient, the same clipping, the same learning rate (unchanged, as
in Caffe). Bit-identical on the CPU where the order of the floating-point sums allows: with
k = 1 and N = 2 (a + b == b + a), for every rule and dtype. With k > 1 or N > 2 the single
process folds the passes left to right, ((g1 + g2) + g3) + g4, while the ranks fold their own
passes and MPI combines the partial sums in its own grouping, (g1 + g3) + (g2 + g4): equal to
rounding. Dropout masks come from per-rank streams, so nets with Dropout agree in distribution
only.

Clipping (clip_gradients) is applied to the L2 norm of the *summed* gradient of all N*k passes,
as one process with iter_size N*k clips it. Caffe 1.0's NCCL path divides the all-reduced sum
by the solver count before ClipGradients, so with N GPUs Caffe clips a norm N times smaller: its
effective threshold grows with the GPU count. netdef keeps the threshold's meaning independent
of the number of ranks (a solver file trains the same on 1 or 8 devices).

One buffer, one collective. The trainable params' diffs are views into one flat array (no copy
per iteration); four control slots follow them in the same array, so the one all-reduce per
iteration also makes the ranks agree on the loss (their sum, divided by N), a non-finite loss on
any rank (every rank stops with a TrainingError; the rank that saw it names the layer), a stop
request (SIGINT on any rank: one snapshot by rank 0, every rank stops) and a snapshot request
(SIGHUP). Requests are acted on only at that agreed point (also while rank 0 tests).

Logging: rank 0 logs Caffe's lines; "Iteration N, loss = x" is the loss agreed over the ranks,
while the "Train net output #k" lines under it are rank 0's own net outputs (as Caffe's root
solver shows them). Other ranks print warnings and errors only, prefixed "[rank r]".

Start: without random_seed rank 0 picks one and broadcasts it (the same fillers, data seeds and
global data order on every rank); the weights are then broadcast from rank 0 (after init, and
after --weights, which only rank 0 reads). Rank r > 0 draws Dropout from its own device stream.

Test nets run on rank 0 only, unsharded (their metrics are exactly the single-process ones;
the other ranks wait at the next all-reduce). Before testing and before each snapshot the
BatchNorm statistics (every blob of a BatchNorm layer) are averaged over the ranks. Snapshots
are written by rank 0 only (atomically, as always); restore() reads the files on rank 0 and
broadcasts their bytes, so no shared file system is needed, and a snapshot of N ranks resumes
on any M (the saved data-reader positions are global positions).

Failure: an exception on any rank ends the whole job with that rank's message (MPI Abort; see
abort_on_error and the excepthook installed here), never a hang.
"""
import contextlib
import logging
import os
import sys
import tempfile
import time

import numpy as np

from ..core import netdef_pb2 as pb
from ..errors import NetdefError, TrainingError
from . import parallel

log = logging.getLogger("netdef")

#: control slots after the gradients: loss, non-finite count, stop, snapshot
LOSS, NONFINITE, STOP, SNAPSHOT = range(4)
CONTROL = 4

#: the NCCL module of the GPU path; None: cupy.cuda.nccl (tests set a stand-in that carries the
#: same calls out over MPI on the emulated GPU's host memory)
nccl_module = None

#: environment variables by which MPI launchers tell a process its world size (no MPI import
#: needed to know that we were launched): MPICH/Hydra and Intel MPI, Open MPI, Slurm's srun
_LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS")


def mpi():
    """mpi4py's MPI module (initialises MPI), or a NetdefError naming the extra."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise NetdefError("data-parallel training needs mpi4py and an MPI library: "
                          f"pip install 'netdef[mpi]' ({e})") from None
    return MPI


def launched_size():
    """How many processes the MPI launcher started (1 when not launched by one), from its
    environment, without initialising MPI."""
    for var in _LAUNCHER_SIZE:
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 1


class MPIChannel:
    """Sums and broadcasts over MPI.COMM_WORLD, on host (numpy) arrays, in place."""

    def __init__(self, comm):
        self.comm = comm

    def allreduce(self, buf):
        from mpi4py import MPI

        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

    def bcast(self, buf, root=0):
        self.comm.Bcast(buf, root=root)


class NCCLChannel:
    """Sums and broadcasts device arrays with NCCL (cupy.cuda.nccl), the communicator's unique
    id made on rank 0 and broadcast over MPI (ChainerMN's and Caffe's multi-process design).
    `nccl`: the module (cupy.cuda.nccl; tests pass a stand-in to drive it on the emulated GPU)."""

    def __init__(self, comm, backend, nccl=None):
        if nccl is None:
            try:
                from cupy.cuda import nccl
            except ImportError as e:
                raise NetdefError("data-parallel training on GPUs needs NCCL through CuPy: pip install "
                                  f"'netdef[cuda12]' (or cuda13), which brings nvidia-nccl ({e})") from None
        self.nccl, self.backend = nccl, backend
        uid = nccl.get_unique_id() if comm.rank == 0 else None
        uid = comm.bcast(uid, root=0)
        self.comm = nccl.NcclCommunicator(comm.size, uid, comm.rank)
        self.types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}

    def _stream(self):
        try:
            import cupy
        except ImportError:
            return 0  # the emulated GPU: host memory, no streams
        return cupy.cuda.get_current_stream().ptr

    @staticmethod
    def _ptr(buf):
        return buf.data.ptr if hasattr(buf.data, "ptr") else buf.ctypes.data

    def allreduce(self, buf):
        p = self._ptr(buf)
        self.comm.allReduce(p, p, buf.size, self.types[buf.dtype], self.nccl.NCCL_SUM, self._stream())

    def bcast(self, buf, root=0):
        self.comm.bcast(self._ptr(buf), buf.size, self.types[buf.dtype], root, self._stream())


class DataParallel:
    """The data-parallel part of a Solver (solver.parallel), see the module docstring.
    comm: an mpi4py communicator (COMM_WORLD); nccl: cupy.cuda.nccl or a stand-in, for a solver
    on a GPU backend."""

    def __init__(self, solver, comm, nccl=None):
        self.solver, self.comm = solver, comm
        self.rank, self.size = comm.rank, comm.size
        self.host = MPIChannel(comm)
        self._nccl_module = nccl
        self.device = None
        self.buffer = None
        self.agreed = []  # the requests all ranks act on after this iteration
        self.seed = None
        self.reduce_seconds = 0.0  # time spent in the all-reduce (bench/parallel.py)
        self.reductions = 0

    @property
    def is_root(self):
        return self.rank == 0

    # ---- start ----------------------------------------------------------------------------
    def agree_seed(self, seed):
        """The solver's random_seed, or (when none is set, seed < 0) one rank 0 picks: every
        rank then builds the same nets and draws the same data seeds."""
        if seed < 0:
            seed = int.from_bytes(os.urandom(4), "little") % 2**31 if self.is_root else None
            seed = self.comm.bcast(seed, root=0)
        self.seed = int(seed)
        return self.seed

    def setup(self):
        """After the nets exist: the flat gradient buffer, the channel for it, the per-rank
        device stream, rank 0's weights on every rank."""
        s = self.solver
        xp = s.backend.xp
        if s.backend.name != "cpu":
            self.device = NCCLChannel(self.comm, s.backend, self._nccl_module or nccl_module)
        self.params = [b for b, lr in zip(s.net.learnable_params, s.net.params_lr) if lr != 0]
        total = sum(b.count for b in self.params)
        self.buffer = xp.zeros(total + CONTROL, dtype=s.dtype)
        offset = 0
        for b in self.params:
            b.use_diff_buffer(self.buffer[offset:offset + b.count])
            offset += b.count
        self.grad_count = total
        self.reseed_device_stream()
        self.broadcast_params()
        if self.is_root:
            log.info("Data-parallel training on %d ranks (%s): %d trainable values in one buffer, "
                     "one all-reduce per iteration", self.size,
                     "NCCL" if self.device else "MPI", total)

    def reseed_device_stream(self):
        """Rank r > 0 draws Dropout (and every other device-side random draw) from its own
        stream; rank 0 keeps the single-process one."""
        if self.rank and self.seed is not None:
            derived = int(np.random.default_rng([self.seed, self.rank, getattr(self.solver, "iter", 0)]).integers(0, 2**63 - 1))
            self.solver.backend.set_rng_state({"device_seed": derived})

    def _channel(self):
        return self.device or self.host

    def _all_param_blobs(self):
        seen, out = set(), []
        for layer in self.solver.net.layers:
            for b in layer.blobs:
                if id(b) not in seen:
                    seen.add(id(b))
                    out.append(b)
        return out

    def _collective(self, blobs, op):
        if not blobs:
            return
        xp = self.solver.backend.xp
        flat = xp.concatenate([b.data.reshape(-1) for b in blobs])
        if self.device is None:
            flat = np.ascontiguousarray(flat)
        op(flat)
        offset = 0
        for b in blobs:
            b.data[...] = flat[offset:offset + b.count].reshape(b.shape)
            offset += b.count

    def broadcast_params(self):
        """Every param blob of the train net (weights and statistics) as rank 0 has it."""
        self._collective(self._all_param_blobs(), lambda a: self._channel().bcast(a, 0))

    def average_statistics(self):
        """BatchNorm's running statistics averaged over the ranks (before testing and
        snapshots): each rank has seen only its share of the data."""
        blobs = [b for layer in self.solver.net.layers if layer.type == "BatchNorm" for b in layer.blobs]

        def mean(a):
            self._channel().allreduce(a)
            a /= self.size

        self._collective(blobs, mean)

    # ---- one iteration --------------------------------------------------------------------------
    def reduce(self, loss, failure):
        """The all-reduce of the gradients and the control slots; returns the loss averaged over
        the ranks; raises TrainingError on every rank when a loss was non-finite anywhere."""
        s = self.solver
        pending = list(s._requests)
        for a in pending:
            s._requests.remove(a)
        control = np.zeros(CONTROL, dtype=s.dtype)
        control[LOSS] = 0.0 if failure is not None else loss
        control[NONFINITE] = 1.0 if failure is not None else 0.0
        control[STOP] = 1.0 if "stop" in pending else 0.0
        control[SNAPSHOT] = 1.0 if "snapshot" in pending else 0.0
        self.buffer[self.grad_count:] = s.backend.asarray(control, dtype=s.dtype)
        t0 = time.perf_counter()
        self._channel().allreduce(self.buffer)
        control = s.backend.to_numpy(self.buffer[self.grad_count:])
        self.reduce_seconds += time.perf_counter() - t0
        self.reductions += 1
        self.agreed = ["stop"] if control[STOP] > 0 else ["snapshot"] if control[SNAPSHOT] > 0 else []
        bad = int(round(float(control[NONFINITE])))
        if bad:
            if failure is None:
                failure = TrainingError(f"iteration {s.iter}: the loss is non-finite on {bad} of "
                                        f"{self.size} ranks (see their messages); stopping every rank")
                failure.quiet = not self.is_root  # rank 0 says it once for the ranks that saw none
            else:
                failure.args = (f"rank {self.rank} of {self.size}: {failure}",)
            failure.collective = True
            raise failure
        return float(control[LOSS]) / self.size

    # ---- snapshots ------------------------------------------------------------------------------
    def snapshot(self, write):
        """Statistics averaged, then rank 0 writes (write: Snapshots.snapshot); the others
        record the same file names."""
        self.average_statistics()
        s = self.solver
        if self.is_root:
            path = write()
        else:
            s._check_finite_params()
            h5 = s.param.snapshot_format == pb.SolverParameter.HDF5
            path = s.snapshot_filename(".solverstate.h5" if h5 else ".solverstate")
            s._last_snapshot_iter = s.iter
            s.last_snapshot = path
        return path

    def restore(self, path, restore):
        """Rank 0 reads the solverstate and its caffemodel and broadcasts their bytes; every rank
        restores from them (restore: Snapshots.restore)."""
        s = self.solver
        files = None
        if self.is_root:
            from .snapshot import read_solverstate, read_solverstate_hdf5

            path = os.fspath(path)
            state, _ = (read_solverstate_hdf5 if path.endswith(".h5") else read_solverstate)(path)
            files = [(os.path.basename(path), _read(path))]
            if state.learned_net:
                model = s._find_learned_net(state.learned_net, path)
                files.append((os.path.basename(model), _read(model)))
        files = self.comm.bcast(files, root=0)
        if self.is_root:
            restore(path)
        else:
            with tempfile.TemporaryDirectory(prefix="netdef-restore-") as d:
                for name, data in files:
                    with open(os.path.join(d, name), "wb") as f:
                        f.write(data)
                restore(os.path.join(d, files[0][0]))
            s.last_snapshot = os.fspath(path)
        self.reseed_device_stream()

    def copy_trained_layers(self, path, copy):
        """--weights: rank 0 reads the file, the weights are broadcast."""
        if self.is_root:
            copy(path)
        self.broadcast_params()


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise NetdefError(f"cannot read {path}: {e}") from None


# ---- processes -------------------------------------------------------------------------------------
class RankFilter(logging.Filter):
    """Rank 0 logs as one process does; other ranks only warnings and errors, prefixed."""

    def __init__(self, rank):
        super().__init__()
        self.rank = rank

    def filter(self, record):
        if self.rank == 0:
            return True
        if record.levelno < logging.WARNING:
            return False
        if not getattr(record, "_netdef_rank", False):
            record.msg = f"[rank {self.rank}] {record.msg}"
            record._netdef_rank = True
        return True


def init_world():
    """Under an MPI launcher with more than one process: MPI initialised, pycaffe's solver
    count and rank set from it, logging by rank, the abort-on-exception hook installed.
    Returns the communicator, or None for one process."""
    if launched_size() <= 1:
        return None
    comm = mpi().COMM_WORLD
    if comm.size <= 1:
        return None
    parallel.join_world(comm)
    return comm


def install_rank_logging(rank):
    logger = logging.getLogger("netdef")
    if not any(isinstance(f, RankFilter) for f in logger.filters):
        logger.addFilter(RankFilter(rank))


def abort(comm, exc):
    """End every rank: this rank's message on stderr, then MPI Abort (never returns)."""
    msg = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if not isinstance(exc, (NetdefError, KeyboardInterrupt)):
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)  # a bug: where
    sys.stderr.write(f"netdef: rank {comm.rank} of {comm.size}: {msg}; aborting every rank\n")
    sys.stderr.flush()
    # the launcher forwards our stderr through a pipe and stops reading it once Abort reaches it:
    # give it a moment to pass the message on
    time.sleep(0.5)
    comm.Abort(1)


def install_excepthook(comm):
    """A Python script (pycaffe style) whose rank dies of an exception aborts the job instead of
    leaving the other ranks waiting in a collective."""
    if getattr(sys.excepthook, "_netdef_abort", False):
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        if getattr(value, "collective", False):
            return  # every rank raised it: they all end
        abort(comm, value)

    hook._netdef_abort = True
    sys.excepthook = hook


@contextlib.contextmanager
def abort_on_error(comm):
    """Around a rank's work: an exception raised on this rank alone aborts the job (its
    message first); one every rank raised together (collective: a non-finite loss) passes."""
    if comm is None:
        yield
        return
    try:
        yield
    except BaseException as e:
        if getattr(e, "quiet", False):
            raise SystemExit(1) from None
        if getattr(e, "collective", False) or isinstance(e, SystemExit) and not e.code:
            raise
        abort(comm, e)

