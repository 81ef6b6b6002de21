"""Concat: joins bottoms along `axis` (concat_param.axis, default 1; legacy concat_dim).

forward:  top[..., offset_k : offset_k + n_k, ...] = bottom_k
backward: dbottom_k = dtop[..., offset_k : offset_k + n_k, ...]
shape:    all axes equal except `axis`, whose sizes add up
"""
from ..layer import Layer
from . import register_layer


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

    def _slices(self, bottom):
        off = 0
        for b in bottom:
            n = b.shape[self.axis]
            yield b, (slice(None),) * self.axis + (slice(off, off + n),)
            off += n

    def forward(self, bottom, top):
        if len(bottom) == 1:
            top[0].data[...] = bottom[0].data
            return
        for b, sl in self._slices(bottom):
            top[0].data[sl] = b.data

    def backward(self, top, propagate_down, bottom):
        for i, (b, sl) in enumerate(self._slices(bottom)):
            if propagate_down[i]:
                b.diff[...] = top[0].diff[sl]
