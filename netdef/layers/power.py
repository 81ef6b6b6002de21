"""Power: y = (shift + scale * x) ^ power          power_param { power scale shift } (1, 1, 0)

forward:  y = (shift + scale x)^p
backward: dx = dy * p * scale * (shift + scale x)^(p - 1); dx = 0 when p * scale = 0 (the
          output is then constant), dx = dy * scale when p = 1
          As in Caffe, a negative base with a non-integer power gives NaN.
shape:    top = bottom (may be computed in place; x is then kept for backward unless p = 1
          or p * scale = 0)
"""
from . import register_layer
from ._neuron import NeuronLayer


@register_layer("Power")
class PowerLayer(NeuronLayer):
    def setup(self, bottom, top):
        p = self.layer_param.power_param
        self.power, self.scale, self.shift = float(p.power), float(p.scale), float(p.shift)

    def backward_reads_input(self):
        return self.power != 1.0 and self.power * self.scale != 0.0

    def forward(self, bottom, top):
        self.keep_input(bottom, top)
        self.activation().power_forward(bottom[0].count, bottom[0].data, top[0].data,
                                        self.power, self.scale, self.shift)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            x = self.input_data(bottom, top) if self.backward_reads_input() else top[0].diff
            self.activation().power_backward(bottom[0].count, top[0].diff, x, bottom[0].diff,
                                             self.power, self.scale, self.shift)
