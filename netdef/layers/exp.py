"""Exp: y = base ^ (shift + scale * x)              exp_param { base scale shift } (-1, 1, 0)

base = -1 (the default) means e. Any other base must be > 0.
forward:  y = outer * exp(inner * x),  inner = scale * ln(base),  outer = base^shift
backward: dx = dy * y * inner     (reads y only, so the layer may run in place)
shape:    top = bottom (may be computed in place)
"""
import math

from . import register_layer
from ._neuron import NeuronLayer


@register_layer("Exp")
class ExpLayer(NeuronLayer):
    def setup(self, bottom, top):
        p = self.layer_param.exp_param
        base, scale, shift = float(p.base), float(p.scale), float(p.shift)
        if base != -1.0 and not base > 0:
            raise self.error(f"exp_param.base must be strictly positive (or -1 for e), got {base}")
        log_base = 1.0 if base == -1.0 else math.log(base)
        self.inner = log_base * scale
        self.outer = 1.0 if shift == 0 else (math.exp(shift) if base == -1.0 else base ** shift)

    def forward(self, bottom, top):
        self.activation().exp_forward(bottom[0].count, bottom[0].data, top[0].data,
                                      self.inner, self.outer)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.activation().exp_backward(bottom[0].count, top[0].diff, top[0].data,
                                           bottom[0].diff, self.inner)
