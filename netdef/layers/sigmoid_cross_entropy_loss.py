"""SigmoidCrossEntropyLoss: the cross-entropy of sigmoid(x) against targets in [0, 1].

loss_param { ignore_label  normalization (BATCH_SIZE)  normalize }
bottom[0]: logits x, any shape with a first axis N; bottom[1]: targets t of the same count and
           first axis (probabilities, not only 0/1). A target that, truncated to an integer,
           equals ignore_label contributes nothing (Caffe's test).
forward:  L = sum_i [log(1 + exp(-|x_i|)) + max(x_i, 0) - x_i t_i] / normalizer
          (= -t log s - (1 - t) log(1 - s), s = sigmoid(x), in a form that never overflows)
          normalizer (layers/_loss.py) with outer = N, inner = count / N; the default without
          `normalization` or `normalize` is BATCH_SIZE, as in Caffe.
backward: dx_i = (sigmoid(x_i) - t_i) * dL / normalizer, 0 where ignored; dL = top[0].diff.
          No gradient to the targets (an error if asked, as Caffe's LOG(FATAL)).
shape:    top[0] = () (a scalar)
"""
from ..core.layer import Layer
from . import register_layer
from ._loss import Norm, loss_normalization, loss_normalizer


@register_layer("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLossLayer(Layer):
    exact_num_bottom = 2
    exact_num_top = 1
    is_loss = True

    def setup(self, bottom, top):
        lp = self.layer_param.loss_param
        self.has_ignore = lp.HasField("ignore_label")
        self.ignore_label = int(lp.ignore_label)
        self.normalization = loss_normalization(self, default=Norm.BATCH_SIZE)
        self.terms = None
        self.normalizer = 1.0

    def allow_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        x, t = bottom
        if x.num_axes == 0 or t.num_axes == 0 or x.shape[0] != t.shape[0]:
            raise self.shape_error(f"logits {x.shape} and targets {t.shape} must have the same "
                                   "first (batch) dimension")
        if x.count != t.count:
            raise self.shape_error(f"logits {x.shape} ({x.count}) and targets {t.shape} "
                                   f"({t.count}) must have the same count")
        top[0].reshape(())
        if self.terms is None or self.terms.shape[1] != x.count:
            self.terms = self.xp.empty((2, x.count), dtype=self.dtype)  # loss, valid

    def forward(self, bottom, top):
        x, t = bottom
        self.kernels("loss").sigmoid_ce_forward(x.count, x.data, t.data, self.terms[0],
                                                self.terms[1], int(self.has_ignore),
                                                self.ignore_label)
        loss, valid = (float(v) for v in self.backend.to_numpy(self.terms.sum(axis=1)))
        outer = x.shape[0]
        self.normalizer = loss_normalizer(self.normalization, outer, x.count // max(outer, 1), valid)
        top[0].data[...] = loss / self.normalizer

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise self.error("cannot backpropagate to the target input (bottom[1])")
        if propagate_down[0]:
            x, t = bottom
            self.kernels("loss").sigmoid_ce_backward(x.count, x.data, t.data, top[0].diff, x.diff,
                                                     int(self.has_ignore), self.ignore_label,
                                                     1.0 / self.normalizer)
