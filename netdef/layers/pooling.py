"""Pooling over the H x W planes of an (N, C, H, W) bottom.

pooling_param { pool (MAX | AVE | STOCHASTIC)  kernel_size | kernel_h kernel_w
                stride (1) | stride_h stride_w   pad (0) | pad_h pad_w
                global_pooling (false)  round_mode (CEIL | FLOOR) }
Window (a, b) covers rows a sh - ph .. a sh - ph + kh - 1 and columns b sw - pw .. b sw - pw + kw - 1
of the zero-padded plane, clipped to the image.
shape (Caffe's rule, per axis):  P = ceil((H + 2 ph - kh) / sh) + 1   (floor with round_mode FLOOR);
          then, if pad_h or pad_w is non-zero and (P - 1) sh >= H + ph, P -= 1 (the last window
          must start inside the image or its top/left padding). global_pooling: kh, kw = H, W.
          top = (N, C, PH, PW); MAX may have a second top, the mask, of the same shape.
MAX:   y = max over the window (the first maximum in row-major order wins);
       mask = h * W + w of that maximum (a float, as Caffe stores it); dx[h, w] = sum of dy over
       the windows whose maximum was (h, w). The mask is kept only when the Net plans a
       backward or a second top shows it.
AVE:   y = sum over the clipped window / size, size = (min(hs + kh, H + ph) - hs) *
       (min(ws + kw, W + pw) - ws) with hs = a sh - ph: the window clipped to the padded
       plane, so padding counts in the divisor but the area beyond it does not (Caffe's rule).
       dx[h, w] = sum over the windows containing (h, w) of dy / size.
STOCHASTIC (no padding; inputs meant to be non-negative, e.g. after ReLU):
       TRAIN: y = x at a position drawn with probability x / (window sum), with u uniform in
              [0, 1) from the backend's generator: the first position in row-major order whose
              running sum reaches u * (window sum). dx[h, w] = sum of dy over windows that drew (h, w).
       TEST:  y = sum x^2 / (FLT_MIN + sum x), the probability-weighted average;
              dx[h, w] = sum over the windows containing (h, w) of dy (2 x - y) / (FLT_MIN + sum x).
A window with no pixel of the image in it (possible under the ceil rule when there is no
padding and stride > kernel; Caffe leaves such outputs at -FLT_MAX) gives 0 and no gradient.
Checks as Caffe: kernel_size or kernel_h/kernel_w (not both, none with global_pooling),
pad < kernel, padding only with MAX and AVE, global pooling only with pad 0 and stride 1.
"""
from ..core import netdef_pb2 as pb
from ..core.layer import Layer
from . import register_layer

P = pb.PoolingParameter


