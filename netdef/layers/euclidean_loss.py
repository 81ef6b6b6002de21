"""EuclideanLoss: half the mean (over the first axis) squared distance of two blobs.

bottom[0]: predictions a, bottom[1]: targets b, of the same count (any shapes); N = a.shape[0].
forward:  L = 1 / (2 N) * sum_i (a_i - b_i)^2
backward: da = dL * (a - b) / N,  db = -dL * (a - b) / N, where dL = top[0].diff (the loss
          weight: the Net writes it there before backward). Both bottoms may receive a gradient.
shape:    top[0] = () (a scalar)
"""
from ..core.layer import Layer
from . import register_layer


@register_layer("EuclideanLoss")
class EuclideanLossLayer(Layer):
    exact_num_bottom = 2
    exact_num_top = 1
    is_loss = True

    def setup(self, bottom, top):
        self.diff = None

    def reshape(self, bottom, top):
        a, b = bottom
        if a.count != b.count:
            raise self.shape_error(f"the two inputs must have the same number of elements: "
                                   f"{a.shape} ({a.count}) vs {b.shape} ({b.count})")
        if a.num_axes == 0 or a.shape[0] == 0:
            raise self.shape_error(f"bottom[0] of shape {a.shape} has no first axis to average over")
        top[0].reshape(())
        if self.diff is None or self.diff.shape != a.shape:
            self.diff = self.xp.empty(a.shape, dtype=self.dtype)

    def forward(self, bottom, top):
        a, b = bottom
        self.xp.subtract(a.data, b.data.reshape(a.shape), out=self.diff)
        d = self.diff.reshape(-1)
        top[0].data[...] = self.xp.dot(d, d) / (2 * a.shape[0])

    def backward(self, top, propagate_down, bottom):
        num = bottom[0].shape[0]
        for i in (0, 1):
            if propagate_down[i]:
                sign = 1.0 if i == 0 else -1.0
                # the loss weight sits in top.diff (a 0-d array; no host round trip on the GPU)
                self.xp.multiply(self.diff, top[0].diff * (sign / num),
                                 out=bottom[i].diff.reshape(self.diff.shape))
