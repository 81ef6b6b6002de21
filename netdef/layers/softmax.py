"""Softmax over one axis (per pixel for N x C x H x W scores with axis 1).

softmax_param { axis (1) }
Seeing the bottom as (outer, C, inner) with C = shape[axis]:
forward:  y[o, c, t] = exp(x[o, c, t] - m) / sum_c' exp(x[o, c', t] - m),  m = max_c' x[o, c', t]
backward: dx[o, c, t] = y[o, c, t] (dy[o, c, t] - sum_c' dy[o, c', t] y[o, c', t])
shape:    top = bottom (may be computed in place)
"""
from ..layer import Layer
from . import register_layer
from ._labels import class_dims


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
        self.kernels("softmax").softmax_forward(self.outer * self.inner, bottom[0].data, top[0].data,
                                                self.C, self.inner)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        if self.C == 0:
            return
        self.kernels("softmax").softmax_backward(self.outer * self.inner, top[0].data, top[0].diff,
                                                 bottom[0].diff, self.C, self.inner)
