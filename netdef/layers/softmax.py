"""Softmax over one axis (per pixel for N x C x H x W scores with axis 1).

softmax_param { axis (1) }
Seeing the bottom as (outer, C, inner) with C = shape[axis]:
forward:  y[o, c, t] = exp(x[o, c, t] - m) / sum_c' exp(x[o, c', t] - m),  m = max_c' x[o, c', t]
backward: dx[o, c, t] = y[o, c, t] (dy[o, c, t] - sum_c' dy[o, c', t] y[o, c', t])
shape:    top = bottom (may be computed in place)
"""
from ..core.layer import Layer
from . import register_layer
from ._labels import class_dims


def softmax_forward(layer, x, y, outer, C, inner):
    """y = the softmax of x over C for x seen as (outer, C, inner); x may be y."""
    iters, tile = layer.row_launch(outer * inner, inner)
    layer.kernels("softmax").softmax_forward(iters, x, y, C, inner, tile)


@register_layer("Softmax")
class SoftmaxLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1
    in_place_ok = True

    def reshape(self, bottom, top):
        self.outer, self.C, self.inner = class_dims(bottom[0], self.layer_param.softmax_param.axis)
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        if self.C == 0:
            return
        softmax_forward(self, bottom[0].data, top[0].data, self.outer, self.C, self.inner)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        if self.C == 0:
            return
        iters, tile = self.row_launch(self.outer * self.inner, self.inner)
        self.kernels("softmax").softmax_backward(iters, top[0].data, top[0].diff, bottom[0].diff,
                                                 self.C, self.inner, tile)
