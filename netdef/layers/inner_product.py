"""InnerProduct (fully connected): flattens axes [axis, end) of the bottom into K inputs.

forward:  Y (M x N) = X (M x K) W^T + 1 b^T      W: (N, K), or (K, N) with transpose: true
backward: dW += dY^T X  (transpose: X^T dY),  db += sum_m dY,  dX = dY W
shape:    bottom (d_0 .. d_{axis-1}, ...K...) -> top (d_0 .. d_{axis-1}, N)
"""
from ..core.blob import count_range
from ..core.fillers import fill
from ..core.layer import Layer
from . import register_layer
from .scale import channel_epilogue


@register_layer("InnerProduct")
class InnerProductLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.inner_product_param
        if not p.HasField("num_output") or p.num_output == 0:
            raise self.error("inner_product_param.num_output must be set and > 0")
        self.N = p.num_output
        self.transpose = p.transpose
        self.axis = bottom[0].canonical_axis(p.axis)
        self.K = self._inner(bottom[0].shape)
        if self.K == 0:
            raise self.shape_error(f"bottom shape {bottom[0].shape} has no inputs from axis {self.axis}")
        w_shape = (self.K, self.N) if self.transpose else (self.N, self.K)
        self.blobs = [self.make_blob(w_shape)]
        fill(self.blobs[0], p.weight_filler, self.name)
        if p.bias_term:
            self.blobs.append(self.make_blob((self.N,)))
            fill(self.blobs[1], p.bias_filler, self.name)

    def _inner(self, shape):
        return count_range(shape, self.axis)

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) <= self.axis:
            raise self.shape_error(f"bottom shape {shape} has no axis {self.axis}")
        k = self._inner(shape)
        if k != self.K:
            raise self.shape_error(f"bottom shape {shape} gives {k} inputs per row; the weights "
                                   f"expect {self.K}")
        top[0].reshape(shape[:self.axis] + (self.N,))

    def _weight(self, direction):
        """The weights as a (K, N) view, rounded in reduced precision (Layer.operand)."""
        W = self.operand(self.blobs[0].data, direction, "w")
        return W if self.transpose else W.T

    def forward(self, bottom, top):
        X = self.operand(bottom[0].data, "forward", "x").reshape(-1, self.K)
        Y = top[0].data.reshape(-1, self.N)
        self.xp.matmul(X, self._weight("forward"), out=Y)
        # the bias, and the BatchNorm / Scale / ReLU the inference fusion folded after the layer
        channel_epilogue(self, Y, None, self.blobs[1].data if len(self.blobs) > 1 else None, Y,
                         self.N, 1)

    def epilogue_dims(self, bottom, top):
        return top[0].count // self.N, self.N, 1

    def backward(self, top, propagate_down, bottom):
        dY = self.operand(top[0].diff, "backward", "dy").reshape(-1, self.N)
        if self.param_needs_grad(0):
            X = self.operand(bottom[0].data, "backward", "x").reshape(-1, self.K)
            dW = self.blobs[0].diff
            # accumulated in place by the backend: no temporary the size of the weights
            with self.products("backward"):
                if self.transpose:
                    self.backend.matmul(X.T, dY, dW, accumulate=True)
                else:
                    self.backend.matmul(dY.T, X, dW, accumulate=True)
        if len(self.blobs) > 1 and self.param_needs_grad(1):  # a sum: float32
            self.blobs[1].diff += top[0].diff.reshape(-1, self.N).sum(axis=0)
        if propagate_down[0]:
            dX = bottom[0].diff.reshape(-1, self.K)
            self.xp.matmul(dY, self._weight("backward").T, out=dX)