def pooled_size(size, kernel, stride, pad, ceil_mode=True, any_pad=None):
    """Caffe's output length of one axis (any_pad: is pad_h or pad_w non-zero; default pad > 0)."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if (pad > 0 if any_pad is None else any_pad) and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pair(p, name, h, w, fail):
    if p.HasField(h) or p.HasField(w):
        if p.HasField(name) or not (p.HasField(h) and p.HasField(w)):
            raise fail(f"give {name}, or both {h} and {w}")
        return (int(getattr(p, h)), int(getattr(p, w)))
    return (int(getattr(p, name)), int(getattr(p, name)))


def pooling_geometry(p, fail):
    """((kh, kw) or None for global pooling, (sh, sw), (ph, pw)) of a PoolingParameter, with
    Caffe's checks (see the module docstring); `fail(msg)` returns the exception to raise.
    Shared by the Pooling layer and netdef.coord_map."""
    if p.pool not in (P.MAX, P.AVE, P.STOCHASTIC):
        raise fail(f"unknown pooling method {p.pool}")
    if p.round_mode not in (P.CEIL, P.FLOOR):
        raise fail(f"unknown round_mode {p.round_mode}")
    has = p.HasField
    if p.global_pooling:
        if has("kernel_size") or has("kernel_h") or has("kernel_w"):
            raise fail("with global_pooling the kernel size cannot be given")
        kernel = None
    else:
        if has("kernel_size") and (has("kernel_h") or has("kernel_w")):
            raise fail("give kernel_size or kernel_h and kernel_w, not both")
        if not has("kernel_size") and not (has("kernel_h") and has("kernel_w")):
            raise fail("give kernel_size, or both kernel_h and kernel_w")
        kernel = ((int(p.kernel_size),) * 2 if has("kernel_size") else (int(p.kernel_h), int(p.kernel_w)))
        if min(kernel) <= 0:
            raise fail(f"kernel size must be > 0, got {kernel[0]} x {kernel[1]}")
    pad = _pair(p, "pad", "pad_h", "pad_w", fail)
    stride = _pair(p, "stride", "stride_h", "stride_w", fail)
    if min(stride) <= 0:
        raise fail(f"stride must be > 0, got {stride[0]} x {stride[1]}")
    if p.global_pooling and (pad != (0, 0) or stride != (1, 1)):
        raise fail("with global_pooling only pad 0 and stride 1 are allowed")
    if pad != (0, 0):
        if p.pool not in (P.MAX, P.AVE):
            raise fail("padding is implemented only for MAX and AVE pooling")
        if kernel is not None and (pad[0] >= kernel[0] or pad[1] >= kernel[1]):
            raise fail(f"pad {pad[0]} x {pad[1]} must be smaller than the kernel "
                       f"{kernel[0]} x {kernel[1]}")
    return kernel, stride, pad


@register_layer("Pooling")
class PoolingLayer(Layer):
    exact_num_bottom = 1
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        p = self.layer_param.pooling_param
        self.method = p.pool
        self.kernel, self.stride, self.pad = pooling_geometry(p, lambda msg: self.error(msg))
        if len(top) > 1 and self.method != P.MAX:
            raise self.error(f"only MAX pooling has a second top (the mask); got {len(top)} tops "
                             f"with pool {P.PoolMethod.Name(self.method)}")
        self.global_pooling = p.global_pooling
        self.ceil_mode = p.round_mode == P.CEIL
        self.mask = None

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.shape_error(f"bottom shape {shape} is not 4-D (num, channels, height, width)")
        N, C, H, W = shape
        kh, kw = self.kernel if self.kernel is not None else (H, W)
        (sh, sw), (ph, pw) = self.stride, self.pad
        any_pad = ph > 0 or pw > 0
        PH = pooled_size(H, kh, sh, ph, self.ceil_mode, any_pad)
        PW = pooled_size(W, kw, sw, pw, self.ceil_mode, any_pad)
        if PH <= 0 or PW <= 0 or (any_pad and ((PH - 1) * sh >= H + ph or (PW - 1) * sw >= W + pw)):
            raise self.shape_error(f"kernel {kh} x {kw} (stride {sh} x {sw}, pad {ph} x {pw}) does not "
                                   f"fit the bottom {shape}: output would be {PH} x {PW}")
        self.geom = (H, W, PH, PW, kh, kw, sh, sw, ph, pw)
        out = (N, C, PH, PW)
        for t in top:
            t.reshape(out)
        self.out_shape = out

    def _mask(self, top):
        """The argmax positions, which MAX and STOCHASTIC (TRAIN) backward read and a second
        top shows: None when neither can happen (a TEST net without force_backward)."""
        if self.method == P.STOCHASTIC and self.phase == pb.TRAIN:
            keep = True  # its forward kernel writes the draw there
        else:
            keep = self.method == P.MAX and (self.need_backward or len(top) > 1)
        if not keep:
            self.mask = None
        elif self.mask is None or self.mask.shape != self.out_shape:
            self.mask = self.xp.empty(self.out_shape, dtype=self.xp.int64)
        return self.mask

    def forward(self, bottom, top):
        k = self.kernels("pooling")
        x, y, n = bottom[0].data, top[0].data, top[0].count
        g = self.geom
        mask = self._mask(top)
        if self.method == P.MAX:
            iters, tile, rows = self.plane_launch(self.out_shape[0] * self.out_shape[1], g[2], g[3])
            unused = self.backend.workspace(self.xp.int64, 1, "no-mask")
            k.max_pool_forward(iters, x, y, unused if mask is None else mask, *g, tile, rows,
                               int(mask is not None))
            if len(top) > 1:
                top[1].data[...] = mask
        elif self.method == P.AVE:
            iters, tile = self.row_launch(n, g[3])
            k.ave_pool_forward(iters, x, y, *g, tile)
        elif self.phase == pb.TRAIN:
            u = self.backend.rng.random(top[0].shape, dtype=self.dtype)
            k.sto_pool_forward_train(n, x, u, y, mask, *g[:8])
        else:
            k.sto_pool_forward_test(n, x, y, *g[:8])

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        k = self.kernels("pooling")
        dy, dx, n = top[0].diff, bottom[0].diff, bottom[0].count
        g = self.geom
        iters, tile = self.row_launch(n, g[1])
        if self.method == P.MAX or (self.method == P.STOCHASTIC and self.phase == pb.TRAIN):
            if self.mask is None:
                raise self.error("backward after a forward that kept no argmax mask (the Net "
                                 "planned no backward for this layer: use force_backward)")
            k.max_pool_backward(iters, dy, self.mask, dx, *g, tile)
        elif self.method == P.AVE:
            k.ave_pool_backward(iters, dy, dx, *g, tile)
        else:
            k.sto_pool_backward_test(n, bottom[0].data, dy, dx, *g[:8])
