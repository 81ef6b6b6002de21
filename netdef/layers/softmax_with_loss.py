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
from . import register_layer
from ._loss import SoftmaxLoss


@register_layer("SoftmaxWithLoss")
class SoftmaxWithLossLayer(SoftmaxLoss):
    exact_num_bottom = 2

    def softmax_axis(self):
        return self.layer_param.softmax_param.axis

    def position_losses(self, bottom, prob, px):
        self.kernels("softmax").softmax_loss_forward(
            self.outer * self.inner, prob, bottom[1].data, px[0], px[1], px[2], self.C,
            self.inner, int(self.has_ignore), self.ignore_label)

    def backward(self, top, propagate_down, bottom):
        if len(propagate_down) > 1 and propagate_down[1]:
            raise self.error("cannot backpropagate to the label input (bottom[1])")
        if not propagate_down[0]:
            return
        self.kernels("softmax").softmax_loss_backward(
            bottom[0].count, self._prob(top), bottom[1].data, top[0].diff, bottom[0].diff, self.C,
            self.inner, int(self.has_ignore), self.ignore_label, 1.0 / self.normalizer)
