"""Log: y = log_base(shift + scale * x)             log_param { base scale shift } (-1, 1, 0)

base = -1 (the default) means e. Any other base must be > 0.
forward:  y = ln(shift + scale x) * base_scale,  base_scale = 1 / ln(base)  (1 for e)
backward: dx = dy * scale * base_scale / (shift + scale x)
shape:    top = bottom (may be computed in place; x is then kept for backward)
"""
import math

from . import register_layer
from ._neuron import NeuronLayer


@register_layer("Log")
class LogLayer(NeuronLayer):
    def setup(self, bottom, top):
        p = self.layer_param.log_param
        base = float(p.base)
        if base != -1.0 and not base > 0:
            raise self.error(f"log_param.base must be strictly positive (or -1 for e), got {base}")
        if base == 1.0:
            raise self.error("log_param.base 1 has no logarithm (ln 1 = 0)")
        self.base_scale = 1.0 if base == -1.0 else 1.0 / math.log(base)
        self.scale, self.shift = float(p.scale), float(p.shift)

    def backward_reads_input(self):
        return True

    def forward(self, bottom, top):
        self.keep_input(bottom, top)
        self.activation().log_forward(bottom[0].count, bottom[0].data, top[0].data,
                                      self.base_scale, self.scale, self.shift)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.activation().log_backward(bottom[0].count, top[0].diff, self.input_data(bottom, top),
                                           bottom[0].diff, self.base_scale, self.scale, self.shift)
