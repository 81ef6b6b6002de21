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
prototxt's directory appended to sys.path. pycaffe's behaviour comes from the class PythonLayer,
put in front of the user's class (class Double(PythonLayer, my_layers.Double), named Double):
the instance the net holds (net.layers[i] / net.layer_dict[name]) is an instance of the user's
class, so its methods and attributes can be reached from Python as in pycaffe. Blobs are
netdef Blobs (.data and .diff are numpy arrays on the CPU, cupy arrays on a GPU;
.reshape(*shape); .num/.channels/.height/.width); learnable blobs
are added with self.blobs.add_blob(*shape). A Python layer may compute in place (top = bottom)
unless its class sets in_place_ok = False.

A module written for pycaffe (`import caffe`, `class X(caffe.Layer)`) runs as it is: when no
Caffe is installed, `import caffe` is answered by netdef's alias (netdef.caffe_compat, logged);
a real Caffe is never hidden.

Errors: an empty module or layer name, a file path given as the module, a module that fails
to import (the import error is quoted), a missing class, or a class that does not subclass
netdef.Layer: a LayerSetupError naming the module and class.

The user's module always wins. Only when no module of a name in ALIASES can be found (next to
the prototxt or on sys.path) does netdef's own implementation answer it: `voc_layers` (FCN's
Python data layers VOCSegDataLayer and SBDDSegDataLayer) is then netdef.data.voc_layers, so the
published FCN prototxts run unchanged without FCN's files, and one log line says so. A user's
voc_layers.py, e.g. edited for their own data, is imported and run like any other module.
"""
import importlib
import importlib.util
import logging
import os
import sys

from ..core.blob import Blob
from ..errors import LayerSetupError
from ..core.layer import Layer
from ..layers import register_layer

log = logging.getLogger("netdef")

#: module names netdef answers itself when the user has no module of that name
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


def _declares(klass, attr):
    """Does the user's class (or a base of it outside netdef's Layer) set `attr` itself?"""
    return any(attr in vars(c) for c in klass.__mro__ if c is not Layer and c is not object
               and c.__module__ != __name__)


@register_layer("Python")
class PythonLayer(Layer):
    """pycaffe's caffe.Layer behaviour, which a user's class (a subclass of netdef.Layer) gets
    by being put in front of it: the net holds an instance of `class X(PythonLayer, UserX)`,
    made once per user class (pycaffe_class) and named, to the user, as their class.

    What it adds: self.param_str (python_param.param_str), self.blobs with add_blob(*shape), in
    place allowed unless the user's class says in_place_ok = False, and reshape before every
    forward, as Caffe's Layer::Forward does (FCN's data layers load the next sample in
    reshape); the Net sees a change of the tops' shapes and reshapes the layers after it."""

    #: python_param.param_str of the prototxt
    param_str = ""

    def __init__(self, layer_param=None, *args, **kwargs):
        super().__init__(layer_param, *args, **kwargs)
        self.param_str = self.layer_param.python_param.param_str
        if isinstance(self.blobs, list) and not isinstance(self.blobs, BlobVec) and not self.blobs:
            self.blobs = BlobVec(self)

    def forward(self, bottom, top):
        self.reshape(bottom, top)
        super().forward(bottom, top)

    @classmethod
    def from_layer_param(cls, layer_param, phase, backend, dtype, net_filename=None):
        """An instance of the class python_param names, with pycaffe's behaviour (above)."""
        if cls is not PythonLayer:  # an adapted user class built directly
            return cls(layer_param, phase, backend, dtype)
        klass = _user_class(layer_param, net_filename)
        try:
            return pycaffe_class(klass)(layer_param, phase, backend, dtype)
        except TypeError as e:
            raise LayerSetupError(
                f"Python: cannot construct '{layer_param.python_param.module.strip()}.{klass.__name__}': {e} "
                "(a Python layer's __init__ must accept the arguments of netdef.Layer.__init__; "
                "pycaffe layers usually define none)", layer=layer_param.name) from e


def pycaffe_class(klass):
    """The class the net instantiates for the user's `klass`: PythonLayer in front of it, so
    that its methods wrap the user's; made once per user class and kept on it."""
    made = vars(klass).get("_netdef_pycaffe_class")
    if made is None:
        attrs = {"__module__": klass.__module__, "__qualname__": klass.__qualname__,
                 "__doc__": klass.__doc__,
                 "in_place_ok": klass.in_place_ok if _declares(klass, "in_place_ok") else True}
        made = type(klass.__name__, (PythonLayer, klass), attrs)
        klass._netdef_pycaffe_class = made
    return made


def _import(target, module):
    """Import a layer module. One written for pycaffe (`import caffe`) gets netdef's caffe
    alias when no Caffe is importable at all, so nothing is hidden; logged."""
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name != "caffe":
            raise
        from ..pycaffe import caffe_compat

        if caffe_compat.real_caffe() is not None:
            raise
        log.info("Python layer module %s imports caffe, which is not installed: answering it "
                 "with netdef (netdef.caffe_compat)", module)
        caffe_compat.install()
        return importlib.import_module(target)


def _user_class(layer_param, net_filename):
    """The class python_param names, imported, checked to subclass netdef.Layer."""
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
    target = module
    if module in ALIASES and importlib.util.find_spec(module) is None:
        # No user module of that name anywhere: netdef's own implementation answers it. A
        # user's module, even one that then fails to import, always wins (FCN users edit
        # voc_layers.py for their own data).
        target = ALIASES[module]
        log.info("Importing Python layer module %s: none next to the prototxt or on sys.path, "
                 "using netdef's implementation %s", module, target)
    else:
        log.info("Importing Python layer module %s", module)
    try:
        mod = _import(target, module)
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
    if issubclass(klass, PythonLayer):
        raise err(f"'{module}.{name}' subclasses netdef's PythonLayer; subclass netdef.Layer "
                  "(pycaffe's caffe.Layer) instead")
    return klass
