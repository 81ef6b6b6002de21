"""TanH: the hyperbolic tangent.

forward:  y = tanh(x)
backward: dx = dy * (1 - y^2)     (reads y only, so the layer may run in place)
shape:    top = bottom (may be computed in place)
"""
from . import register_layer
from ._neuron import NeuronLayer


@register_layer("TanH")
class TanHLayer(NeuronLayer):
    def forward(self, bottom, top):
        self.activation().tanh_forward(bottom[0].count, bottom[0].data, top[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.activation().tanh_backward(bottom[0].count, top[0].diff, top[0].data, bottom[0].diff)
