"""LRN: local response normalization (AlexNet / CaffeNet), on (N, C, H, W) bottoms.

lrn_param { local_size (5, odd)  alpha (1)  beta (0.75)  k (1)  norm_region (ACROSS_CHANNELS) }
With n = local_size and half = (n - 1) / 2:
ACROSS_CHANNELS:  scale[b,c,h,w] = k + alpha / n * sum_{c' = c-half .. c+half, 0 <= c' < C} x[b,c',h,w]^2
WITHIN_CHANNEL:   scale[b,c,h,w] = 1 + alpha / n^2 * sum_{|h'-h| <= half, |w'-w| <= half} x[b,c,h',w']^2
                  over the window clipped to the image (zero padding; the divisor stays n^2).
                  k is not used: Caffe builds this mode as square -> AVE pool (pad half) ->
                  Power(power -beta, scale alpha, shift 1) -> product, whose shift is 1.
forward:  y = x * scale^-beta
backward: dx = dy scale^-beta - 2 alpha' beta x sum_{q in window(p)} dy[q] y[q] / scale[q]
          (alpha' = alpha / n or alpha / n^2; the window relation is symmetric)
shape:    top = bottom (not in place: backward reads x, y and the scale)
"""
from ..core import netdef_pb2 as pb
from ..core.layer import Layer
from . import register_layer

Region = pb.LRNParameter


@register_layer("LRN")
class LRNLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.lrn_param
        self.size = int(p.local_size)
        if self.size % 2 == 0:
            raise self.error(f"local_size must be odd (Caffe's LRN supports only odd sizes), got {self.size}")
        self.half = (self.size - 1) // 2
        self.alpha, self.beta, self.k = float(p.alpha), float(p.beta), float(p.k)
        self.region = p.norm_region
        if self.region not in (Region.ACROSS_CHANNELS, Region.WITHIN_CHANNEL):
            raise self.error(f"unknown norm_region {self.region}")
        if self.region == Region.ACROSS_CHANNELS:
            self.alpha_n, self.k_eff = self.alpha / self.size, self.k
        else:
            self.alpha_n, self.k_eff = self.alpha / (self.size * self.size), 1.0
        self.scale = None

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.shape_error(f"bottom shape {shape} is not 4-D (num, channels, height, width)")
        top[0].reshape(shape)
        if self.scale is None or self.scale.shape != shape:
            self.scale = self.xp.empty(shape, dtype=self.dtype)

    def forward(self, bottom, top):
        k = self.kernels("lrn")
        N, C, H, W = bottom[0].shape
        if self.region == Region.ACROSS_CHANNELS:
            iters, tile = self.row_launch(bottom[0].count, H * W)
            k.lrn_across_forward(iters, bottom[0].data, self.scale, top[0].data,
                                 C, H * W, self.half, self.alpha_n, self.k_eff, self.beta, tile)
        else:
            k.lrn_within_forward(bottom[0].count, bottom[0].data, self.scale, top[0].data,
                                 H, W, self.half, self.alpha_n, self.k_eff, self.beta)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        k = self.kernels("lrn")
        N, C, H, W = bottom[0].shape
        coef = 2.0 * self.alpha_n * self.beta
        args = (bottom[0].data, top[0].data, self.scale, top[0].diff, bottom[0].diff)
        if self.region == Region.ACROSS_CHANNELS:
            iters, tile = self.row_launch(bottom[0].count, H * W)
            k.lrn_across_backward(iters, *args, C, H * W, self.half, coef, self.beta, tile)
        else:
            k.lrn_within_backward(bottom[0].count, *args, H, W, self.half, coef, self.beta)
