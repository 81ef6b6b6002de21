"""Python: a layer written in Python by the user, with pycaffe's interface.

    layer { name: "mine" type: "Python" bottom: "x" top: "y"
      python_param { module: "my_layers" layer: "Double" param_str: "{'factor': 2}" } }

    # my_layers.py, next to the prototxt or on PYTHONPATH
    import netdef

    class Double(netdef.Layer):          # pycaffe: class Double(caffe.Layer)
        def setup(self, bottom, top):    # self.param_str and self.phase are already set
            self.factor = eval(self.param_str)['factor']
        def reshape(self, bottom, top):
            top[0].reshape(*bottom[0].data.shape)
        def forward(self, bottom, top):
            top[0].data[...] = self.factor * bottom[0].data
        def backward(self, top, propagate_down, bottom):
            if propagate_down[0]:
                bottom[0].diff[...] = self.factor * top[0].diff

As in Caffe, reshape runs before every forward (not only at setup), so a Python data layer
may load its next sample in reshape, as FCN's do; when the tops change shape, the layers after
it are reshaped too.

The module is imported by name (logged as 'Importing Python layer module X') with the
prototxt's directory appended to sys.path. The instance the net holds is the user's class
itself (net.layers[i] / net.layer_dict[name]), so its methods and attributes can be reached
from Python as in pycaffe. Blobs are netdef Blobs (.data and .diff are numpy arrays on the
CPU, cupy arrays on a GPU; .reshape(*shape); .num/.channels/.height/.width); learnable blobs
are added with self.blobs.add_blob(*shape). A Python layer may compute in place (top = bottom)
unless its class sets in_place_ok = False.

Errors: an empty module or layer name, a file path given as the module, a module that fails
to import (the import error is quoted), a missing class, or a class that does not subclass
netdef.Layer: a LayerSetupError naming the module and class.

The module name `voc_layers` (FCN's Python data layers VOCSegDataLayer and SBDDSegDataLayer)
resolves to netdef's own implementation, netdef.data.voc_layers, so the published FCN
prototxts run unchanged; a user module of that name is not consulted.
"""
import importlib
import logging
import os
import sys

from ..blob import Blob
from ..errors import LayerSetupError
from ..layer import Layer
from ..layers import register_layer

log = logging.getLogger("netdef")

#: module names netdef answers itself
ALIASES = {"voc_layers": "netdef.data.voc_layers"}


class BlobVec(list):
    """A Python layer's learnable blobs (pycaffe's self.blobs), with add_blob(*shape)."""

    def __init__(self, layer):
        super().__init__()
        self._layer = layer

    def add_blob(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        layer = self._layer
        self.append(Blob(shape, dtype=layer.dtype, backend=layer.backend, name=f"{layer.name}[{len(self)}]"))
        return self[-1]


def _add_search_path(net_filename):
    if not net_filename:
        return None
    d = os.path.dirname(os.path.abspath(net_filename))
    if d not in sys.path:
        sys.path.append(d)
    return d


def _overrides(klass, attr):
    return any(attr in vars(c) for c in klass.__mro__ if c is not Layer and c is not object
               and c.__module__ != __name__)


@register_layer("Python")
class PythonLayer(Layer):
    """Placeholder in the registry: create_layer calls from_layer_param, which returns an
    instance of the class python_param names."""

    @classmethod
    def from_layer_param(cls, layer_param, phase, backend, dtype, net_filename=None):
        pp = layer_param.python_param
        module, name = pp.module.strip(), pp.layer.strip()

        def err(msg):
            return LayerSetupError(f"Python: {msg}", layer=layer_param.name)

        if not layer_param.HasField("python_param") or not module:
            raise err("python_param.module is not set (the Python module holding the layer class)")
        if not name:
            raise err(f"python_param.layer is not set (the class in module '{module}')")
        if module.endswith(".py") or "/" in module or "\\" in module:
            raise err(f"python_param.module must be a module name, not a file path: '{module}' (put the "
                      "file next to the prototxt or on PYTHONPATH and give its name without .py)")
        where = _add_search_path(net_filename)
        target = ALIASES.get(module, module)
        if target != module:
            log.info("Importing Python layer module %s (netdef's implementation %s)", module, target)
        else:
            log.info("Importing Python layer module %s", module)
        try:
            mod = importlib.import_module(target)
        except Exception as e:
            searched = f" (searched the prototxt's directory {where} and sys.path)" if where else ""
            raise err(f"cannot import module '{module}'{searched}: {type(e).__name__}: {e}") from e
        klass = getattr(mod, name, None)
        if klass is None:
            raise err(f"module '{module}' ({getattr(mod, '__file__', '?')}) has no class '{name}'")
        if not (isinstance(klass, type) and issubclass(klass, Layer)):
            what = "class" if isinstance(klass, type) else type(klass).__name__
            raise err(f"'{module}.{name}' ({what}) is not a subclass of netdef.Layer; write "
                      f"'class {name}(netdef.Layer)' (pycaffe's caffe.Layer)")
        if klass is Layer:
            raise err(f"'{module}.{name}' is netdef.Layer itself; give a subclass")
        try:
            obj = klass(layer_param, phase, backend, dtype)
        except TypeError as e:
            raise err(f"cannot construct '{module}.{name}': {e} (a Python layer's __init__ must accept "
                      "the arguments of netdef.Layer.__init__; pycaffe layers usually define none)") from e
        obj.type = "Python"
        obj.param_str = pp.param_str
        obj.net_filename = net_filename
        if isinstance(obj.blobs, list) and not isinstance(obj.blobs, BlobVec) and not obj.blobs:
            obj.blobs = BlobVec(obj)
        if not _overrides(klass, "in_place_ok"):
            obj.in_place_ok = True
        _reshape_before_forward(obj)
        return obj


def _reshape_before_forward(obj):
    """As Caffe does for every layer, call reshape before each forward (FCN-style Python data
    layers load the next image in reshape); if the tops change shape, the Net reshapes the
    layers after this one."""
    forward = obj.forward

    def forward_with_reshape(bottom, top):
        before = [t.shape for t in top]
        obj.reshape(bottom, top)
        if [t.shape for t in top] != before:
            obj.tops_reshaped = True
        forward(bottom, top)

    forward_with_reshape.__doc__ = forward.__doc__
    obj.forward = forward_with_reshape
