"""Eltwise: combines K >= 2 bottoms of identical shape elementwise.

SUM  (default): y = sum_k c_k x_k (coeff c, default all 1)   dx_k = c_k dy
PROD:           y = prod_k x_k                                dx_k = dy prod_{j!=k} x_j
                (stable_prod_grad: false uses dy * y / x_k, wrong where x_k = 0)
MAX:            y = max_k x_k (first maximum wins)            dx_k = dy where x_k was the max
shape:          top = bottom[0]
"""
from .. import netdef_pb2 as pb
from ..layer import Layer
from . import register_layer

EltwiseOp = pb.EltwiseParameter


@register_layer("Eltwise")
class EltwiseLayer(Layer):
    min_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.eltwise_param
        self.op = p.operation
        self.stable = p.stable_prod_grad
        if p.coeff and self.op != EltwiseOp.SUM:
            raise self.error("coeff is only allowed for operation SUM")
        if p.coeff and len(p.coeff) != len(bottom):
            raise self.error(f"{len(p.coeff)} coeff values for {len(bottom)} bottoms")
        self.coeff = [float(c) for c in p.coeff] or [1.0] * len(bottom)
        self.mask = None

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        for i, b in enumerate(bottom[1:], 1):
            if b.shape != shape:
                raise self.shape_error(f"bottom[{i}] has shape {b.shape}, bottom[0] has {shape}; "
                                       "all bottoms must have the same shape")
        top[0].reshape(shape)
        if self.op == EltwiseOp.MAX:
            self.mask = self.xp.zeros(shape, dtype=self.dtype)

    def forward(self, bottom, top):
        k = self.kernels("eltwise")
        n, y = top[0].count, top[0].data
        if self.op == EltwiseOp.SUM:
            k.eltwise_axpby(n, bottom[0].data, self.coeff[0], y, 0.0)
            for c, b in zip(self.coeff[1:], bottom[1:]):
                k.eltwise_axpby(n, b.data, c, y, 1.0)
        elif self.op == EltwiseOp.PROD:
            k.eltwise_mul(n, bottom[0].data, bottom[1].data, y)
            for b in bottom[2:]:
                k.eltwise_mul(n, y, b.data, y)
        else:
            for i, b in enumerate(bottom):
                k.eltwise_max_forward(n, b.data, i, y, self.mask)

    def backward(self, top, propagate_down, bottom):
        k = self.kernels("eltwise")
        n, dy = top[0].count, top[0].diff
        stacked = None
        for i, b in enumerate(bottom):
            if not propagate_down[i]:
                continue
            if self.op == EltwiseOp.SUM:
                k.eltwise_axpby(n, dy, self.coeff[i], b.diff, 0.0)
            elif self.op == EltwiseOp.PROD:
                if self.stable:
                    if stacked is None:
                        stacked = self.xp.stack([x.data for x in bottom])
                    k.eltwise_prod_backward_stable(n, stacked, len(bottom), i, dy, b.diff)
                else:
                    k.eltwise_prod_backward_quick(n, dy, top[0].data, b.data, b.diff)
            else:
                k.eltwise_max_backward(n, dy, self.mask, i, b.diff)
