"""Filter: keeps the items (positions along axis 0) whose selector value is non-zero.

bottom[0 .. K-1]: the blobs to filter, each with the selector's first axis N; bottom[K] (the
last) is the selector, of shape (N,) or (N, 1, ..., 1). No parameters. K tops.
With S = [n : selector[n] != 0] in increasing order (NaN counts as non-zero, as in C):
forward:  top_k[j] = bottom_k[S[j]]
backward: dbottom_k[n] = dtop_k[j] if n = S[j], else 0; the selector gets no gradient (Caffe
          refuses one; here allow_backward is False for it and it is left at 0 if asked).
shape:    top_k = (len(S),) + bottom_k.shape[1:]. An all-zero selector gives empty tops
          (axis 0 of size 0), which the layers after it must accept.
The top's first axis depends on the selector's *values*: as Caffe, the first reshape (while a
net is set up, before any data) gives N items so that the layers after it can set up, and
every forward reshapes the tops to the selection (the Net then reshapes the layers below).
"""
import numpy as np

from ..core.layer import Layer
from . import register_layer
from ._gather import RowGather


@register_layer("Filter")
class FilterLayer(Layer):
    min_bottom = 2
    min_top = 1

    def setup(self, bottom, top):
        if len(top) != len(bottom) - 1:
            raise self.error(f"takes one top per filtered bottom (all bottoms but the last, the "
                             f"selector): {len(bottom)} bottoms need {len(bottom) - 1} tops, got "
                             f"{len(top)}")
        self.rows = RowGather(self)
        self.first_reshape = True
        self.selector_index = len(bottom) - 1

    def allow_backward(self, bottom_index):
        return bottom_index != self.selector_index

    def _check(self, bottom):
        sel = bottom[-1].shape
        if not sel or any(d != 1 for d in sel[1:]):
            raise self.shape_error(f"the selector (last bottom) has shape {sel}; it must be (N,) "
                                   "or (N, 1, ..., 1)")
        for i, b in enumerate(bottom[:-1]):
            if not b.shape or b.shape[0] != sel[0]:
                raise self.shape_error(f"bottom[{i}] has shape {b.shape}; its first axis must "
                                       f"match the selector's {sel[0]} items (selector {sel})")

    def _select(self, bottom):
        s = np.asarray(self.backend.to_numpy(bottom[-1].data)).reshape(-1)
        return np.flatnonzero(s != 0).astype(np.int64)

    def _shape_tops(self, bottom, top, n):
        for b, t in zip(bottom[:-1], top, strict=True):
            shape = (n,) + b.shape[1:]
            if t.shape != shape:
                t.reshape(shape)

    def reshape(self, bottom, top):
        self._check(bottom)
        n = bottom[0].shape[0] if self.first_reshape else self._select(bottom).size
        self.first_reshape = False
        self._shape_tops(bottom, top, n)

    def forward(self, bottom, top):
        idx = self._select(bottom)
        self.rows.set_index(idx, bottom[0].shape[0])
        self._shape_tops(bottom, top, idx.size)
        for b, t in zip(bottom[:-1], top, strict=True):
            self.rows.gather(b.data, t.data, b.count_range(1))

    def backward(self, top, propagate_down, bottom):
        for i, (b, t) in enumerate(zip(bottom[:-1], top, strict=True)):
            if propagate_down[i]:
                self.rows.scatter_add(t.diff, b.diff, b.count_range(1))
        if propagate_down[-1]:
            bottom[-1].diff[...] = 0
