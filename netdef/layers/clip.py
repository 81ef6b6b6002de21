"""Clip: limits values to [min, max]               clip_param { min  max } (both required)

forward:  y = min(max(x, min), max)
backward: dx = dy where min <= x <= max (the bounds included, as Caffe), 0 elsewhere
shape:    top = bottom (in place allowed: backward reads x, which is then kept before forward)
min > max is an error.
"""
from . import register_layer
from ._neuron import NeuronLayer


@register_layer("Clip")
class ClipLayer(NeuronLayer):
    def setup(self, bottom, top):
        p = self.layer_param.clip_param
        missing = [f for f in ("min", "max") if not p.HasField(f)]
        if missing:
            raise self.error(f"clip_param.{' and '.join(missing)} must be given")
        self.lo, self.hi = float(p.min), float(p.max)
        if self.lo > self.hi:
            raise self.error(f"clip_param.min {self.lo} is greater than max {self.hi}")

    def backward_reads_input(self):
        return True

    def forward(self, bottom, top):
        self.keep_input(bottom, top)
        self.activation().clip_forward(bottom[0].count, bottom[0].data, top[0].data, self.lo, self.hi)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.activation().clip_backward(bottom[0].count, top[0].diff,
                                            self.input_data(bottom, top), bottom[0].diff,
                                            self.lo, self.hi)
