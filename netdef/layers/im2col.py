"""Im2col: the column matrix of a convolution as a blob (what Convolution multiplies by its
weights), e.g. to build a convolution from InnerProduct, or to inspect patches.

convolution_param { kernel_size | kernel_h kernel_w   stride (1) | stride_h stride_w
                    pad (0) | pad_h pad_w   dilation (1)   axis (1)   force_nd_im2col }
Only the geometry is read, as in Caffe (num_output, bias_term, fillers and group belong to
Convolution and are ignored here); netdef's im2col is 2-D, so the bottom is (N, C, H, W) and
axis must be the channel axis 1; force_nd_im2col only chooses an implementation in Caffe.
Per spatial axis: OH = (H + 2 ph - (dh (kh - 1) + 1)) / sh + 1 (floor), likewise OW.
forward:  top[n, (c kh + i) kw + j, a, b] = x[n, c, a sh - ph + i dh, b sw - pw + j dw]
          (0 where that position falls in the padding)
backward: dx[n, c, h, w] = sum of dtop over every (i, j, a, b) that read x[n, c, h, w] (col2im)
shape:    top = (N, C kh kw, OH, OW)
Both directions are kernels/im2col.cu's im2col / col2im, the very kernels of Convolution.
"""
import math

from ..core.layer import Layer
from . import register_layer
from .base_conv import conv_geometry


@register_layer("Im2col")
class Im2colLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.convolution_param
        (self.kh, self.kw), (self.sh, self.sw), (self.ph, self.pw), (self.dh, self.dw) = \
            conv_geometry(p, lambda msg: self.error(msg), "Im2col")
        self.axis_param = int(p.axis)
        self.steph = self.sh // math.gcd(self.sh, self.dh)
        self.stepw = self.sw // math.gcd(self.sw, self.dw)

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.shape_error(f"needs a 4-D bottom (N, C, H, W), got shape {shape}; "
                                   "netdef's im2col is 2-D")
        if bottom[0].canonical_axis(self.axis_param) != 1:
            raise self.error(f"convolution_param.axis {self.axis_param}: only the channel axis 1 "
                             "is supported")
        N, C, H, W = shape
        OH = (H + 2 * self.ph - (self.dh * (self.kh - 1) + 1)) // self.sh + 1
        OW = (W + 2 * self.pw - (self.dw * (self.kw - 1) + 1)) // self.sw + 1
        if OH <= 0 or OW <= 0:
            raise self.shape_error(
                f"kernel {self.kh} x {self.kw} (dilation {self.dh} x {self.dw}, pad {self.ph} x "
                f"{self.pw}) does not fit the bottom {shape}: output would be {OH} x {OW}")
        self.geom = (N, C, H, W, OH, OW)
        top[0].reshape(N, C * self.kh * self.kw, OH, OW)

    def _taps(self):
        return (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw, self.dh, self.dw)

    def forward(self, bottom, top):
        N, C, H, W, OH, OW = self.geom
        iters, tile = self.row_launch(top[0].count, OH * OW)
        self.kernels("im2col").im2col(iters, bottom[0].data, top[0].data, H, W, *self._taps(),
                                      OW, 0, OH, tile)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        N, C, H, W, OH, OW = self.geom
        iters, tile = self.row_launch(bottom[0].count, W)
        self.kernels("im2col").col2im(iters, top[0].diff, bottom[0].diff, H, W, *self._taps(),
                                      OW, 0, OH, 0, H, self.steph, self.stepw, tile, 0)
