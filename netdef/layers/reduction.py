"""Reduction: reduces every axis from `axis` on to one value, scaled by `coeff`.

reduction_param { operation (SUM | ASUM | SUMSQ | MEAN)  axis (0)  coeff (1) }
As Caffe, the reduction runs over *all* the trailing axes from `axis` (not one axis): the
bottom is seen as (rows, dim), rows = prod(shape[:axis]), dim = prod(shape[axis:]).
forward:  SUM   y[r] = coeff sum_j x[r, j]          ASUM  y[r] = coeff sum_j |x[r, j]|
          SUMSQ y[r] = coeff sum_j x[r, j]^2        MEAN  y[r] = coeff / dim sum_j x[r, j]
backward: dx[r, j] = coeff dy[r] f'(x[r, j]) with f' = 1 (SUM), sign(x) (ASUM, 0 at 0),
          2 x (SUMSQ), 1 / dim (MEAN)
shape:    top = bottom.shape[:axis]; axis 0 (the default) gives a scalar top of shape ().
An empty reduction (dim 0) gives 0 (SUM, ASUM, SUMSQ) or NaN (MEAN, 0 / 0).
"""
from ..core import netdef_pb2 as pb
from ..core.layer import Layer
from . import register_layer

R = pb.ReductionParameter


@register_layer("Reduction")
class ReductionLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.reduction_param
        self.op = int(p.operation)
        self.coeff = float(p.coeff)
        self.axis_param = int(p.axis)

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        axis = bottom[0].canonical_axis(self.axis_param)
        self.rows = bottom[0].count_range(0, axis)
        self.dim = bottom[0].count_range(axis)
        top[0].reshape(shape[:axis])
        mean = self.op == R.MEAN
        self.scale = self.coeff / self.dim if mean and self.dim else self.coeff
        if mean and not self.dim:
            self.scale = float("nan")
        self.parts = self.backend.reduce_parts(self.rows, self.dim)

    def forward(self, bottom, top):
        if not self.rows:
            return
        partial = self.backend.workspace(self.dtype, self.rows * self.parts, "reduction")
        self.kernels("reduction").reduction_partial(self.rows * self.parts, bottom[0].data,
                                                    partial, self.dim, self.parts, self.op)
        self.kernels("scale").reduce_partials(self.rows, partial, top[0].data, 1, self.parts,
                                              self.scale, 0.0)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.kernels("reduction").reduction_backward(
                bottom[0].count, bottom[0].data, top[0].diff, bottom[0].diff, self.dim, self.op,
                self.scale)
