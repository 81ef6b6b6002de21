"""The registry of layer types, keyed by Caffe's type name. Every module in this package is
one Caffe layer type and registers itself with @register_layer("TypeName")."""
import importlib
import pkgutil

from ..errors import LayerSetupError

LAYERS = {}
_loaded = False


def register_layer(type_name):
    def deco(cls):
        if type_name in LAYERS and LAYERS[type_name] is not cls:
            raise RuntimeError(f"layer type {type_name!r} registered twice")
        cls.type = type_name
        LAYERS[type_name] = cls
        return cls

    return deco


def _load_all():
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def layer_class(type_name, layer_name=None):
    _load_all()
    cls = LAYERS.get(type_name)
    if cls is None:
        if type_name == "":
            raise LayerSetupError("layer has no type", layer=layer_name)
        known = ", ".join(sorted(LAYERS))
        raise LayerSetupError(f"unknown layer type '{type_name}'; known types: {known}", layer=layer_name)
    return cls


def create_layer(layer_param, phase=None, backend=None, dtype=None, net_filename=None):
    """An instance of the layer's type, made by its class's from_layer_param (the Python layer
    returns an instance of the user's class). `net_filename` (the prototxt the layer comes from,
    or None) becomes layer.net_filename: data layers resolve relative paths against its
    directory."""
    import numpy as np

    from ..core import netdef_pb2 as pb

    cls = layer_class(layer_param.type, layer_param.name)
    layer = cls.from_layer_param(layer_param, pb.TEST if phase is None else phase, backend,
                                 dtype or np.float32, net_filename=net_filename)
    layer.net_filename = net_filename
    return layer


def known_types():
    _load_all()
    return sorted(LAYERS)
