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
import importlib
import importlib.abc
import importlib.machinery
import sys

from .core import netdef_pb2 as pb
from .backend import (get_backend, set_device, set_mode_cpu, set_mode_gpu, set_random_seed,
                      set_tf32)
from .core.blob import Blob
from .errors import (BackendError, LayerSetupError, NetdefError, ParseError, ShapeError,
                     TrainingError)
from .core.layer import Layer
from .layers import known_types, register_layer
from .core.net import Net
from .core.precision import get_precision, set_precision
from .watch.glog import init_log, log
from .solver import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, RMSPropSolver,
                     SGDSolver, Solver, get_solver)
from .solver.parallel import (NCCL, has_nccl, mpi_rank, set_multiprocess, set_solver_count,
                              set_solver_rank, solver_count, solver_rank)
from .watch.timing import Timer

TRAIN = pb.TRAIN
TEST = pb.TEST

from ._version import __version__  # noqa: F401


def layer_type_list():
    """pycaffe's caffe.layer_type_list(): the registered layer types, in Caffe's order (its
    registry is a std::map: sorted by the bytes of the name)."""
    return sorted(known_types())


__all__ = [
    "Net", "Blob", "Layer", "TRAIN", "TEST", "pb", "register_layer", "known_types",
    "set_mode_cpu", "set_mode_gpu", "set_device", "set_random_seed", "set_tf32", "get_backend",
    "set_precision", "get_precision",
    "NetdefError", "ParseError", "LayerSetupError", "ShapeError", "BackendError", "TrainingError",
    "Solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver",
    "AdamSolver", "get_solver", "Timer", "init_log", "log", "layer_type_list", "solver_count",
    "solver_rank", "set_solver_count", "set_solver_rank", "set_multiprocess", "has_nccl", "NCCL",
    "mpi_rank",
]


#: Where the modules that sat at the top of netdef/ live since it was grouped into subpackages
#: (issue 26). `import netdef.io`, `from netdef.coord_map import crop`, `netdef.proto`,
#: pickles naming netdef.net.Net, ... get the module itself (one object under both names).
_MOVED = {
    "netdef_pb2": "core.netdef_pb2", "proto": "core.proto", "graph": "core.graph",
    "tempfiles": "core.tempfiles", "fillers": "core.fillers", "memory": "core.memory",
    "blob": "core.blob", "layer": "core.layer", "net": "core.net",
    "io": "pycaffe.io", "classifier": "pycaffe.classifier", "net_spec": "pycaffe.net_spec",
    "coord_map": "pycaffe.coord_map", "draw": "pycaffe.draw", "caffe_compat": "pycaffe.caffe_compat",
    "surgery": "fcn.surgery", "metrics": "fcn.metrics", "segment": "fcn.segment",
    "glog": "watch.glog", "logfile": "watch.logfile", "logparse": "watch.logparse",
    "plot": "watch.plot", "tensorboard": "watch.tensorboard", "timing": "watch.timing",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an import of netdef.<old name> with the module at its new path."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.partition(".")
        if package != __name__ or name not in _MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(f"{__name__}.{_MOVED[spec.name.partition('.')[2]]}")
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module):
        # the import system set the old name's spec on the module: give it back its own
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())


def __getattr__(name):
    # `import netdef; netdef.proto.read_net(...)`: the old top-level modules were attributes
    if name in _MOVED:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "onnx":  # netdef.onnx.export(...) after a plain `import netdef`; needs onnx only when called
        return importlib.import_module(f"{__name__}.onnx")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
