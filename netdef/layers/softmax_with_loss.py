"""SoftmaxWithLoss: softmax over `axis`, then the multinomial logistic loss of the labels.

softmax_param { axis (1) }   loss_param { ignore_label  normalization (VALID)  normalize }
bottom[0]: scores, seen as (outer, C, inner) around axis (N x C x H x W: outer N, inner H W);
bottom[1]: one label per (outer, inner) position (N x 1 x H x W, N x H x W, ...: its count must
           be outer * inner, and its first axis the scores' first axis, as Caffe's LossLayer
           checks: layers/_labels.py). Labels are stored as floats and truncated to integers;
           a label that is neither ignore_label nor in [0, C) is an error.
forward:  p = softmax(x) over axis (written to top[1] when given)
          L = sum over valid positions of -log(max(p[o, label, t], FLT_MIN)) / normalizer
          normalizer: FULL = outer * inner, VALID = number of positions whose label is not
          ignore_label, BATCH_SIZE = outer, NONE = 1; then max(normalizer, 1).
          `normalization` wins when set; else the legacy `normalize: true` means VALID and
          `normalize: false` BATCH_SIZE (FCN's setting); neither set: VALID.
backward: dx[o, c, t] = (p[o, c, t] - [c == label]) * dL / normalizer, 0 at ignored positions,
          where dL = top[0].diff (the loss weight: the Net writes it there before backward).
          No gradient to the labels.
shape:    top[0] = () (a scalar), top[1] = bottom[0]
"""
from ..layer import Layer
from . import register_layer
from ._labels import bad_label_error, check_labels
from ._loss import loss_normalization, loss_normalizer


@register_layer("SoftmaxWithLoss")
class SoftmaxWithLossLayer(Layer):
    exact_num_bottom = 2
    min_top = 1
    max_top = 2
    is_loss = True

    def setup(self, bottom, top):
        lp = self.layer_param.loss_param
        self.has_ignore = lp.HasField("ignore_label")
        self.ignore_label = int(lp.ignore_label)
        self.normalization = loss_normalization(self)
        self.prob = None
        self.pixels = None
        self.normalizer = 1.0

    def allow_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        self.outer, self.C, self.inner = check_labels(self, bottom[0], bottom[1],
                                                      self.layer_param.softmax_param.axis,
                                                      same_first_axis=True)
        n = self.outer * self.inner
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape(bottom[0].shape)
            self.prob = None
        elif self.prob is None or self.prob.shape != bottom[0].shape:
            self.prob = self.xp.empty(bottom[0].shape, dtype=self.dtype)
        if self.pixels is None or self.pixels.shape[1] != n:
            self.pixels = self.xp.empty((3, n), dtype=self.dtype)  # loss, valid, bad per position

    def _prob(self, top):
        return top[1].data if len(top) > 1 else self.prob

    def forward(self, bottom, top):
        k = self.kernels("softmax")
        prob, n = self._prob(top), self.outer * self.inner
        labels = bottom[1].data
        k.softmax_forward(n, bottom[0].data, prob, self.C, self.inner)
        px = self.pixels
        k.softmax_loss_forward(n, prob, labels, px[0], px[1], px[2], self.C, self.inner,
                               int(self.has_ignore), self.ignore_label)
        loss, valid, bad = (float(v) for v in self.backend.to_numpy(px.sum(axis=1)))
        if bad > 0:
            raise bad_label_error(self, bad, px[2], bottom[0], bottom[1], self.has_ignore,
                                  self.ignore_label, self.C)
        self.normalizer = loss_normalizer(self.normalization, self.outer, self.inner, valid)
        top[0].data[...] = loss / self.normalizer

    def backward(self, top, propagate_down, bottom):
        if len(propagate_down) > 1 and propagate_down[1]:
            raise self.error("cannot backpropagate to the label input (bottom[1])")
        if not propagate_down[0]:
            return
        self.kernels("softmax").softmax_loss_backward(
            bottom[0].count, self._prob(top), bottom[1].data, top[0].diff, bottom[0].diff, self.C,
            self.inner, int(self.has_ignore), self.ignore_label, 1.0 / self.normalizer)
