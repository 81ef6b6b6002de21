"""Shared by the layers that pick rows of a blob by an index vector (Filter, BatchReindex,
Embed): the launchers of kernels/gather.cu's gather_rows and of its deterministic adjoint
segment_sum_rows. Not a layer type itself."""
import numpy as np


def segments(idx, rows):
    """(order, starts) for segment_sum_rows: `order` the positions of `idx` grouped by value
    (stable, so duplicates are summed in their order in idx), starts[r] where the group of
    value r begins (rows + 1 entries). idx: int64 numpy vector of values in [0, rows)."""
    order = np.argsort(idx, kind="stable").astype(np.int64)
    starts = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(idx, minlength=rows), out=starts[1:])
    return order, starts


class RowGather:
    """y[r] = x[idx[r]] and its adjoint dx[v] (+)= sum of dy[r] over idx[r] = v, rows of
    `width` elements, for one index vector set by set_index (host numpy, validated by the
    caller)."""

    def __init__(self, layer):
        self.layer = layer
        self.idx = self.order = self.starts = None
        self.n_src = 0

    def set_index(self, idx, n_src):
        backend = self.layer.backend
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        order, starts = segments(idx, n_src)
        self.n_idx, self.n_src = idx.size, n_src
        self.idx = backend.asarray(idx)
        self.order = backend.asarray(order)
        self.starts = backend.asarray(starts)

    def gather(self, x, y, width):
        iters, tile = self.layer.row_launch(self.n_idx * width, width)
        self.layer.kernels("gather").gather_rows(iters, x, self.idx, y, width, tile)

    def scatter_add(self, dy, dx, width, accumulate=False):
        iters, tile = self.layer.row_launch(self.n_src * width, width)
        self.layer.kernels("gather").segment_sum_rows(iters, dy, self.order, self.starts, dx,
                                                      width, int(accumulate), tile)
