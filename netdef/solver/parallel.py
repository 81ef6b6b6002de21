"""pycaffe's multi-process settings and its NCCL class, over MPI (distributed.py does the work).

    netdef.solver_count() / solver_rank()          the data-parallel world: 1 and 0 in one process
    netdef.set_solver_count(n) / set_solver_rank(r) / set_multiprocess(on)
    netdef.has_nccl()                               whether CuPy's NCCL is usable here
    nccl = netdef.NCCL(solver, uid); nccl.bcast(); solver.add_callback(nccl)

Caffe's python/train.py forks one process per GPU; in netdef the processes are MPI's: run the
same kind of script as `mpiexec -n 2 python train.py`, each process setting the count to the MPI
world size and its rank to its MPI rank (solver_rank() reads it: `netdef.set_solver_rank(
netdef.mpi_rank())` in a script). A solver created with a count above 1 is data-parallel (see
distributed.py): its reduce_gradients all-reduces, on GPUs with NCCL. NCCL(solver, uid) attaches
a solver created earlier; the uid is accepted for Caffe's signature, while the NCCL id itself is
made by rank 0 and broadcast over MPI (no file or pipe between the processes is needed).
nccl.bcast() sends rank 0's weights to every rank; adding the NCCL object as a solver callback
is what Caffe's scripts do and is accepted; the solver already reduces in its own step, so the
callbacks do nothing more (a gradient is never summed twice).
"""
import os

from ..core.net import Net
from ..errors import NetdefError

_state = {"count": 1, "rank": 0, "multiprocess": False, "comm": None}


def solver_count():
    return _state["count"]


def solver_rank():
    return _state["rank"]


def multiprocess():
    return _state["multiprocess"]


def world():
    """The MPI communicator of data-parallel training, or None for one process."""
    return _state["comm"] if _state["count"] > 1 else None


def mpi_rank():
    """This process's MPI rank (0 when not launched by MPI)."""
    from .distributed import launched_size, mpi

    return mpi().COMM_WORLD.rank if launched_size() > 1 else 0


def join_world(comm):
    """Make this process rank comm.rank of comm.size (`netdef train` under mpiexec)."""
    from .distributed import install_excepthook, install_rank_logging

    _state.update(count=comm.size, rank=comm.rank, comm=comm, multiprocess=True)
    install_rank_logging(comm.rank)
    install_excepthook(comm)


def set_solver_count(count):
    """Caffe's Caffe::set_solver_count: above 1, the MPI world must have that many processes."""
    count = int(count)
    if count < 1:
        raise NetdefError(f"solver count must be >= 1, got {count}")
    if count == 1:
        _state.update(count=1, rank=0)
        return
    from .distributed import launched_size, mpi

    size = mpi().COMM_WORLD.size if launched_size() > 1 else 1
    if size != count:
        raise NetdefError(f"solver count {count} needs {count} MPI processes, this job has {size}: "
                          f"run the script as `mpiexec -n {count} python script.py` (or `netdef "
                          f"train --procs {count}` / --gpu 0,1,...)")
    join_world(mpi().COMM_WORLD)


def set_solver_rank(rank):
    rank = int(rank)
    if not 0 <= rank < _state["count"]:
        raise NetdefError(f"solver rank {rank} is outside [0, {_state['count']}) (solver_count "
                          f"{_state['count']})")
    comm = _state["comm"]
    if comm is not None and _state["count"] > 1 and rank != comm.rank:
        raise NetdefError(f"solver rank {rank} differs from this process's MPI rank {comm.rank}: "
                          "in netdef the ranks are MPI's (use netdef.mpi_rank())")
    _state["rank"] = rank


def set_multiprocess(on):
    _state["multiprocess"] = bool(on)


def has_nccl():
    """Whether this process can all-reduce gradients across GPUs with NCCL (CuPy's nccl module
    imports and a GPU is present)."""
    try:
        import cupy
        from cupy.cuda import nccl  # noqa: F401

        return bool(getattr(cupy.cuda, "nccl_enabled", True)) and cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


class NCCL:
    """pycaffe's caffe.NCCL(solver, uid): the communicator of data-parallel training (see the
    module docstring). With a solver count of 1 there is nothing to communicate."""

    def __init__(self, solver, uid=None):
        self.solver = solver
        self.uid = uid
        if solver_count() > 1 and getattr(solver, "parallel", None) is None:
            solver.attach_parallel(world())

    @staticmethod
    def new_uid():
        """An id for a communicator, as Caffe's NCCL::new_uid (netdef makes the NCCL id on rank 0
        and broadcasts it over MPI, so this one only fills the argument)."""
        return os.urandom(128)

    def bcast(self):
        """Rank 0's weights to every rank."""
        if getattr(self.solver, "parallel", None) is not None:
            self.solver.parallel.broadcast_params()

    def on_start(self):
        pass

    def on_gradients_ready(self):
        pass


Net.after_backward_types += (NCCL,)
