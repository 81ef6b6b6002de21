"""Sigmoid: the logistic function.

forward:  y = 1 / (1 + exp(-x))   (exp(-x) = inf for very negative x gives the limit 0)
backward: dx = dy * y * (1 - y)   (reads y only, so the layer may run in place)
shape:    top = bottom (may be computed in place)
"""
from . import register_layer
from ._neuron import NeuronLayer


@register_layer("Sigmoid")
class SigmoidLayer(NeuronLayer):
    def forward(self, bottom, top):
        self.activation().sigmoid_forward(bottom[0].count, bottom[0].data, top[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.activation().sigmoid_backward(bottom[0].count, top[0].diff, top[0].data,
                                               bottom[0].diff)
