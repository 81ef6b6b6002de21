"""HingeLoss: the one-vs-all hinge loss of scores against one true label per row (Caffe's).

hinge_loss_param { norm (L1 | L2) }
bottom[0]: scores x, first axis N, dim = count / N classes per row; bottom[1]: one label per
           row (N values), an integer in [0, dim) (anything else: an error).
forward:  d[n, c] = max(0, 1 + s x[n, c]),  s = -1 for c == l_n, +1 otherwise
          L1: L = sum d / N        L2: L = sum d^2 / N
backward: dx[n, c] = g dL / N, g = [d > 0] (L1) or 2 d (L2), negated at c == l_n;
          dL = top[0].diff. No gradient to the labels.
shape:    top[0] = () (a scalar)
"""
from ..core import netdef_pb2 as pb
from ..core.layer import Layer
from . import register_layer
from ._labels import bad_label_error, check_row_labels


@register_layer("HingeLoss")
class HingeLossLayer(Layer):
    exact_num_bottom = 2
    exact_num_top = 1
    is_loss = True

    def setup(self, bottom, top):
        norm = self.layer_param.hinge_loss_param.norm
        if norm not in (pb.HingeLossParameter.L1, pb.HingeLossParameter.L2):
            raise self.error(f"unknown hinge_loss_param.norm {norm}")
        self.power = 1 if norm == pb.HingeLossParameter.L1 else 2
        self.margin = None

    def allow_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        x, lab = bottom
        _, self.dim = check_row_labels(self, x, lab, "scores")
        top[0].reshape(())
        if self.margin is None or self.margin.shape[1:] != x.shape:
            self.margin = self.xp.empty((2,) + x.shape, dtype=self.dtype)  # d, bad flags

    def forward(self, bottom, top):
        x, lab = bottom
        d, bad = self.margin[0], self.margin[1]
        self.kernels("loss").hinge_forward(x.count, x.data, lab.data, d, bad, self.dim)
        nbad = float(bad.sum())
        if nbad > 0:
            first = bad.reshape(x.shape[0], -1)[:, 0]
            raise bad_label_error(self, nbad / self.dim, first, x, lab, False, 0, self.dim)
        total = d.sum() if self.power == 1 else (d * d).sum()
        top[0].data[...] = total / x.shape[0]

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise self.error("cannot backpropagate to the label input (bottom[1])")
        if propagate_down[0]:
            x, lab = bottom
            self.kernels("loss").hinge_backward(x.count, self.margin[0], lab.data, top[0].diff,
                                                x.diff, self.dim, self.power, 1.0 / x.shape[0])
