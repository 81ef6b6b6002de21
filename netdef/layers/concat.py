"""Concat: joins bottoms along `axis` (concat_param.axis, default 1; legacy concat_dim).

forward:  top[..., offset_k : offset_k + n_k, ...] = bottom_k
backward: dbottom_k = dtop[..., offset_k : offset_k + n_k, ...]
shape:    all axes equal except `axis`, whose sizes add up
Each bottom is one parallel block copy (the reverse of Slice's).
"""
from ..core.layer import Layer
from . import register_layer
from .slice import copy_piece


@register_layer("Concat")
class ConcatLayer(Layer):
    min_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.concat_param
        if p.HasField("axis") and p.HasField("concat_dim"):
            raise self.error("give either axis or the legacy concat_dim, not both")
        self.axis_param = p.concat_dim if p.HasField("concat_dim") else p.axis

    def reshape(self, bottom, top):
        ref = bottom[0].shape
        self.axis = bottom[0].canonical_axis(self.axis_param)
        total = 0
        for i, b in enumerate(bottom):
            s = b.shape
            if len(s) != len(ref) or s[:self.axis] + s[self.axis + 1:] != ref[:self.axis] + ref[self.axis + 1:]:
                raise self.shape_error(f"bottom[{i}] has shape {s}, incompatible with bottom[0] {ref} "
                                       f"for concatenation along axis {self.axis}")
            total += s[self.axis]
        top[0].reshape(ref[:self.axis] + (total,) + ref[self.axis + 1:])

    def _pieces(self, top, bottom):
        """(i, bottom i, its block of the top as copy_piece's outer, whole_width, offset, width)."""
        ax = self.axis
        outer, inner = top[0].count_range(0, ax), top[0].count_range(ax + 1)
        off = 0
        for i, b in enumerate(bottom):
            n = b.shape[ax]
            yield i, b, (outer, top[0].shape[ax] * inner, off * inner, n * inner)
            off += n

    def forward(self, bottom, top):
        for _, b, geom in self._pieces(top, bottom):
            copy_piece(self, top[0].data, b.data, *geom, to_piece=False)

    def backward(self, top, propagate_down, bottom):
        for i, b, geom in self._pieces(top, bottom):
            if propagate_down[i]:
                copy_piece(self, top[0].diff, b.diff, *geom, to_piece=True)
