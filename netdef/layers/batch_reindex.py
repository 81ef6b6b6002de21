"""BatchReindex: picks items of bottom[0] along axis 0 by the indices in bottom[1] (a gather,
with repeats and any order: permutations, sub-batches, oversampling).

bottom[0]: data (N, ...); bottom[1]: indices (M,), integer values in [0, N) stored as floats.
No parameters.
forward:  top[m] = bottom[0][idx[m]]
backward: dbottom[0][n] = sum over m with idx[m] = n of dtop[m]   (0 for items never picked);
          summed per item by kernels/gather.cu's segment_sum_rows over the positions sorted
          by index on the host, in the order of idx: deterministic, no atomics. The indices get
          no gradient (allow_backward is False for bottom[1]; left at 0 if asked).
shape:    top = (M,) + bottom[0].shape[1:]; M = 0 gives an empty top.
An index out of range or not an integer is an error naming the layer, the value and position.
"""
import numpy as np

from ..core.layer import Layer
from . import register_layer
from ._gather import RowGather


@register_layer("BatchReindex")
class BatchReindexLayer(Layer):
    exact_num_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        self.rows = RowGather(self)

    def allow_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        data, idx = bottom[0].shape, bottom[1].shape
        if len(idx) != 1:
            raise self.shape_error(f"bottom[1] (the indices) has shape {idx}; it must be 1-D (M,)")
        if not data:
            raise self.shape_error("bottom[0] has no axis 0 to pick items from (shape ())")
        top[0].reshape(idx + data[1:])

    def _indices(self, bottom):
        v = np.asarray(self.backend.to_numpy(bottom[1].data), dtype=np.float64)
        n = bottom[0].shape[0]
        idx = np.trunc(v)
        bad = ~((idx == v) & (idx >= 0) & (idx < n))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise self.error(f"index {float(v[j])!r} at position {j} of bottom[1] is not an item "
                             f"of bottom[0] {bottom[0].shape}: indices must be integers in [0, {n})")
        return idx.astype(np.int64)

    def forward(self, bottom, top):
        self.rows.set_index(self._indices(bottom), bottom[0].shape[0])
        self.rows.gather(bottom[0].data, top[0].data, bottom[0].count_range(1))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.rows.scatter_add(top[0].diff, bottom[0].diff, bottom[0].count_range(1))
        if propagate_down[1]:
            bottom[1].diff[...] = 0
