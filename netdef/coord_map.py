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
"""
from fractions import Fraction

from .errors import LayerSetupError

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
    from .layers.base_conv import conv_geometry as parse

    return parse(cp, lambda msg: LayerSetupError(msg, layer=layer))


def pool_geometry(pp, layer=None):
    """((kh, kw), (sh, sw), (ph, pw)) of a PoolingParameter (None kernel for global pooling),
    validated by the Pooling layer's own parser."""
    from .layers.pooling import pooling_geometry as parse

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
