"""Reshape: gives the bottom's data a new shape (reshape_param { shape axis num_axes }).

In `shape`, 0 copies the bottom's dimension at that position and -1 (at most once) is inferred.
Only axes [axis, axis + num_axes) of the bottom are replaced (num_axes -1: to the end).
forward copies, backward copies back; the count never changes.
"""
from ..core.blob import count_range
from ..core.layer import Layer
from . import register_layer


@register_layer("Reshape")
class ReshapeLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.reshape_param
        self.dims = [int(d) for d in p.shape.dim]
        if sum(d == -1 for d in self.dims) > 1:
            raise self.error(f"shape {self.dims} has more than one -1")
        if any(d < -1 for d in self.dims):
            raise self.error(f"shape {self.dims} has a dimension below -1")

    def reshape(self, bottom, top):
        p = self.layer_param.reshape_param
        s = bottom[0].shape
        n = len(s)
        start = p.axis if p.axis >= 0 else n + p.axis + 1
        if not 0 <= start <= n:
            raise self.shape_error(f"axis {p.axis} is out of range for bottom shape {s}")
        end = n if p.num_axes == -1 else start + p.num_axes
        if p.num_axes < -1 or end > n:
            raise self.shape_error(f"num_axes {p.num_axes} from axis {start} exceeds bottom shape {s}")
        new = []
        for i, d in enumerate(self.dims):
            if d == 0:
                if start + i >= n:
                    raise self.shape_error(f"dim {i} is 0 (copy) but bottom {s} has no axis {start + i}")
                new.append(s[start + i])
            else:
                new.append(d)
        shape = list(s[:start]) + new + list(s[end:])
        if -1 in shape:
            known = count_range([d for d in shape if d != -1])
            if known == 0 or bottom[0].count % known:
                raise self.shape_error(f"cannot infer -1 in {shape} for a bottom of {bottom[0].count} values")
            shape[shape.index(-1)] = bottom[0].count // known
        count = count_range(shape)
        if count != bottom[0].count:
            raise self.shape_error(f"reshape of {s} ({bottom[0].count} values) to {tuple(shape)} "
                                   f"({count} values) changes the count")
        top[0].reshape(tuple(shape))

    def forward(self, bottom, top):
        top[0].data.reshape(-1)[...] = bottom[0].data.reshape(-1)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff.reshape(-1)[...] = top[0].diff.reshape(-1)
