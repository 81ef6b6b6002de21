"""Silence: consumes bottoms so they are not net outputs; no tops.

backward: dbottom = 0 (nothing downstream depends on them)
"""
from ..core.layer import Layer
from . import register_layer


@register_layer("Silence")
class SilenceLayer(Layer):
    min_bottom = 1
    exact_num_top = 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        for i, b in enumerate(bottom):
            if propagate_down[i]:
                b.diff[...] = 0
