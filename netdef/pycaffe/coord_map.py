"""Coordinate mapping: where each blob's pixels sit in the input, and how far they see.

For every blob, per spatial axis, an affine map from blob coordinates to input coordinates
x_in = jump * x + offset (offset: the centre of the receptive field of pixel 0), and the
receptive field size r. Composed layer by layer from the input:

  Convolution / Pooling (kernel k, stride s, pad p, dilation d; k_eff = d (k - 1) + 1)
      jump' = jump * s      offset' = offset + jump * ((k_eff - 1) / 2 - p)
      r'    = r + (k_eff - 1) * jump
  Deconvolution (the inverse map)
      jump' = jump / s      offset' = offset - jump' * ((k_eff - 1) / 2 - p)
      r'    = r + (ceil(k_eff / s) - 1) * jump
  Crop by o:              offset' = offset + jump * o
  everything elementwise: the map of bottom[0]

A Crop layer without explicit offsets gets o = (offset_ref - offset_in) / jump, which aligns
its bottom[0] with its reference bottom[1]; this is how FCN's offsets (19; 5 and 27; 5, 9
and 31) come about. Arithmetic is exact (fractions).

The second half is pycaffe's caffe.coord_map, for NetSpec users (FCN's net.py files):
crop(top_from, top_to) returns an L.Crop top whose crop_param aligns the two;
coord_map_from_to, coord_map, conv_params, crop_params, compose and inverse work on NetSpec
Tops/Functions with pycaffe's (axis, a, b) maps (floats, numpy arrays). A layer without a map
raises UndefinedMapException, maps on different axes AxisMismatchException; tops without a
common ancestor, or a crop of another scale, a positive or a fractional offset, raise
CoordMapError, which is both a RuntimeError and an AssertionError (what pycaffe raises).
"""
from fractions import Fraction

import numpy as _np

from ..errors import LayerSetupError

_CONV = ("Convolution",)
_POOL = ("Pooling",)
_DECONV = ("Deconvolution",)
# Layers whose output pixels are the input pixels (shape-preserving over the spatial axes).
_POINTWISE = {"ReLU", "Dropout", "Eltwise", "Split", "BatchNorm", "Scale", "Bias", "Power",
              "Sigmoid", "TanH", "AbsVal", "Exp", "Log", "BNLL", "ELU", "PReLU", "LRN",
              "Softmax", "Concat", "Silence", "Input", "Python", "ArgMax", "SoftmaxWithLoss",
              "Accuracy", "Data", "ImageData", "MemoryData", "DummyData", "HDF5Data"}


class AxisMap:
    __slots__ = ("jump", "offset", "rf")

    def __init__(self, jump=Fraction(1), offset=Fraction(0), rf=Fraction(1)):
        self.jump, self.offset, self.rf = Fraction(jump), Fraction(offset), Fraction(rf)

    def __eq__(self, other):
        return (self.jump, self.offset) == (other.jump, other.offset)

    def __repr__(self):
        return f"AxisMap(jump={self.jump}, offset={self.offset}, rf={self.rf})"


def conv_geometry(cp, layer=None):
    """((kh, kw), (sh, sw), (ph, pw), (dh, dw)) of a ConvolutionParameter."""
    from ..layers.base_conv import conv_geometry as parse

    return parse(cp, lambda msg: LayerSetupError(msg, layer=layer))


def pool_geometry(pp, layer=None):
    """((kh, kw), (sh, sw), (ph, pw)) of a PoolingParameter (None kernel for global pooling),
    validated by the Pooling layer's own parser."""
    from ..layers.pooling import pooling_geometry as parse

    return parse(pp, lambda msg: LayerSetupError(msg, layer=layer))


def _through_conv(m, k, s, p, d):
    keff = d * (k - 1) + 1
    return AxisMap(m.jump * s, m.offset + m.jump * (Fraction(keff - 1, 2) - p), m.rf + (keff - 1) * m.jump)


