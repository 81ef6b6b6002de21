"""Fillers: initial values of learnable blobs, as Caffe's FillerParameter describes them.

constant          v = value
uniform           v ~ U[min, max]
gaussian          v ~ N(mean, std^2); with sparse = s > 0 each weight is kept with
                  probability s / num_outputs (num_outputs = shape[0]), else set to 0
positive_unitball v ~ U[0, 1], then each row (per shape[0]) rescaled to sum to 1
xavier            v ~ U[-a, a], a = sqrt(3 / n)      n by variance_norm:
msra              v ~ N(0, 2 / n)                     FAN_IN  = count / shape[0]
                                                      FAN_OUT = count / shape[1]
                                                      AVERAGE = (fan_in + fan_out) / 2
bilinear          the kernel of bilinear upsampling by f = ceil(K / 2) (FCN's Deconvolution):
                  w(x, y) = (1 - |x / f - c|) (1 - |y / f - c|), c = (2f - 1 - f % 2) / (2f)
Values are drawn on the host from the backend's seeded generator, so CPU and GPU nets built
with the same seed start identical.
"""
import numpy as np

from . import netdef_pb2 as pb
from ..errors import LayerSetupError

VN = pb.FillerParameter


def _fans(shape):
    count = int(np.prod(shape)) if shape else 1
    fan_in = count // shape[0] if shape and shape[0] else count
    fan_out = count // shape[1] if len(shape) > 1 and shape[1] else count
    return fan_in, fan_out


def _norm(param, shape):
    fan_in, fan_out = _fans(shape)
    if param.variance_norm == VN.FAN_OUT:
        return fan_out
    if param.variance_norm == VN.AVERAGE:
        return (fan_in + fan_out) / 2.0
    return fan_in


def filler_values(param, shape, rng, layer=None, fans_of=None):
    """A float64 numpy array of `shape` filled as `param` (a FillerParameter) says; `fans_of`:
    the shape whose fans scale xavier / msra, when `shape` is a slice of it."""
    shape = tuple(shape)
    fans_of = shape if fans_of is None else tuple(fans_of)
    t = param.type
    if t == "constant":
        return np.full(shape, param.value, dtype=np.float64)
    if t == "uniform":
        if param.max < param.min:
            raise LayerSetupError(f"uniform filler: max {param.max} < min {param.min}", layer=layer)
        return rng.uniform(param.min, param.max, size=shape)
    if t == "gaussian":
        v = rng.normal(param.mean, param.std, size=shape)
        if param.sparse >= 0:
            if len(shape) < 2:
                raise LayerSetupError("sparse gaussian filler needs a blob of >= 2 axes", layer=layer)
            keep = param.sparse / float(shape[0])
            v *= rng.random(shape) < keep
        return v
    if t == "positive_unitball":
        v = rng.random(shape)
        if shape and shape[0]:
            rows = v.reshape(shape[0], -1)
            rows /= rows.sum(axis=1, keepdims=True)
        return v
    if t == "xavier":
        a = np.sqrt(3.0 / max(_norm(param, fans_of), 1))
        return rng.uniform(-a, a, size=shape)
    if t == "msra":
        return rng.normal(0.0, np.sqrt(2.0 / max(_norm(param, fans_of), 1)), size=shape)
    if t == "bilinear":
        if len(shape) != 4 or shape[2] != shape[3]:
            raise LayerSetupError(f"bilinear filler needs a 4-D blob with square kernels, got {shape}",
                                  layer=layer)
        k = shape[3]
        f = int(np.ceil(k / 2.0))
        c = (2 * f - 1 - f % 2) / (2.0 * f)
        idx = np.arange(k)
        w1 = 1 - np.abs(idx / f - c)
        return np.broadcast_to(np.outer(w1, w1), shape).copy()
    raise LayerSetupError(f"unknown filler type '{t}'; known: constant, uniform, gaussian, "
                          "positive_unitball, xavier, msra, bilinear", layer=layer)


#: Fillers whose values are one stream of independent draws: drawn in slices along the first
#: axis, they give the same values as in one go, without a float64 copy of a whole blob
#: (FCN's fc6 weights: 102M values, 822 MB in float64).
_STREAMED = ("uniform", "xavier", "msra")
_SLICE_ELEMENTS = 1 << 22


def fill(blob, param, layer=None):
    """Fill `blob.data` as `param` says, drawing from the blob backend's host generator."""
    shape, data = tuple(blob.shape), blob.data
    if param.type == "constant":
        data[...] = param.value
        return
    streamed = param.type in _STREAMED or (param.type == "gaussian" and param.sparse < 0)
    if not streamed or len(shape) < 2 or data.size <= _SLICE_ELEMENTS:
        values = filler_values(param, shape, blob.backend.host_rng, layer)
        data[...] = blob.backend.asarray(values, dtype=blob.dtype)
        return
    # the scale of msra / xavier comes from the whole shape: draw with it, slice by slice
    rows = max(1, _SLICE_ELEMENTS // (data.size // shape[0]))
    for r0 in range(0, shape[0], rows):
        part = filler_values(param, (min(rows, shape[0] - r0),) + shape[1:], blob.backend.host_rng, layer,
                             fans_of=shape)
        data[r0:r0 + part.shape[0]] = blob.backend.asarray(part, dtype=blob.dtype)
