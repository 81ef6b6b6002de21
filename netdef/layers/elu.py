"""ELU: exponential linear unit                     elu_param { alpha } (1)

forward:  y = x                     if x > 0
          y = alpha (exp(x) - 1)    otherwise
backward: dx = dy                   if x > 0
          dx = dy (y + alpha)       otherwise   (= dy alpha exp(x))
shape:    top = bottom (may be computed in place: with alpha >= 0, y > 0 exactly where x > 0,
          so backward needs only y; with alpha < 0, x is kept for backward)
"""
from . import register_layer
from ._neuron import NeuronLayer


@register_layer("ELU")
class ELULayer(NeuronLayer):
    def setup(self, bottom, top):
        self.alpha = float(self.layer_param.elu_param.alpha)

    def backward_reads_input(self):
        return self.alpha < 0

    def forward(self, bottom, top):
        self.keep_input(bottom, top)
        self.activation().elu_forward(bottom[0].count, bottom[0].data, top[0].data, self.alpha)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            # In place with alpha >= 0, y stands in for x in the x > 0 test.
            x = top[0].data if top[0] is bottom[0] and self.alpha >= 0 else self.input_data(bottom, top)
            self.activation().elu_backward(bottom[0].count, top[0].diff, x, top[0].data,
                                           bottom[0].diff, self.alpha)
