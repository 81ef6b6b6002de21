"""Embed: a lookup table; each bottom value is a row index into a learned (input_dim, num_output)
matrix W (a one-hot InnerProduct, without building the one-hot vectors).

embed_param { num_output  input_dim  bias_term (true)  weight_filler  bias_filler }
The bottom holds integer values (as floats, as Caffe's data layers deliver labels) in
[0, input_dim); anything else (out of range, fractional, NaN) is an error naming the layer, the
value and its position.
forward:  top[p, :] = W[x_p, :] (+ b)                 for every position p of the bottom
backward: dW[v, :] += sum over positions p with x_p = v of dtop[p, :]
          db += sum over p of dtop[p, :]
          no gradient to the bottom (indices are not differentiable; Caffe refuses it, netdef
          does not ask for it: allow_backward is False)
shape:    top = bottom.shape + (num_output,); W (input_dim, num_output), b (num_output,)
dW is summed by kernels/gather.cu's segment_sum_rows over the positions sorted by index on the
host: duplicates are added in a fixed order, on either device, without atomics.
"""
import numpy as np

from ..core.fillers import fill
from ..core.layer import Layer
from . import register_layer
from ._gather import RowGather
from .scale import channel_affine


@register_layer("Embed")
class EmbedLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.embed_param
        for field in ("num_output", "input_dim"):
            if getattr(p, field) <= 0:
                raise self.error(f"embed_param.{field} must be given and > 0")
        self.num_output, self.input_dim = int(p.num_output), int(p.input_dim)
        self.bias_term = bool(p.bias_term)
        self.blobs = [self.make_blob((self.input_dim, self.num_output))]
        fill(self.blobs[0], p.weight_filler, self.name)
        if self.bias_term:
            self.blobs.append(self.make_blob((self.num_output,)))
            fill(self.blobs[1], p.bias_filler, self.name)
        self.rows = RowGather(self)

    def allow_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape + (self.num_output,))

    def _indices(self, x):
        v = np.asarray(self.backend.to_numpy(x)).reshape(-1)
        idx = np.trunc(v)
        bad = ~((idx == v) & (idx >= 0) & (idx < self.input_dim))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            pos = tuple(int(k) for k in np.unravel_index(j, x.shape))
            raise self.error(f"bottom value {float(v[j])!r} at index {pos} is not a row of the "
                             f"embedding: indices must be integers in [0, input_dim = "
                             f"{self.input_dim})")
        return idx.astype(np.int64)

    def forward(self, bottom, top):
        self.rows.set_index(self._indices(bottom[0].data), self.input_dim)
        self.rows.gather(self.blobs[0].data, top[0].data, self.num_output)
        if self.bias_term and top[0].count:
            channel_affine(self, top[0].data, None, self.blobs[1].data, top[0].data, self.num_output, 1)

    def backward(self, top, propagate_down, bottom):
        dy = top[0].diff
        if self.param_needs_grad(0):
            self.rows.scatter_add(dy, self.blobs[0].diff, self.num_output, accumulate=True)
        if self.bias_term and self.param_needs_grad(1):
            # db[d] += sum over positions of dy[p, d]: reduce_partials over (positions, d, 1)
            self.kernels("scale").reduce_partials(self.num_output, dy, self.blobs[1].diff,
                                                  bottom[0].count, 1, 1.0, 1.0)
        if propagate_down[0]:
            bottom[0].diff[...] = 0
