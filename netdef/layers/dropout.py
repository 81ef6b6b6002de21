"""Dropout (inverted, as Caffe): scaling happens at training time, so TEST is the identity.

TRAIN forward:  y = x * m / (1 - p),  m_i ~ Bernoulli(1 - p),  p = dropout_ratio
TRAIN backward: dx = dy * m / (1 - p)
TEST:           y = x, dx = dy
shape:          top = bottom (may be computed in place)
"""
from ..core.layer import TRAIN
from . import register_layer
from ._neuron import NeuronLayer


@register_layer("Dropout")
class DropoutLayer(NeuronLayer):
    def setup(self, bottom, top):
        self.ratio = float(self.layer_param.dropout_param.dropout_ratio)
        if not 0.0 <= self.ratio < 1.0:
            raise self.error(f"dropout_ratio must be in [0, 1), got {self.ratio}")
        self.scale = 1.0 / (1.0 - self.ratio)
        self.uniform = None

    def forward(self, bottom, top):
        if self.phase == TRAIN:
            self.uniform = self.backend.rng.random(bottom[0].shape, dtype=self.dtype)
            self.kernels("dropout").dropout_forward(bottom[0].count, bottom[0].data, self.uniform,
                                                    top[0].data, self.ratio, self.scale)
        elif top[0] is not bottom[0]:
            top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        if self.phase == TRAIN:
            self.kernels("dropout").dropout_backward(bottom[0].count, top[0].diff, self.uniform,
                                                     bottom[0].diff, self.ratio, self.scale)
        elif top[0] is not bottom[0]:
            bottom[0].diff[...] = top[0].diff
