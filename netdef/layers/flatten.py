"""Flatten: merges axes [axis, end_axis] (defaults 1 and -1) into one; data is unchanged.

shape: (d_0 .. d_{a-1}, d_a * .. * d_e, d_{e+1} ..);  forward copies, backward copies back
"""
from ..core.layer import Layer
from . import register_layer


@register_layer("Flatten")
class FlattenLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def reshape(self, bottom, top):
        p = self.layer_param.flatten_param
        s = bottom[0].shape
        a = bottom[0].canonical_axis(p.axis)
        e = bottom[0].canonical_axis(p.end_axis)
        if e < a:
            raise self.shape_error(f"end_axis {p.end_axis} comes before axis {p.axis} for shape {s}")
        top[0].reshape(s[:a] + (bottom[0].count_range(a, e + 1),) + s[e + 1:])

    def forward(self, bottom, top):
        top[0].data.reshape(-1)[...] = bottom[0].data.reshape(-1)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff.reshape(-1)[...] = top[0].diff.reshape(-1)
