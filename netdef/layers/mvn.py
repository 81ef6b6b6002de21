"""MVN: mean-variance normalization.

mvn_param { normalize_variance (true)  across_channels (false)  eps (1e-9) }
Rows: one per (image, channel) — the H x W plane, or everything after axis 1 — or, with
across_channels, one per image (everything after axis 0). With m and s the row's mean and
standard deviation (population: divided by the row length):
forward:  y = x - m                               normalize_variance false
          y = (x - m) / (s + eps)                 normalize_variance true
          As Caffe, eps is added to the standard deviation, not to the variance (PyTorch's
          and BatchNorm's sqrt(var + eps)): a constant row gives y = 0, not NaN.
backward: dx = dy - <dy>                          normalize_variance false
          dx = (dy - <dy>) / (s + eps) - (x - m) <dy (x - m)> / ((s + eps)^2 s)
          (<.> the row mean): the exact derivative of the forward above. Caffe's backward
          uses y <y dy> / (s + eps) for the second term, which is this one times s / (s + eps),
          i.e. the same up to a relative 1e-9 / s for the default eps; netdef keeps the exact
          form so that a large eps still gets the true gradient. A constant row (s = 0) gets
          dx = (dy - <dy>) / eps.
shape:    top = bottom (computed out of place: backward reads x)
"""
from ..core.layer import Layer
from . import register_layer


@register_layer("MVN")
class MVNLayer(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.layer_param.mvn_param
        self.normalize_variance = bool(p.normalize_variance)
        self.across_channels = bool(p.across_channels)
        self.eps = float(p.eps)
        if self.eps < 0:
            raise self.error(f"mvn_param.eps must be >= 0, got {self.eps}")

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) < (1 if self.across_channels else 2):
            raise self.shape_error(f"bottom shape {shape} has no "
                                   f"{'num' if self.across_channels else 'channel'} axis")
        top[0].reshape(shape)
        self.rows = bottom[0].count_range(0, 1 if self.across_channels else 2)
        self.dim = bottom[0].count // self.rows if self.rows else 0
        if self.rows and not self.dim:
            raise self.shape_error(f"bottom shape {shape}: the rows to normalize are empty")
        self.stats = self.xp.empty(2 * self.rows, dtype=self.dtype)

    def forward(self, bottom, top):
        k = self.kernels("mvn")
        nv = int(self.normalize_variance)
        k.mvn_stats(self.rows, bottom[0].data, self.stats, self.dim, nv)
        k.mvn_forward(bottom[0].count, bottom[0].data, self.stats, top[0].data, self.dim, nv,
                      self.eps)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        k = self.kernels("mvn")
        sums = self.backend.workspace(self.dtype, 2 * self.rows, "mvn")
        k.mvn_backward_sums(self.rows, top[0].diff, bottom[0].data, self.stats, sums, self.dim)
        k.mvn_backward(bottom[0].count, top[0].diff, bottom[0].data, self.stats, sums,
                       bottom[0].diff, self.dim, int(self.normalize_variance), self.eps)
