"""BNLL ("binomial normal log likelihood"): the softplus function.

forward:  y = log(1 + exp(x))     (as x + log1p(exp(-x)) for x > 0: no overflow)
backward: dx = dy * sigmoid(x) = dy * (1 - exp(-y))   (reads y only, so the layer may run in
          place; expm1 keeps it exact where sigmoid(x) is tiny)
shape:    top = bottom (may be computed in place)
"""
from . import register_layer
from ._neuron import NeuronLayer


@register_layer("BNLL")
class BNLLLayer(NeuronLayer):
    def forward(self, bottom, top):
        self.activation().bnll_forward(bottom[0].count, bottom[0].data, top[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.activation().bnll_backward(bottom[0].count, top[0].diff, top[0].data, bottom[0].diff)
