"""InfogainLoss: a multinomial logistic loss weighted by an information-gain matrix H.

infogain_loss_param { source  axis (1) }   loss_param { ignore_label  normalization (VALID) }
Caffe's current layer (since 2017) takes *scores* and applies a softmax over `axis` itself, as
SoftmaxWithLoss does (the original one took probabilities); this is that layer. With H = I it
is SoftmaxWithLoss (with the log floored at 1e-20 instead of FLT_MIN). The deprecated
loss_param.normalize is refused, as Caffe refuses it here.
bottom[0]: scores x, seen as (outer, C, inner) around axis; bottom[1]: one label per (outer,
           inner) position (layers/_labels.py checks, as for SoftmaxWithLoss);
bottom[2] (optional): H, C x C values (any shape of count C^2); without it H is read from the
           BlobProto file infogain_loss_param.source (a .binaryproto; a relative path is
           looked for next to the prototxt, then in the working directory, as the data
           layers' sources are: data/transform.resolve_path).
forward:  p = softmax(x) over axis (written to top[1] when given)
          L = -sum over valid positions sum_c H[l, c] log(max(p_c, 1e-20)) / normalizer
          (normalizer: layers/_loss.py; ignored positions count for nothing)
backward: dx_c = (p_c sum_k H[l, k] - H[l, c]) * dL / normalizer, 0 at ignored positions.
          No gradient to the labels or to H (an error if asked).
shape:    top[0] = () (a scalar), top[1] = bottom[0]
"""
from ..data.datum import read_binaryproto
from ..data.transform import base_dir_of, resolve_path
from ..errors import NetdefError
from . import register_layer
from ._loss import SoftmaxLoss


@register_layer("InfogainLoss")
class InfogainLossLayer(SoftmaxLoss):
    min_bottom = 2
    max_bottom = 3
    legacy_normalize = False

    def setup(self, bottom, top):
        super().setup(bottom, top)
        self.H = self._read_source() if len(bottom) < 3 else None

    def _read_source(self):
        ip = self.layer_param.infogain_loss_param
        if not ip.source:
            raise self.error("infogain_loss_param.source must name the H matrix file "
                             "(a .binaryproto) when there is no third bottom")
        path = resolve_path(ip.source, base_dir_of(self))
        try:
            values = read_binaryproto(path)
        except NetdefError as e:
            raise self.error(f"cannot read the H matrix: {e}") from None
        return self.backend.asarray(values.reshape(-1), dtype=self.dtype)

    def softmax_axis(self):
        return self.layer_param.infogain_loss_param.axis

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        H_count = bottom[2].count if len(bottom) > 2 else self.H.size
        if H_count != self.C * self.C:
            where = "bottom[2]" if len(bottom) > 2 else "the source matrix"
            raise self.shape_error(f"H ({where}) has {H_count} values; with {self.C} classes it "
                                   f"must be {self.C} x {self.C}")

    def _H(self, bottom):
        return bottom[2].data.reshape(-1) if len(bottom) > 2 else self.H

    def position_losses(self, bottom, prob, px):
        self.kernels("loss").infogain_forward(
            self.outer * self.inner, prob, bottom[1].data, self._H(bottom), px[0], px[1], px[2],
            self.C, self.inner, int(self.has_ignore), self.ignore_label)

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
