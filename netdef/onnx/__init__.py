"""ONNX export and import (the `onnx` extra: pip install 'netdef[onnx]').

    netdef.onnx.export(net, 'model.onnx', opset=17, dynamic=False)   a built Net -> ModelProto
    netdef.onnx.compare(model, net)      {output: (max abs error, relative)} against ONNX Runtime
    netdef.onnx.import_model('model.onnx')   -> (NetParameter, {layer: [arrays]})
    netdef.onnx.to_caffe('model.onnx', 'net.prototxt', 'net.caffemodel')   -> the Net

Importing this package needs nothing beyond netdef; the functions import onnx (and
onnxruntime for compare) when called, with an error naming the extra when it is missing.
"""
from ._deps import DEFAULT_OPSET, MIN_OPSET


def export(net, path=None, *, opset=DEFAULT_OPSET, dynamic=False):
    from .exporter import export as _export

    return _export(net, path, opset=opset, dynamic=dynamic)


def compare(model, net, shapes=None, seed=0, threads=0, inputs=None):
    from .check import compare as _compare

    return _compare(model, net, shapes=shapes, seed=seed, threads=threads, inputs=inputs)


def import_model(model, input_shapes=None):
    from .importer import import_model as _import_model

    return _import_model(model, input_shapes)


def to_caffe(model, prototxt, caffemodel=None, input_shapes=None):
    from .importer import to_caffe as _to_caffe

    return _to_caffe(model, prototxt, caffemodel, input_shapes)


__all__ = ["export", "compare", "import_model", "to_caffe", "DEFAULT_OPSET", "MIN_OPSET"]
