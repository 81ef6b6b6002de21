"""An exported model run in ONNX Runtime next to the netdef Net it came from, on the same random
inputs: the largest difference of every output."""
import numpy as np

from ..errors import NetdefError
from ._deps import require_onnxruntime

#: the default tolerance of `netdef export-onnx --check`: the largest difference over the
#: output's largest magnitude
RTOL = 1e-4


def run_onnx(model, feeds, threads=0):
    """{output name: array} of `model` (a ModelProto or its bytes) in ONNX Runtime on the CPU."""
    ort = require_onnxruntime()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    data = model if isinstance(model, bytes) else model.SerializeToString()
    try:
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))
    except Exception as e:  # onnxruntime raises its own exception types
        raise NetdefError(f"ONNX Runtime could not run the model: {e}") from None


def compare(model, net, shapes=None, seed=0, threads=0, inputs=None):
    """Runs `net` and `model` on one random input (standard normal, seeded; `shapes` maps an input
    to another shape than the net's, for a --dynamic model) and returns {output: (max abs
    difference, that over the output's largest magnitude)}. Inputs that are the tops of data
    layers get what those layers produced; `inputs` gives arrays for some inputs instead."""
    rng = np.random.default_rng(seed)
    shapes = dict(shapes or {})
    given = dict(inputs or {})
    names = [i.name for i in model.graph.input]
    for name in names:
        if name in net.inputs:
            value = given.get(name)
            if value is None:
                value = rng.standard_normal(tuple(shapes.get(name, net.blobs[name].shape)))
            net.blobs[name].reshape(np.shape(value))
            net.blobs[name].data[...] = net.backend.asarray(np.asarray(value, dtype=net.dtype))
    net.reshape()
    net.forward()
    feeds = {name: net.blobs[name].to_numpy().astype(np.float32) for name in names}
    got = run_onnx(model, feeds, threads)
    result = {}
    for name, value in got.items():
        want = net.blobs[name].to_numpy()
        if value.shape != want.shape:
            raise NetdefError(f"output '{name}': ONNX Runtime gives shape {value.shape}, netdef "
                              f"{want.shape}")
        both_nan = np.isnan(value) & np.isnan(want)
        diff = np.where(both_nan, 0.0, np.abs(value.astype(np.float64) - want))
        diff = np.where(np.isnan(diff), np.inf, diff)
        err = float(diff.max()) if diff.size else 0.0
        scale = float(np.nanmax(np.abs(want))) if want.size and not np.isnan(want).all() else 0.0
        result[name] = (err, err / scale if scale > 0 else err)
    return result
