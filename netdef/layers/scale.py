"""Scale: multiplies the bottom by a blob s broadcast over it, optionally adds a bias b.

scale_param { axis (1)  num_axes (1)  filler (constant 1)  bias_term (false)  bias_filler (constant 0) }
One bottom:  s is a learned param of shape bottom.shape[axis : axis + num_axes]
             (num_axes = -1: to the last axis; num_axes = 0: a scalar of shape ()).
Two bottoms: s = bottom[1], whose shape must equal bottom[0].shape[axis : axis + bottom[1].num_axes];
             num_axes is not used. With bias_term, b is a learned param of bottom[1]'s shape.
Params: [s] (one bottom), then [b] with bias_term.

Seeing the bottom as (outer, D, inner) with D = s.count (axis is taken as 0 when s is a scalar):
forward:  y[o, d, t] = x[o, d, t] * s[d] (+ b[d])
backward: dx = dy * s[d]
          ds[d] = sum_{o, t} dy * x    (added to the param's diff; written to bottom[1].diff)
          db[d] = sum_{o, t} dy
shape:    top = bottom[0] (may be computed in place; x is then kept for ds, only when the Net
          plans a backward: not in a TEST net without force_backward)
"""
from ..core import netdef_pb2 as pb
from ..core.blob import canonical_axis, count_range
from ..core.fillers import fill
from ..core.layer import Layer
from . import register_layer


def channel_reduce(layer, partial_fn, out, outer, D, inner, alpha=1.0, beta=0.0):
    """out[d] = alpha * sum_{o < outer, t < inner} f(o, d, t) + beta * out[d] (out not read when
    beta = 0), for rows r = o * D + d of inner values each. partial_fn(n, partial, parts)
    launches the first-stage kernel that writes the n = outer * D * parts partial sums; how many
    parts per row is the backend's choice (1 on the CPU, enough to fill a GPU)."""
    parts = layer.backend.reduce_parts(outer * D, inner)
    partial = layer.xp.empty(outer * D * parts, dtype=layer.dtype)
    partial_fn(outer * D * parts, partial, parts)
    layer.kernels("scale").reduce_partials(D, partial, out, outer, parts, float(alpha), float(beta))


def channel_affine(layer, x, s, b, y, D, inner, slope=None):
    """y = x * s[d] + b[d] for x seen as (outer, D, inner), s or b None for none, in one pass
    (kernels/scale.cu's channel_affine); with a slope, then ReLU's y if y > 0 else slope y.
    x may be y."""
    iters, tile = layer.row_launch(x.size, inner)
    layer.kernels("scale").channel_affine(iters, x, x if s is None else s, x if b is None else b, y,
                                          D, inner, tile, int(s is not None), int(b is not None),
                                          int(slope is not None), 0.0 if slope is None else slope)


def compose_affine(s, b, s2, b2):
    """(scale, bias) of x -> (x s + b) s2 + b2, per channel; None stands for a scale of 1 or a
    bias of 0. Makes new arrays: the layers' params it is given are never written."""
    if s2 is not None:
        s = s2 if s is None else s * s2
        if b is not None:
            b = b * s2
    if b2 is not None:
        b = b2 if b is None else b + b2
    return s, b


def epilogue_map(layer, s, b):
    """(s, b, slope): the layer's own per-channel map (s, b; None for none) composed with what
    the Net's inference fusion put after the layer (layer.epilogue: the per-channel maps of the
    BatchNorm / Scale / Bias layers folded into it, and the slope of a ReLU, else None), for an
    epilogue in place on the layer's top; for one with a target of its own (epilogue.target),
    the folded layers' part only, which applies to the layer's finished top."""
    ep = layer.epilogue
    if ep is None:
        return s, b, None
    if ep.target is not None:
        s = b = None
    for member in ep.affine:
        s, b = compose_affine(s, b, *member.channel_map())
    return s, b, ep.slope


def channel_epilogue(layer, x, s, b, y, D, inner):
    """y = x * s[d] + b[d] (the layer's own per-channel map; s, b None for none), followed by
    its epilogue (epilogue_map), all in one pass over y; or, for an epilogue with a target,
    y as without it and the epilogue's result from y into the target (one pass each)."""
    ep = layer.epilogue
    if ep is not None and ep.target is not None:
        _affine_or_copy(layer, x, s, b, y, D, inner, None)
        x, y = y, ep.target.data
    s, b, slope = epilogue_map(layer, s, b)
    _affine_or_copy(layer, x, s, b, y, D, inner, slope)


def _affine_or_copy(layer, x, s, b, y, D, inner, slope):
    if s is None and b is None and slope is None:
        if y is not x:
            y[...] = x
        return
    channel_affine(layer, x, s, b, y, D, inner, slope)


