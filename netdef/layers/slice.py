"""Slice: cuts the bottom along `axis` into len(top) consecutive pieces (the inverse of Concat).

slice_param { axis (1)  slice_point (repeated)  slice_dim (legacy, 1) }
axis may be negative (-1 is the last axis); the legacy slice_dim is a non-negative axis and may
not be given together with axis. With K tops, slice_point holds K - 1 strictly increasing
positions 0 < p_1 < ... < p_{K-1} < D (D = bottom.shape[axis]) and top k takes [p_k, p_{k+1})
with p_0 = 0, p_K = D; without slice_point, D must divide by K and every top takes D / K.
Seeing the bottom as (outer, D, inner), outer = prod(shape[:axis]), inner = prod(shape[axis+1:]):
forward:  top_k[o, j, i] = bottom[o, p_k + j, i]
backward: dbottom[o, p_k + j, i] = dtop_k[o, j, i]   (every element belongs to exactly one top)
shape:    top_k = bottom.shape with shape[axis] = p_{k+1} - p_k
A bottom with a zero-sized axis other than `axis` (an empty batch) gives empty tops.
"""
from ..core.layer import Layer
from . import register_layer


def copy_piece(layer, whole, piece, outer, whole_width, offset, width, to_piece):
    """Between a blob seen as (outer, whole_width) and a piece of it, columns [offset, offset +
    width) of every row, seen as (outer, width): piece = that part of whole (to_piece) or the
    reverse. One parallel copy pass (kernels/gather.cu's copy_block); Concat is the reverse of
    Slice."""
    strides = (whole_width, offset, width, 0) if to_piece else (width, 0, whole_width, offset)
    src, dst = (whole, piece) if to_piece else (piece, whole)
    iters, tile = layer.row_launch(outer * width, width)
    layer.kernels("gather").copy_block(iters, src, dst, width, *strides, tile)


@register_layer("Slice")
class SliceLayer(Layer):
    exact_num_bottom = 1
    min_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.slice_param
        if p.HasField("axis") and p.HasField("slice_dim"):
            raise self.error("give either slice_param.axis or the legacy slice_dim, not both")
        self.axis_param = int(p.slice_dim) if p.HasField("slice_dim") else int(p.axis)
        self.slice_points = [int(s) for s in p.slice_point]
        if self.slice_points and len(self.slice_points) != len(top) - 1:
            raise self.error(f"{len(self.slice_points)} slice_point values for {len(top)} tops; "
                             f"give {len(top) - 1} (one fewer than the tops), or none for an "
                             "equal split")

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.axis = bottom[0].canonical_axis(self.axis_param)
        D, K = shape[self.axis], len(top)
        if self.slice_points:
            bounds = [0] + self.slice_points + [D]
            for k in range(K):
                if bounds[k + 1] <= bounds[k]:
                    raise self.shape_error(
                        f"slice_point {self.slice_points} must increase strictly within (0, {D}) "
                        f"for axis {self.axis} of bottom {shape}; top {k} would take "
                        f"[{bounds[k]}, {bounds[k + 1]})")
        else:
            if D % K:
                raise self.shape_error(f"axis {self.axis} of bottom {shape} has {D} elements, "
                                       f"which {K} tops cannot split equally; give slice_point")
            bounds = [k * (D // K) for k in range(K + 1)]
        self.bounds = bounds
        self.outer = bottom[0].count_range(0, self.axis)
        self.inner = bottom[0].count_range(self.axis + 1)
        for k, t in enumerate(top):
            t.reshape(shape[:self.axis] + (bounds[k + 1] - bounds[k],) + shape[self.axis + 1:])

    def _copy(self, whole, piece, k, to_piece):
        copy_piece(self, whole, piece, self.outer, self.bounds[-1] * self.inner,
                   self.bounds[k] * self.inner, (self.bounds[k + 1] - self.bounds[k]) * self.inner,
                   to_piece)

    def forward(self, bottom, top):
        for k, t in enumerate(top):
            self._copy(bottom[0].data, t.data, k, True)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            for k, t in enumerate(top):
                self._copy(bottom[0].diff, t.diff, k, False)
