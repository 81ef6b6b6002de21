"""Threshold: a step function                      threshold_param { threshold } (0)

forward:  y = 1 if x > threshold else 0      (x == threshold gives 0, as Caffe)
backward: dx = 0. Caffe's ThresholdLayer has no backward (it aborts with "Not Implemented"
          if one is asked). The step's derivative is 0 everywhere but at the threshold, where
          it does not exist, so netdef writes dx = 0: a net that backpropagates through a
          Threshold (force_backward, or a learnable layer below it) trains the rest of the net
          instead of stopping, and what reaches the layers below is the exact gradient almost
          everywhere. Users wanting a learning signal through a step need a surrogate (e.g.
          Sigmoid), not this layer.
shape:    top = bottom (may be computed in place: backward reads neither x nor y)
"""
from . import register_layer
from ._neuron import NeuronLayer


@register_layer("Threshold")
class ThresholdLayer(NeuronLayer):
    def setup(self, bottom, top):
        self.threshold = float(self.layer_param.threshold_param.threshold)

    def forward(self, bottom, top):
        self.activation().threshold_forward(bottom[0].count, bottom[0].data, top[0].data,
                                            self.threshold)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.backend.fill(bottom[0].diff, 0.0)
