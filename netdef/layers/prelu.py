"""PReLU: ReLU with a learned slope for the negative part, per channel or shared.

prelu_param { filler (constant 0.25)  channel_shared (false) }
param:    a of shape (C,) with C = bottom.shape[1], or of shape () (a scalar, as Caffe stores it)
          with channel_shared
forward:  y = x if x > 0 else a_c x            c = the channel (axis 1) of the element
backward: dx = dy if x > 0 else a_c dy
          da_c += sum over the elements of channel c (all elements when shared) of dy x [x <= 0]
shape:    top = bottom, >= 2 axes (may be computed in place; x is then kept for backward)
"""
from ..core import netdef_pb2 as pb
from ..core.fillers import fill
from . import register_layer
from ._neuron import NeuronLayer
from .scale import channel_reduce


@register_layer("PReLU")
class PReLULayer(NeuronLayer):
    def setup(self, bottom, top):
        p = self.layer_param.prelu_param
        if bottom[0].num_axes < 2:
            raise self.shape_error(f"bottom shape {bottom[0].shape} has fewer than 2 axes")
        self.shared = p.channel_shared
        self.channels = bottom[0].shape[1]
        a = self.make_blob(() if self.shared else (self.channels,))
        fill(a, p.filler if p.HasField("filler") else pb.FillerParameter(type="constant", value=0.25),
             self.name)
        self.blobs = [a]

    def adapt_param(self, index, values):
        # a shared slope stored as a 1-element vector (or the other way round)
        if values.size == self.blobs[index].count and values.size == 1:
            return values.reshape(self.blobs[index].shape)
        return None

    def backward_reads_input(self):
        return True

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) < 2 or shape[1] != self.channels:
            raise self.shape_error(f"bottom shape {shape} does not have the {self.channels} channels "
                                   "(axis 1) the slopes were made for")
        super().reshape(bottom, top)
        self.N = shape[0]
        self.inner = bottom[0].count // max(self.N * self.channels, 1)

    def forward(self, bottom, top):
        self.keep_input(bottom, top)
        div = self.channels if self.shared else 1
        iters, tile = self.row_launch(bottom[0].count, self.inner)
        self.activation().prelu_forward(iters, bottom[0].data, self.blobs[0].data, top[0].data,
                                        self.channels, self.inner, div, tile)

    def backward(self, top, propagate_down, bottom):
        k = self.activation()
        x = self.input_data(bottom, top)
        dy = top[0].diff
        if self.param_needs_grad(0):
            # rows of (N, C, inner) per channel, or of (N, C * inner) when shared
            D, inner = (1, self.channels * self.inner) if self.shared else (self.channels, self.inner)
            channel_reduce(self, lambda n, part, parts: k.prelu_slope_partial(n, dy, x, part, inner, parts),
                           self.blobs[0].diff, self.N, D, inner, beta=1.0)
        if propagate_down[0]:
            div = self.channels if self.shared else 1
            iters, tile = self.row_launch(bottom[0].count, self.inner)
            k.prelu_backward(iters, dy, x, self.blobs[0].data, bottom[0].diff, self.channels,
                             self.inner, div, tile)
