"""Split: hands one blob to several consumers (inserted by the Net, not written by users).

forward:  every top shows the bottom's data (no copy)
backward: dbottom = sum_k dtop_k
"""
from ..core.layer import Layer
from . import register_layer


@register_layer("Split")
class SplitLayer(Layer):
    exact_num_bottom = 1
    min_top = 1

    def reshape(self, bottom, top):
        for t in top:
            if t is bottom[0]:
                raise self.error("Split cannot work in place")
            t.reshape(bottom[0].shape)
            t.share_data(bottom[0])

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dx = bottom[0].diff
        dx[...] = top[0].diff
        for t in top[1:]:
            dx += t.diff
