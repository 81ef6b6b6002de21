"""netdef: a Caffe-style deep-learning framework with its own CUDA/C++ kernels.

pycaffe-compatible API:

    import netdef
    netdef.set_mode_cpu()            # or set_mode_gpu(); set_device(0)
    net = netdef.Net('deploy.prototxt', netdef.TEST, weights='model.caffemodel')
    out = net.forward(data=image)
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
from .solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, RMSPropSolver,
                     SGDSolver, Solver, get_solver)

TRAIN = pb.TRAIN
TEST = pb.TEST

__version__ = "0.1.0"

__all__ = [
    "Net", "Blob", "Layer", "TRAIN", "TEST", "pb", "register_layer", "known_types",
    "set_mode_cpu", "set_mode_gpu", "set_device", "set_random_seed", "set_tf32", "get_backend",
    "NetdefError", "ParseError", "LayerSetupError", "ShapeError", "BackendError", "TrainingError",
    "Solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver",
    "AdamSolver", "get_solver",
]
