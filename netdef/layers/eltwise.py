"""Eltwise: combines K >= 2 bottoms of identical shape elementwise.

SUM  (default): y = sum_k c_k x_k (coeff c, default all 1)   dx_k = c_k dy
PROD:           y = prod_k x_k                                dx_k = dy prod_{j!=k} x_j
                (stable_prod_grad: false uses dy * y / x_k, wrong where x_k = 0)
MAX:            y = max_k x_k (first maximum wins)            dx_k = dy where x_k was the max
                (the argmax mask is kept only when the Net plans a backward)
Forward reads every bottom once and writes y once, whatever K.
shape:          top = bottom[0]
"""
from ..core import netdef_pb2 as pb
from ..core.layer import Layer
from . import register_layer

EltwiseOp = pb.EltwiseParameter


@register_layer("Eltwise")
class EltwiseLayer(Layer):
    min_bottom = 2
    exact_num_top = 1
    #: the op codes of kernels/eltwise.cu
    _OPS = {EltwiseOp.SUM: 0, EltwiseOp.PROD: 1, EltwiseOp.MAX: 2}

    def setup(self, bottom, top):
        p = self.layer_param.eltwise_param
        self.op = p.operation
        self.stable = p.stable_prod_grad
        if p.coeff and self.op != EltwiseOp.SUM:
            raise self.error("coeff is only allowed for operation SUM")
        if p.coeff and len(p.coeff) != len(bottom):
            raise self.error(f"{len(p.coeff)} coeff values for {len(bottom)} bottoms")
        self.coeff = [float(c) for c in p.coeff] or [1.0] * len(bottom)
        self.coeff_array = None  # self.coeff on the device, made at the first forward
        self.mask = None

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        for i, b in enumerate(bottom[1:], 1):
            if b.shape != shape:
                raise self.shape_error(f"bottom[{i}] has shape {b.shape}, bottom[0] has {shape}; "
                                       "all bottoms must have the same shape")
        top[0].reshape(shape)
        self.count = top[0].count
        self.block = self.row_tile(self.count, 1)  # elements per kernel iteration
        self.iters = -(-self.count // self.block)

    def _keeps_mask(self):
        return self.op == EltwiseOp.MAX and self.need_backward

    def forward(self, bottom, top):
        y = top[0].data
        if self._keeps_mask():
            if self.mask is None or self.mask.shape != y.shape:
                self.mask = self.xp.empty(y.shape, dtype=self.dtype)
            mask = self.mask
        else:
            self.mask = None
            mask = y  # not written
        if self.coeff_array is None:
            self.coeff_array = self.xp.asarray(self.coeff, dtype=self.dtype)
        xs = self.backend.addresses([b.data for b in bottom])
        # a ReLU the inference fusion folded into the layer (ResNet's sum + ReLU): in the same
        # pass when in place; into the ReLU's own top, after it, when that is another blob
        ep = self.epilogue
        slope = ep.slope if ep is not None else None
        fused = slope is not None and ep.target is None
        self.kernels("eltwise").eltwise_forward(self.iters, xs, self.coeff_array, len(bottom), y, mask,
                                                self.count, self.block, self._OPS[self.op],
                                                int(self.mask is not None), int(fused),
                                                slope if fused else 0.0)
        if slope is not None and not fused:
            self.kernels("activation").relu_forward(self.count, y, ep.target.data, slope)

    def epilogue_dims(self, bottom, top):
        return ()  # a ReLU only: no per-channel map is folded into an elementwise sum

    def backward(self, top, propagate_down, bottom):
        k = self.kernels("eltwise")
        n, dy = self.count, top[0].diff
        xs = None
        for i, b in enumerate(bottom):
            if not propagate_down[i]:
                continue
            if self.op == EltwiseOp.SUM:
                k.eltwise_axpby(n, dy, self.coeff[i], b.diff, 0.0)
            elif self.op == EltwiseOp.PROD:
                if self.stable:
                    if xs is None:
                        xs = self.backend.addresses([x.data for x in bottom])
                    k.eltwise_prod_backward_stable(self.iters, xs, len(bottom), i, dy, b.diff, n, self.block)
                else:
                    k.eltwise_prod_backward_quick(n, dy, top[0].data, b.data, b.diff)
            else:
                if self.mask is None:
                    raise self.error("backward after a forward that kept no argmax mask (the Net "
                                     "planned no backward for this layer: use force_backward)")
                k.eltwise_max_backward(n, dy, self.mask, i, b.diff)
