"""netdef: a Caffe-style deep-learning framework with its own CUDA/C++ kernels.

pycaffe-compatible API:

    import netdef
    netdef.set_mode_cpu()            # or set_mode_gpu(); set_device(0)
    net = netdef.Net('deploy.prototxt', netdef.TEST, weights='model.caffemodel')
    out = net.forward(data=image)

and pycaffe's module functions: Timer, init_log / log (glog.py), layer_type_list,
solver_count / solver_rank / set_solver_count / set_solver_rank / set_multiprocess, has_nccl and
NCCL (data-parallel training over MPI, netdef's mpi_rank() the process's rank: solver/parallel.py),
set_random_seed.
pycaffe's submodules are netdef.io, netdef.classifier (Classifier, Detector), netdef.draw,
netdef.coord_map and netdef.net_spec; an unchanged `import caffe` script runs with
`netdef run script.py` (netdef.caffe_compat: the `caffe` alias, never over a real Caffe).
"""
from . import netdef_pb2 as pb
from .backend import (get_backend, set_device, set_mode_cpu, set_mode_gpu, set_random_seed,
                      set_tf32)
from .blob import Blob
from .errors import (BackendError, LayerSetupError, NetdefError, ParseError, ShapeError,
                     TrainingError)
from .layer import Layer
from .layers import known_types, register_layer
from .net import Net
from .glog import init_log, log
from .solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, RMSPropSolver,
                     SGDSolver, Solver, get_solver)
from .solver.parallel import (NCCL, has_nccl, mpi_rank, set_multiprocess, set_solver_count,
                              set_solver_rank, solver_count, solver_rank)
from .timing import Timer

TRAIN = pb.TRAIN
TEST = pb.TEST

__version__ = "0.1.0"


def layer_type_list():
    """pycaffe's caffe.layer_type_list(): the registered layer types, in Caffe's order (its
    registry is a std::map: sorted by the bytes of the name)."""
    return sorted(known_types())


__all__ = [
    "Net", "Blob", "Layer", "TRAIN", "TEST", "pb", "register_layer", "known_types",
    "set_mode_cpu", "set_mode_gpu", "set_device", "set_random_seed", "set_tf32", "get_backend",
    "NetdefError", "ParseError", "LayerSetupError", "ShapeError", "BackendError", "TrainingError",
    "Solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver",
    "AdamSolver", "get_solver", "Timer", "init_log", "log", "layer_type_list", "solver_count",
    "solver_rank", "set_solver_count", "set_solver_rank", "set_multiprocess", "has_nccl", "NCCL",
    "mpi_rank",
]
