"""Swish: y = x sigmoid(beta x)                     swish_param { beta } (1)

forward:  y = x / (1 + exp(-beta x))
backward: dx = dy (beta y + s (1 - beta y)),  s = sigmoid(beta x)
          (= dy (s + beta x s (1 - s)))
shape:    top = bottom (in place allowed: backward reads x, which is then kept before forward)
"""
from . import register_layer
from ._neuron import NeuronLayer


@register_layer("Swish")
class SwishLayer(NeuronLayer):
    def setup(self, bottom, top):
        self.beta = float(self.layer_param.swish_param.beta)

    def backward_reads_input(self):
        return True

    def forward(self, bottom, top):
        self.keep_input(bottom, top)
        self.activation().swish_forward(bottom[0].count, bottom[0].data, top[0].data, self.beta)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.activation().swish_backward(bottom[0].count, top[0].diff,
                                             self.input_data(bottom, top), top[0].data,
                                             bottom[0].diff, self.beta)