def param_shape(layer, bottom_shape, axis, num_axes):
    """bottom_shape[axis : axis + num_axes] for the one-bottom Scale / Bias param."""
    axis = canonical_axis(axis, bottom_shape)
    if num_axes < -1:
        raise layer.error(f"num_axes must be >= 0, or -1 to extend to the last axis; got {num_axes}")
    if num_axes >= 0 and len(bottom_shape) < axis + num_axes:
        raise layer.shape_error(f"bottom shape {bottom_shape} has no {num_axes} axes from axis {axis}")
    return tuple(bottom_shape[axis:]) if num_axes == -1 else tuple(bottom_shape[axis:axis + num_axes])


def broadcast_dims(layer, bottom_shape, operand_shape, axis_param, what):
    """(outer, D, inner) of the bottom for an operand broadcast from axis (checked)."""
    k = len(operand_shape)
    axis = 0 if k == 0 else canonical_axis(axis_param, bottom_shape)
    if len(bottom_shape) < axis + k or tuple(bottom_shape[axis:axis + k]) != tuple(operand_shape):
        raise layer.shape_error(f"{what} of shape {tuple(operand_shape)} does not match bottom[0] "
                                f"shape {tuple(bottom_shape)} from axis {axis}")
    return count_range(bottom_shape, 0, axis), count_range(operand_shape), count_range(bottom_shape, axis + k)


@register_layer("Scale")
class ScaleLayer(Layer):
    min_bottom = 1
    max_bottom = 2
    exact_num_top = 1
    in_place_ok = True

    def setup(self, bottom, top):
        p = self.layer_param.scale_param
        self.blobs = []
        if len(bottom) == 1:
            s = self.make_blob(param_shape(self, bottom[0].shape, p.axis, p.num_axes))
            filler = p.filler if p.HasField("filler") else pb.FillerParameter(type="constant", value=1)
            fill(s, filler, self.name)
            self.blobs.append(s)
        self.bias_term = p.bias_term
        if self.bias_term:
            shape = bottom[1].shape if len(bottom) > 1 else self.blobs[0].shape
            b = self.make_blob(shape)
            fill(b, p.bias_filler, self.name)
            self.blobs.append(b)
        self.bias_index = len(self.blobs) - 1
        self.x_copy = None

    def _scale(self, bottom):
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom, top):
        s = self._scale(bottom)
        p = self.layer_param.scale_param
        self.outer, self.D, self.inner = broadcast_dims(self, bottom[0].shape, s.shape, p.axis, "scale")
        if self.bias_term and self.blobs[self.bias_index].shape != s.shape:
            raise self.shape_error(f"bias param of shape {self.blobs[self.bias_index].shape} does not "
                                   f"match the scale's shape {s.shape}")
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def _keeps_input(self, bottom, top):
        """In place, the scale's gradient needs x, which forward overwrites: keep a copy when a
        backward can follow and may want that gradient."""
        return (top[0] is bottom[0] and self.need_backward
                and (len(bottom) > 1 or self.param_needs_grad(0)))

    def forward(self, bottom, top):
        x = bottom[0].data
        if self._keeps_input(bottom, top):
            if self.x_copy is None or self.x_copy.shape != x.shape:
                self.x_copy = self.xp.empty_like(x)
            self.x_copy[...] = x
        else:
            self.x_copy = None
        b = self.blobs[self.bias_index].data if self.bias_term else None
        channel_epilogue(self, x, self._scale(bottom).data, b, top[0].data, self.D, self.inner)

    # With its own scale (one bottom) the layer is a per-channel map the inference fusion may fold
    def affine_dims(self, bottom, top):
        return (self.outer, self.D, self.inner) if len(bottom) == 1 else None

    epilogue_dims = affine_dims

    def channel_map(self):
        return self.blobs[0].data, self.blobs[self.bias_index].data if self.bias_term else None

    def backward(self, top, propagate_down, bottom):
        k = self.kernels("scale")
        dy = top[0].diff
        if self.bias_term and self.param_needs_grad(self.bias_index):
            channel_reduce(self, lambda n, part, parts: k.scale_partial_sum(n, dy, part, self.inner, parts),
                           self.blobs[self.bias_index].diff, self.outer, self.D, self.inner, beta=1.0)
        two = len(bottom) > 1
        if (two and propagate_down[1]) or (not two and self.param_needs_grad(0)):
            x = bottom[0].data
            if top[0] is bottom[0]:
                if self.x_copy is None:
                    raise self.error("backward after a forward that kept no copy of the input "
                                     "(the Net planned no backward for this layer: use force_backward)")
                x = self.x_copy
            channel_reduce(self, lambda n, part, parts: k.scale_partial_dot(n, dy, x, part, self.inner, parts),
                           self._scale(bottom).diff, self.outer, self.D, self.inner,
                           beta=0.0 if two else 1.0)
        if propagate_down[0]:
            channel_affine(self, dy, self._scale(bottom).data, None, bottom[0].diff, self.D, self.inner)
