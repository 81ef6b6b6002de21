"""ReLU (leaky when relu_param.negative_slope != 0).

forward:  y = x if x > 0 else slope * x
backward: dx = dy if x > 0 else slope * dy
shape:    top = bottom (may be computed in place)
"""
from . import register_layer
from ._neuron import NeuronLayer


@register_layer("ReLU")
class ReLULayer(NeuronLayer):
    def setup(self, bottom, top):
        self.slope = float(self.layer_param.relu_param.negative_slope)
        if self.slope < 0 and top[0] is bottom[0]:
            # backward reads the output to recover the sign of x, which a negative slope flips
            raise self.error("in-place ReLU needs negative_slope >= 0")

    def forward(self, bottom, top):
        self.kernels("activation").relu_forward(bottom[0].count, bottom[0].data, top[0].data, self.slope)

    def relu_slope(self):
        return self.slope

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            # With slope < 0 the output's sign is not the input's; use the (intact) input.
            ref = top[0].data if self.slope >= 0 else bottom[0].data
            self.kernels("activation").relu_backward(bottom[0].count, top[0].diff, ref, bottom[0].diff,
                                                     self.slope)
