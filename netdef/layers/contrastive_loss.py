"""ContrastiveLoss: pulls similar pairs together and pushes dissimilar ones past a margin
(Hadsell, Chopra & LeCun 2006), as Caffe computes it.

contrastive_loss_param { margin (1.0)  legacy_version (false) }
bottom[0]: a (N x C x 1 x 1, or N x C), bottom[1]: b of the same shape, bottom[2]: y, one
           similarity label per pair (N values; similar when int(y) != 0).
forward:  d_n = |a_n - b_n|^2
          L = 1/(2N) sum_n [ y_n d_n + (1 - y_n) max(margin - sqrt(d_n), 0)^2 ]
          legacy_version: the dissimilar term is max(margin - d_n, 0) (Caffe's first version)
backward: da_n = dL/N (a_n - b_n) when similar; when dissimilar and the margin term is
          positive: legacy -dL/N (a_n - b_n), else -dL/N m_n / (sqrt(d_n) + 1e-4) (a_n - b_n),
          m_n = margin - sqrt(d_n) (Caffe's 1e-4 keeps d_n = 0 finite); db = -da.
          No gradient to y.
shape:    top[0] = () (a scalar)
"""
from ..core.layer import Layer
from . import register_layer


@register_layer("ContrastiveLoss")
class ContrastiveLossLayer(Layer):
    exact_num_bottom = 3
    exact_num_top = 1
    is_loss = True

    def setup(self, bottom, top):
        cp = self.layer_param.contrastive_loss_param
        self.margin = float(cp.margin)
        self.legacy = bool(cp.legacy_version)
        self.rows = None

    def allow_backward(self, bottom_index):
        return bottom_index < 2

    def reshape(self, bottom, top):
        a, b, y = bottom
        if a.num_axes < 2 or any(d != 1 for d in a.shape[2:]):
            raise self.shape_error(f"bottom[0] {a.shape} must be N x C (x 1 x 1)")
        if b.shape != a.shape:
            raise self.shape_error(f"the two inputs must have the same shape: {a.shape} vs {b.shape}")
        N = a.shape[0]
        if y.num_axes == 0 or y.shape[0] != N or y.count != N:
            raise self.shape_error(f"the similarity labels {y.shape} must hold one value per "
                                   f"pair: N = {N} (N x 1 x 1 x 1)")
        self.C = a.count // max(N, 1)
        top[0].reshape(())
        if self.rows is None or self.rows.shape[1] != N:
            self.rows = self.xp.empty((2, N), dtype=self.dtype)  # dist_sq, loss

    def forward(self, bottom, top):
        a, b, y = bottom
        N = a.shape[0]
        self.kernels("loss").contrastive_forward(N, a.data, b.data, y.data, self.rows[0],
                                                 self.rows[1], self.C, self.margin, int(self.legacy))
        top[0].data[...] = self.rows[1].sum() / (2.0 * max(N, 1))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[2]:
            raise self.error("cannot backpropagate to the similarity labels (bottom[2])")
        a, b, y = bottom
        N = max(a.shape[0], 1)
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                self.kernels("loss").contrastive_backward(
                    a.count, a.data, b.data, y.data, self.rows[0], top[0].diff, bottom[i].diff,
                    self.C, self.margin, int(self.legacy), sign / N)
