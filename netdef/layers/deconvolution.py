"""Deconvolution (Caffe's, 2-D): the transpose of Convolution. Its forward is Convolution's
backward-data and its backward-data is Convolution's forward, with the same weight array.

forward:  y[n, c, h, w] = b[c] + sum over (o, i, ki, j, kj) with i sh - ph + ki dh = h and
                          j sw - pw + kj dw = w, c in group(o), of W[o, c - c0(o), ki, kj] x[n, o, i, j]
          (every input pixel scatters its kernel-weighted copy, as a gather over the taps)
backward: dx = Convolution of dy with W (im2col(dy) then GEMM),
          dW += x * im2col(dy)^T summed over the images,  db += sum_{n, h, w} dy[n, c, h, w]
shape:    bottom (N, C, H, W) -> top (N, num_output, OH, OW),
          OH = sh (H - 1) + dh (kh - 1) + 1 - 2 ph, likewise OW;
          W: (C, num_output / group, kh, kw), b: (num_output,)
With group == C == num_output (FCN's fixed bilinear upsampling: filler "bilinear", lr_mult 0)
the layer runs the direct depthwise kernels of kernels/depthwise_conv.cu, not one GEMM per group.
Parameters as Convolution; the machinery lives in base_conv.py.
"""
from . import register_layer
from .base_conv import BaseConvolutionLayer


@register_layer("Deconvolution")
class DeconvolutionLayer(BaseConvolutionLayer):
    transposed = True

    def output_size(self, h, w):
        oh = self.sh * (h - 1) + self.ext_h - 2 * self.ph
        ow = self.sw * (w - 1) + self.ext_w - 2 * self.pw
        if oh <= 0 or ow <= 0:
            raise self.shape_error(
                f"output size {oh}x{ow} is not positive for bottom {(self.channels, h, w)} (C, H, W) "
                f"with {self._geometry_text()}: the pad removes more than the kernel extent adds")
        return oh, ow
