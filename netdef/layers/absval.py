"""AbsVal: absolute value.

forward:  y = |x|
backward: dx = dy * sign(x)       (sign(0) = 0)
shape:    top = bottom. Not in place: backward needs the sign of x, which y has lost (Caffe
          refuses in-place AbsVal too).
"""
from . import register_layer
from ._neuron import NeuronLayer


@register_layer("AbsVal")
class AbsValLayer(NeuronLayer):
    in_place_ok = False  # backward reads x, and |x| has lost its sign

    def forward(self, bottom, top):
        self.activation().absval_forward(bottom[0].count, bottom[0].data, top[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.activation().absval_backward(bottom[0].count, top[0].diff, bottom[0].data,
                                              bottom[0].diff)
