"""pycaffe's multi-process settings and its NCCL class, for one process.

    netdef.solver_count() / solver_rank()          1 and 0 until data-parallel training exists
    netdef.set_solver_count(n) / set_solver_rank(r) / set_multiprocess(on)
    netdef.has_nccl()                               False: no NCCL in this build
    nccl = netdef.NCCL(solver, uid); nccl.bcast(); solver.add_callback(nccl)

Caffe's python/train.py runs one process per GPU, each setting its count and rank and joining
an NCCL communicator. Data-parallel training is not in netdef yet: with a count of 1 (one
process, the default) NCCL is a no-op, so such scripts run unchanged on one device; asking for
more processes, or an NCCL communicator across several, is a NetdefError saying so.
"""
import os

from ..errors import NetdefError

_state = {"count": 1, "rank": 0, "multiprocess": False}

_NOT_YET = ("data-parallel training over {n} solvers is not available in netdef yet "
            "(one process, one device: solver_count 1)")


def solver_count():
    return _state["count"]


def solver_rank():
    return _state["rank"]


def multiprocess():
    return _state["multiprocess"]


def set_solver_count(count):
    """Caffe's Caffe::set_solver_count; only 1 until data-parallel training exists."""
    count = int(count)
    if count < 1:
        raise NetdefError(f"solver count must be >= 1, got {count}")
    if count > 1:
        raise NetdefError(_NOT_YET.format(n=count))
    _state["count"] = count


def set_solver_rank(rank):
    rank = int(rank)
    if not 0 <= rank < _state["count"]:
        raise NetdefError(f"solver rank {rank} is outside [0, {_state['count']}) (solver_count "
                          f"{_state['count']})")
    _state["rank"] = rank


def set_multiprocess(on):
    _state["multiprocess"] = bool(on)


def has_nccl():
    """Whether this build can all-reduce gradients across GPUs with NCCL: not yet."""
    return False


class NCCL:
    """pycaffe's caffe.NCCL(solver, uid): the communicator of data-parallel training. With a
    solver count of 1 there is nothing to communicate: bcast() and the solver callbacks it
    stands for do nothing."""

    def __init__(self, solver, uid):
        if solver_count() > 1:
            raise NetdefError(_NOT_YET.format(n=solver_count()))
        self.solver = solver
        self.uid = uid

    @staticmethod
    def new_uid():
        """An id for a communicator (any bytes in one process)."""
        return os.urandom(128)

    def bcast(self):
        """Broadcast rank 0's weights to the other ranks: there are none."""

    def on_start(self):
        pass

    def on_gradients_ready(self):
        pass
