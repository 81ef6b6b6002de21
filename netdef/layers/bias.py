"""Bias: adds a blob b broadcast over the bottom.

bias_param { axis (1)  num_axes (1)  filler (constant 0) }
One bottom:  b is a learned param of shape bottom.shape[axis : axis + num_axes]
             (num_axes = -1: to the last axis; num_axes = 0: a scalar of shape ()).
Two bottoms: b = bottom[1], whose shape must equal bottom[0].shape[axis : axis + bottom[1].num_axes].

Seeing the bottom as (outer, D, inner) with D = b.count (axis is taken as 0 when b is a scalar):
forward:  y[o, d, t] = x[o, d, t] + b[d]
backward: dx = dy;  db[d] = sum_{o, t} dy  (added to the param's diff; written to bottom[1].diff)
shape:    top = bottom[0] (may be computed in place)
"""
from ..core.fillers import fill
from ..core.layer import Layer
from . import register_layer
from .scale import broadcast_dims, channel_epilogue, channel_reduce, param_shape


@register_layer("Bias")
class BiasLayer(Layer):
    min_bottom = 1
    max_bottom = 2
    exact_num_top = 1
    in_place_ok = True

    def setup(self, bottom, top):
        p = self.layer_param.bias_param
        self.blobs = []
        if len(bottom) == 1:
            b = self.make_blob(param_shape(self, bottom[0].shape, p.axis, p.num_axes))
            fill(b, p.filler, self.name)
            self.blobs.append(b)

    def _bias(self, bottom):
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom, top):
        self.outer, self.D, self.inner = broadcast_dims(self, bottom[0].shape, self._bias(bottom).shape,
                                                        self.layer_param.bias_param.axis, "bias")
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        channel_epilogue(self, bottom[0].data, None, self._bias(bottom).data, top[0].data, self.D,
                         self.inner)

    # With its own bias (one bottom) the layer is a per-channel map the inference fusion may fold
    def affine_dims(self, bottom, top):
        return (self.outer, self.D, self.inner) if len(bottom) == 1 else None

    epilogue_dims = affine_dims

    def channel_map(self):
        return None, self.blobs[0].data

    def backward(self, top, propagate_down, bottom):
        dy = top[0].diff
        two = len(bottom) > 1
        if (two and propagate_down[1]) or (not two and self.param_needs_grad(0)):
            k = self.kernels("scale")
            channel_reduce(self, lambda n, part, parts: k.scale_partial_sum(n, dy, part, self.inner, parts),
                           self._bias(bottom).diff, self.outer, self.D, self.inner,
                           beta=0.0 if two else 1.0)
        if propagate_down[0] and top[0] is not bottom[0]:
            bottom[0].diff[...] = dy