def _through_deconv(m, k, s, p, d):
    keff = d * (k - 1) + 1
    jump = m.jump / s
    return AxisMap(jump, m.offset - jump * (Fraction(keff - 1, 2) - p), m.rf + (-(-keff // s) - 1) * m.jump)


def _crop_offsets(lp, n_axes=2):
    cp = lp.crop_param
    if cp.axis not in (2, -2):
        raise LayerSetupError(f"Crop axis {cp.axis}: coordinate maps follow spatial crops (axis 2) only",
                              layer=lp.name)
    offs = list(cp.offset)
    if len(offs) == 1:
        offs = offs * n_axes
    return offs


def compute(net, fill_crops=False):
    """{blob name: (AxisMap for H, AxisMap for W)} for a NetParameter (upgraded, one phase).

    With fill_crops, Crop layers without offsets get the computed ones written into `net`."""
    maps = {}
    for lp in net.layer:
        t = lp.type
        if not lp.bottom:
            for top in lp.top:
                maps[top] = (AxisMap(), AxisMap())
            continue
        src = maps.get(lp.bottom[0])
        if src is None:
            continue  # a bottom we could not map (e.g. after global pooling)
        if t in _CONV or t in _DECONV:
            k, s, p, d = conv_geometry(lp.convolution_param, lp.name)
            fn = _through_conv if t in _CONV else _through_deconv
            out = tuple(fn(src[i], k[i], s[i], p[i], d[i]) for i in range(2))
        elif t in _POOL:
            k, s, p = pool_geometry(lp.pooling_param, lp.name)
            if k is None:
                continue
            out = tuple(_through_conv(src[i], k[i], s[i], p[i], 1) for i in range(2))
        elif t == "Crop":
            ref = maps.get(lp.bottom[1]) if len(lp.bottom) > 1 else None
            if not lp.crop_param.offset:
                if ref is None:
                    raise LayerSetupError("cannot compute crop offsets: the reference bottom is unmapped",
                                          layer=lp.name)
                offs = []
                for i in range(2):
                    if src[i].jump != ref[i].jump:
                        raise LayerSetupError(f"cannot align by cropping: bottom strides {src[i].jump} and "
                                              f"{ref[i].jump} differ", layer=lp.name)
                    o = (ref[i].offset - src[i].offset) / src[i].jump
                    if o.denominator != 1 or o < 0:
                        raise LayerSetupError(f"the computed crop offset {o} is not a non-negative integer",
                                              layer=lp.name)
                    offs.append(int(o))
                if fill_crops:
                    lp.crop_param.offset.extend(offs if offs[0] != offs[1] else offs[:1])
            else:
                offs = _crop_offsets(lp)
            out = tuple(AxisMap(src[i].jump, src[i].offset + src[i].jump * offs[i], src[i].rf)
                        for i in range(2))
        elif t in _POINTWISE or t not in ("InnerProduct", "Flatten", "Reshape"):
            out = src
        else:
            continue  # the spatial layout ends here
        for top in lp.top:
            maps[top] = out
    return maps


def fill_crop_offsets(net):
    """Write the computed offsets into every Crop layer of `net` that has none; returns `net`."""
    compute(net, fill_crops=True)
    return net


# ---- pycaffe's caffe.coord_map: maps between NetSpec tops ---------------------------------
# A map is (axis, a, b): a coordinate x of a layer's bottom sits at a * x + b in its top, for
# the axes from `axis` on (None: any axis, the layer is pointwise). a and b are numpy arrays
# (one value per spatial axis, or one for all), as pycaffe's; FCN's `crop` is built on them.

#: layers whose top pixels are their bottom pixels (pycaffe's PASS_THROUGH_LAYERS)
PASS_THROUGH_LAYERS = ["AbsVal", "BatchNorm", "Bias", "BNLL", "Dropout", "Eltwise", "ELU", "Log",
                       "LRN", "Exp", "MVN", "Power", "ReLU", "PReLU", "Scale", "Sigmoid", "Split",
                       "TanH", "Threshold", "Clip", "Swish"]


class UndefinedMapException(LayerSetupError):
    """A layer has no coordinate map (InnerProduct, Flatten, a data layer...)."""

    def __init__(self, message="this layer has no coordinate map", **kw):
        super().__init__(message, **kw)


class AxisMismatchException(LayerSetupError):
    """Two maps along a path start at different axes."""

    def __init__(self, message="coordinate maps on different axes cannot be composed", **kw):
        super().__init__(message, **kw)


class CoordMapError(LayerSetupError, AssertionError, RuntimeError):
    """No map between two tops, or a crop that cannot align them. pycaffe raises RuntimeError
    (no common blob) or AssertionError (scale, sign or fraction of the offset); this is both."""


def _fn_params(fn, message_field):
    """The keyword parameters of a NetSpec Function, merged with its explicit *_param dict."""
    params = dict(fn.params)
    nested = params.get(message_field)
    if isinstance(nested, dict):
        params = {**params, **nested}
    return params


def _vector(params, name, h, w, default):
    """A geometry value as a 1-element or per-axis array (N-D repeated fields, or _h/_w)."""
    if name in params:
        v = _np.array(params[name], ndmin=1)
    elif h in params or w in params:
        v = _np.array([params.get(h, default), params.get(w, default)], ndmin=1)
    else:
        v = _np.array(default, ndmin=1)
    return v


def conv_params(fn):
    """(axis, stride, effective kernel extent, pad) of a Convolution/Deconvolution/Pooling/Im2col
    Function: kernel_size (or kernel_h/kernel_w), stride, pad, dilation; N-D lists allowed."""
    field = "pooling_param" if fn.type_name == "Pooling" else "convolution_param"
    params = _fn_params(fn, field)
    if params.get("global_pooling"):
        raise UndefinedMapException("global pooling has no coordinate map", layer=fn.type_name)
    if "kernel_size" not in params and "kernel_h" not in params:
        raise UndefinedMapException(f"{fn.type_name} without kernel_size has no coordinate map",
                                    layer=fn.type_name)
    axis = params.get("axis", 1)
    ks = _vector(params, "kernel_size", "kernel_h", "kernel_w", 1)
    dilation = _np.array(params.get("dilation", 1), ndmin=1)
    stride = _vector(params, "stride", "stride_h", "stride_w", 1)
    pad = _vector(params, "pad", "pad_h", "pad_w", 0)
    return axis, stride, (ks - 1) * dilation + 1, pad


def crop_params(fn):
    """(axis, offset) of a Crop Function (axis 2 and offset 0 by default, as Caffe's)."""
    params = _fn_params(fn, "crop_param")
    return params.get("axis", 2), _np.array(params.get("offset", 0), ndmin=1)


def coord_map(fn):
    """(axis, a, b) of a NetSpec Function: its bottom coordinate x is at a * x + b in its top."""
    t = fn.type_name
    if t in ("Convolution", "Pooling", "Im2col"):
        axis, stride, ks, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (ks - 1) / 2) / stride
    if t == "Deconvolution":
        axis, stride, ks, pad = conv_params(fn)
        return axis, stride, (ks - 1) / 2 - pad
    if t in PASS_THROUGH_LAYERS:
        return None, 1, 0
    if t == "Crop":
        axis, offset = crop_params(fn)
        return axis - 1, 1, -offset  # -1: the map's axis is the last one not cropped
    raise UndefinedMapException(f"{t} has no coordinate map (only convolutions, pooling, crops "
                                "and pointwise layers keep the spatial layout)", layer=t)


def compose(base_map, next_map):
    """The map of `base_map` followed by `next_map`."""
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is None:
        ax = ax2
    elif ax2 is None or ax1 == ax2:
        ax = ax1
    else:
        raise AxisMismatchException(f"coordinate maps on axes {ax1} and {ax2} cannot be composed")
    return ax, a1 * a2, a1 * b2 + b1


def inverse(coord_map):
    """The inverse map: (axis, 1 / a, -b / a)."""
    ax, a, b = coord_map
    return ax, 1 / a, -b / a


def _bottoms(top):
    # A Crop's reference bottom only lends its shape: coordinates flow from bottom[0].
    inputs = top.fn.inputs
    return inputs[:1] if top.fn.type_name == "Crop" else inputs


def _walk_back(start, stopped):
    """(top, map from `start`'s coordinates to top's) for `start` and each top it is computed
    from through mappable layers; a layer without a map ends its path and is named in `stopped`."""
    maps = {start: (None, 1, 0)}
    frontier = [start]
    while frontier:
        top = frontier.pop()
        yield top, maps[top]
        try:
            m = coord_map(top.fn)
        except UndefinedMapException:
            stopped.append(top.fn.type_name)
            continue
        for bottom in _bottoms(top):
            maps[bottom] = compose(maps[top], m)
            frontier.append(bottom)


def coord_map_from_to(top_from, top_to):
    """The map (axis, a, b) from top_from's coordinates to top_to's, through their nearest
    common ancestor. CoordMapError (a RuntimeError) when they share none along mappable layers."""
    stopped = []
    from_maps = dict(_walk_back(top_from, stopped))
    for top, to_map in _walk_back(top_to, stopped):
        if top in from_maps:
            return compose(to_map, inverse(from_maps[top]))
    where = f" (the walk back stopped at {', '.join(sorted(set(stopped)))})" if stopped else ""
    raise CoordMapError("Could not compute map between tops; are they connected by spatial "
                        f"layers?{where}")


def crop(top_from, top_to):
    """An L.Crop(top_from, top_to) top whose crop_param (axis, offset) aligns top_from with
    top_to, as FCN's net.py files use it: `n.score = crop(n.upscore, n.data)`."""
    from .net_spec import L

    ax, a, b = coord_map_from_to(top_from, top_to)
    a, b = _np.asarray(a, dtype=float), _np.asarray(b, dtype=float)
    if not (a == 1).all():
        raise CoordMapError(f"scale mismatch on crop (a = {a}): the tops have different strides")
    if not (b <= 0).all():
        raise CoordMapError(f"cannot crop negative offset (b = {b}): top_from is smaller than "
                            "top_to where they should align")
    if not (_np.round(b) == b).all():
        raise CoordMapError(f"cannot crop noninteger offset (b = {b})")
    if ax is None:
        ax = 1  # only pointwise layers between them: crop the spatial axes
    offset = [int(v) for v in -_np.round(b).astype(int)]
    return L.Crop(top_from, top_to, crop_param=dict(axis=int(ax) + 1, offset=offset))
