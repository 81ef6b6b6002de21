"""InfogainLoss: a multinomial logistic loss weighted by an information-gain matrix H.

infogain_loss_param { source  axis (1) }   loss_param { ignore_label  normalization (VALID) }
Caffe's current layer (since 2017) takes *scores* and applies a softmax over `axis` itself, as
SoftmaxWithLoss does (the original one took probabilities); this is that layer. With H = I it
is SoftmaxWithLoss (with the log floored at 1e-20 instead of FLT_MIN). The deprecated
loss_param.normalize is refused, as Caffe refuses it here.
bottom[0]: scores x, seen as (outer, C, inner) around axis; bottom[1]: one label per (outer,
           inner) position (layers/_labels.py checks, as for SoftmaxWithLoss);
bottom[2] (optional): H, C x C values (any shape of count C^2); without it H is read from the
           BlobProto file infogain_loss_param.source (a .binaryproto, relative paths from the
           current directory, else next to the prototxt).
forward:  p = softmax(x) over axis (written to top[1] when given)
          L = -sum over valid positions sum_c H[l, c] log(max(p_c, 1e-20)) / normalizer
          (normalizer: layers/_loss.py; ignored positions count for nothing)
backward: dx_c = (p_c sum_k H[l, k] - H[l, c]) * dL / normalizer, 0 at ignored positions.
          No gradient to the labels or to H (an error if asked).
shape:    top[0] = () (a scalar), top[1] = bottom[0]
"""
import os

from ..data.datum import read_binaryproto
from ..errors import NetdefError
from ..layer import Layer
from . import register_layer
from ._labels import bad_label_error, check_labels
from ._loss import loss_normalization, loss_normalizer


@register_layer("InfogainLoss")
class InfogainLossLayer(Layer):
    min_bottom = 2
    max_bottom = 3
    min_top = 1
    max_top = 2
    is_loss = True

    def setup(self, bottom, top):
        lp = self.layer_param.loss_param
        self.has_ignore = lp.HasField("ignore_label")
        self.ignore_label = int(lp.ignore_label)
        self.normalization = loss_normalization(self, legacy_normalize=False)
        self.H = None
        if len(bottom) < 3:
            self.H = self._read_source()
        self.prob = None
        self.pixels = None
        self.normalizer = 1.0

    def _read_source(self):
        ip = self.layer_param.infogain_loss_param
        if not ip.source:
            raise self.error("infogain_loss_param.source must name the H matrix file "
                             "(a .binaryproto) when there is no third bottom")
        path = ip.source
        if not os.path.isabs(path) and not os.path.exists(path) and self.net_filename:
            beside = os.path.join(os.path.dirname(os.path.abspath(self.net_filename)), path)
            if os.path.exists(beside):
                path = beside
        try:
            values = read_binaryproto(path)
        except NetdefError as e:
            raise self.error(f"cannot read the H matrix: {e}") from None
        return self.backend.asarray(values.reshape(-1), dtype=self.dtype)

    def allow_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        self.outer, self.C, self.inner = check_labels(
            self, bottom[0], bottom[1], self.layer_param.infogain_loss_param.axis,
            same_first_axis=True)
        H_count = bottom[2].count if len(bottom) > 2 else self.H.size
        if H_count != self.C * self.C:
            where = "bottom[2]" if len(bottom) > 2 else "the source matrix"
            raise self.shape_error(f"H ({where}) has {H_count} values; with {self.C} classes it "
                                   f"must be {self.C} x {self.C}")
        n = self.outer * self.inner
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape(bottom[0].shape)
            self.prob = None
        elif self.prob is None or self.prob.shape != bottom[0].shape:
            self.prob = self.xp.empty(bottom[0].shape, dtype=self.dtype)
        if self.pixels is None or self.pixels.shape[1] != n:
            self.pixels = self.xp.empty((3, n), dtype=self.dtype)  # loss, valid, bad

    def _prob(self, top):
        return top[1].data if len(top) > 1 else self.prob

    def _H(self, bottom):
        return bottom[2].data.reshape(-1) if len(bottom) > 2 else self.H

    def forward(self, bottom, top):
        prob, n = self._prob(top), self.outer * self.inner
        self.kernels("softmax").softmax_forward(n, bottom[0].data, prob, self.C, self.inner)
        px = self.pixels
        self.kernels("loss").infogain_forward(n, prob, bottom[1].data, self._H(bottom), px[0],
                                              px[1], px[2], self.C, self.inner,
                                              int(self.has_ignore), self.ignore_label)
        loss, valid, bad = (float(v) for v in self.backend.to_numpy(px.sum(axis=1)))
        if bad > 0:
            raise bad_label_error(self, bad, px[2], bottom[0], bottom[1], self.has_ignore,
                                  self.ignore_label, self.C)
        self.normalizer = loss_normalizer(self.normalization, self.outer, self.inner, valid)
        top[0].data[...] = loss / self.normalizer

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise self.error("cannot backpropagate to the label input (bottom[1])")
        if len(propagate_down) > 2 and propagate_down[2]:
            raise self.error("cannot backpropagate to the infogain matrix (bottom[2])")
        if not propagate_down[0]:
            return
        H = self._H(bottom)
        rowsum = self.xp.ascontiguousarray(H.reshape(self.C, self.C).sum(axis=1))
        self.kernels("loss").infogain_backward(
            bottom[0].count, self._prob(top), bottom[1].data, H, rowsum, top[0].diff,
            bottom[0].diff, self.C, self.inner, int(self.has_ignore), self.ignore_label,
            1.0 / self.normalizer)
