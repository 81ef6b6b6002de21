"""MultinomialLogisticLoss: the negative log of the probability given to each true label.

bottom[0]: probabilities p (N x dim, or any shape with first axis N: dim = count / N, as in
           Caffe, e.g. N x C x 1 x 1 from a Softmax); bottom[1]: one label per row
           (N x 1 x 1 x 1, N, ...: N values), an integer in [0, dim) (truncated from the stored
           float; anything else is an error naming the first bad label). No ignore_label and no
           normalization: Caffe's layer has neither.
forward:  L = -1/N sum_n log(max(p[n, l_n], 1e-20))   (1e-20: Caffe's kLOG_THRESHOLD)
backward: dp[n, c] = -dL / N / max(p[n, c], 1e-20) if c == l_n, else 0; dL = top[0].diff.
          No gradient to the labels.
shape:    top[0] = () (a scalar)
"""
from ..core.layer import Layer
from . import register_layer
from ._labels import bad_label_error, check_row_labels


@register_layer("MultinomialLogisticLoss")
class MultinomialLogisticLossLayer(Layer):
    exact_num_bottom = 2
    exact_num_top = 1
    is_loss = True

    def setup(self, bottom, top):
        self.rows = None

    def allow_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        p, lab = bottom
        N, self.dim = check_row_labels(self, p, lab, "probabilities", " (e.g. {N} x 1 x 1 x 1)")
        top[0].reshape(())
        if self.rows is None or self.rows.shape[1] != N:
            self.rows = self.xp.empty((2, N), dtype=self.dtype)  # loss, bad

    def forward(self, bottom, top):
        p, lab = bottom
        N = p.shape[0]
        self.kernels("loss").multinomial_logistic_forward(N, p.data, lab.data, self.rows[0],
                                                          self.rows[1], self.dim)
        loss, bad = (float(v) for v in self.backend.to_numpy(self.rows.sum(axis=1)))
        if bad > 0:
            raise bad_label_error(self, bad, self.rows[1], p, lab, False, 0, self.dim)
        top[0].data[...] = loss / N

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise self.error("cannot backpropagate to the label input (bottom[1])")
        if propagate_down[0]:
            p, lab = bottom
            self.kernels("loss").multinomial_logistic_backward(
                p.count, p.data, lab.data, top[0].diff, p.diff, self.dim, 1.0 / p.shape[0])
