"""Convolution (Caffe's, 2-D): cross-correlation of the bottom with num_output filters.

forward:  y[n, o, i, j] = b[o] + sum_{c in group(o), ki, kj}
                          W[o, c - c0(o), ki, kj] x[n, c, i sh - ph + ki dh, j sw - pw + kj dw]
          (x is zero outside the image; group(o) is the block of channels / group input
           channels of output o's group, starting at c0(o))
backward: dx = the transpose of that map applied to dy (col2im of W^T dy),
          dW += dy * im2col(x)^T summed over the images,  db += sum_{n, i, j} dy[n, o, i, j]
shape:    bottom (N, C, H, W) -> top (N, num_output, OH, OW),
          OH = (H + 2 ph - (dh (kh - 1) + 1)) / sh + 1  (floor), likewise OW;
          W: (num_output, C / group, kh, kw), b: (num_output,)
Parameters (convolution_param): num_output, bias_term, kernel_size / pad / stride / dilation
(one value for both axes or two for h, w) or kernel_h/kernel_w, pad_h/pad_w, stride_h/stride_w,
group, weight_filler, bias_filler, axis (1). Several bottoms map to as many tops with the same
weights. The im2col + GEMM machinery lives in base_conv.py, shared with Deconvolution.
"""
from . import register_layer
from .base_conv import BaseConvolutionLayer


@register_layer("Convolution")
class ConvolutionLayer(BaseConvolutionLayer):
    transposed = False

    def output_size(self, h, w):
        if h + 2 * self.ph < self.ext_h or w + 2 * self.pw < self.ext_w:
            raise self.shape_error(
                f"kernel extent {self.ext_h}x{self.ext_w} ({self._geometry_text()}) is larger than "
                f"the padded input {h + 2 * self.ph}x{w + 2 * self.pw} of bottom "
                f"{(self.channels, h, w)} (C, H, W)")
        return (h + 2 * self.ph - self.ext_h) // self.sh + 1, (w + 2 * self.pw - self.ext_w) // self.sw + 1
