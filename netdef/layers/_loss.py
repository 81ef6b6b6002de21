"""What the loss layers share: the loss_param normalization in force and the normalizer it
gives, and the softmax-then-loss layers' common part (SoftmaxLoss). Not a layer type itself.

    FULL = outer * inner positions, VALID = positions not ignored, BATCH_SIZE = outer,
    NONE = 1; then max(normalizer, 1) (a batch whose labels are all ignored gives loss 0,
    not NaN).
"""
from ..core import netdef_pb2 as pb
from ..core.layer import Layer
from ._labels import bad_label_error, check_labels
from .softmax import softmax_forward

Norm = pb.LossParameter
MODES = (Norm.FULL, Norm.VALID, Norm.BATCH_SIZE, Norm.NONE)


def loss_normalization(layer, default=Norm.VALID, legacy_normalize=True):
    """The NormalizationMode of `layer`'s loss_param: `normalization` if set, else the legacy
    `normalize` (true: VALID, false: BATCH_SIZE), else `default` (VALID for SoftmaxWithLoss,
    BATCH_SIZE for SigmoidCrossEntropyLoss, as in Caffe). Layers for which Caffe refuses the
    deprecated `normalize` (InfogainLoss) pass legacy_normalize=False: it is then an error."""
    lp = layer.layer_param.loss_param
    if lp.HasField("normalize") and not legacy_normalize:
        raise layer.error("loss_param.normalize is deprecated for this layer; use "
                          "loss_param.normalization (FULL, VALID, BATCH_SIZE or NONE)")
    if lp.HasField("normalization"):
        mode = lp.normalization
    elif lp.HasField("normalize"):
        mode = Norm.VALID if lp.normalize else Norm.BATCH_SIZE
    else:
        mode = default
    if mode not in MODES:
        raise layer.error(f"unknown normalization mode {mode}")
    return mode


def loss_normalizer(mode, outer, inner, valid):
    n = {Norm.FULL: outer * inner, Norm.VALID: valid, Norm.BATCH_SIZE: outer, Norm.NONE: 1}[mode]
    return max(float(n), 1.0)


class SoftmaxLoss(Layer):
    """The part SoftmaxWithLoss and InfogainLoss share: p = softmax(bottom[0]) over the axis a
    subclass names (into top[1] when there is one), one label per (outer, inner) position, and a
    kernel that writes each position's (loss, valid, bad) so the sums, the bad-label error and
    the normalizer are found in one place. A subclass gives `softmax_axis()` and
    `position_losses(bottom, prob, pixels)`."""
    min_top = 1
    max_top = 2
    is_loss = True
    legacy_normalize = True  # loss_param.normalize accepted (False: an error, as InfogainLoss)

    def setup(self, bottom, top):
        lp = self.layer_param.loss_param
        self.has_ignore = lp.HasField("ignore_label")
        self.ignore_label = int(lp.ignore_label)
        self.normalization = loss_normalization(self, legacy_normalize=self.legacy_normalize)
        self.prob = None
        self.pixels = None
        self.normalizer = 1.0

    def allow_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        self.outer, self.C, self.inner = check_labels(self, bottom[0], bottom[1],
                                                      self.softmax_axis(), same_first_axis=True)
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
        prob = self._prob(top)
        softmax_forward(self, bottom[0].data, prob, self.outer, self.C, self.inner)
        px = self.pixels
        self.position_losses(bottom, prob, px)
        loss, valid, bad = (float(v) for v in self.backend.to_numpy(px.sum(axis=1)))
        if bad > 0:
            raise bad_label_error(self, bad, px[2], bottom[0], bottom[1], self.has_ignore,
                                  self.ignore_label, self.C)
        self.normalizer = loss_normalizer(self.normalization, self.outer, self.inner, valid)
        top[0].data[...] = loss / self.normalizer
