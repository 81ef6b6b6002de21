"""Segmentation metrics from a confusion matrix, as the FCN paper reports them.

hist[i, j] = number of pixels of true class i predicted as class j (ignored labels excluded)
pixel accuracy          sum_i hist[i,i] / sum hist
mean class accuracy     mean_i hist[i,i] / sum_j hist[i,j]
mean IU                 mean_i hist[i,i] / (sum_j hist[i,j] + sum_j hist[j,i] - hist[i,i])
frequency-weighted IU   sum_i freq_i * IU_i,  freq_i = sum_j hist[i,j] / sum hist
Means run over the classes that occur (in the truth, or for IU in truth or prediction).

Boundary measure (the FCN/DeepLab "trimap" evaluation): the same scores over only the pixels
within `width` pixels (Chebyshev distance) of a label boundary. A boundary pixel is one whose
label differs from one of its 4 neighbours', the ignore label counting as a label of its own
(so VOC's void band around objects marks their boundaries); each image's band is the boundary
pixels dilated by a (2 width + 1) square. boundary_band computes it, boundary_confusion_matrix
and BoundaryScore score in it; ignored pixels stay excluded. An image without boundaries
contributes nothing.

Which blobs of a net are a segmentation (find_segmentation_blobs): the bottoms (score, label) of
its first Accuracy or SoftmaxWithLoss layer whose score has >= 2 channels on axis 1 (the layer's
axis) and spatial axes after them; the ignored label is that layer's accuracy_param.ignore_label
or loss_param.ignore_label, none when unset. A classifier (score N x C) has none. Users override
it with a SegmentationBlobs: Solver.segmentation, or `netdef test --seg-score --seg-label
--ignore-label`. SegmentationAccumulator then adds each forward pass's arg-max to a confusion
matrix.
"""
import logging
from typing import NamedTuple, Optional

import numpy as np

from ..errors import NetdefError

log = logging.getLogger("netdef")


def confusion_matrix(labels, predictions, num_classes, ignore_label=255):
    """(num_classes, num_classes) int64 matrix; labels equal to ignore_label are skipped."""
    labels = np.asarray(labels).reshape(-1)
    predictions = np.asarray(predictions).reshape(-1)
    if labels.shape != predictions.shape:
        raise NetdefError(f"labels ({labels.size} values) and predictions ({predictions.size}) differ in size")
    keep = labels != ignore_label if ignore_label is not None else np.ones(labels.shape, bool)
    labels = labels[keep].astype(np.int64)
    predictions = predictions[keep].astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise NetdefError(f"label value {labels[bad][0]} is outside [0, {num_classes}) and is not "
                          f"the ignore label {ignore_label}")
    if ((predictions < 0) | (predictions >= num_classes)).any():
        raise NetdefError(f"prediction outside [0, {num_classes})")
    return np.bincount(num_classes * labels + predictions,
                       minlength=num_classes ** 2).reshape(num_classes, num_classes)


def scores(hist):
    """dict of pixel_accuracy, mean_accuracy, mean_iu, fw_iu and per-class iu from a confusion matrix."""
    hist = np.asarray(hist, dtype=np.float64)
    total = hist.sum()
    diag = np.diag(hist)
    truth = hist.sum(axis=1)
    pred = hist.sum(axis=0)
    union = truth + pred - diag
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(truth > 0, diag / truth, np.nan)
        iu = np.where(union > 0, diag / union, np.nan)
    freq = truth / total if total else np.zeros_like(truth)
    present = truth > 0
    return {
        "pixel_accuracy": float(diag.sum() / total) if total else float("nan"),
        "mean_accuracy": float(np.nanmean(acc)) if present.any() else float("nan"),
        "mean_iu": float(np.nanmean(iu)) if (union > 0).any() else float("nan"),
        "fw_iu": float((freq[present] * iu[present]).sum()) if total else float("nan"),
        "iu": iu,
    }


class SegmentationScore:
    """Accumulates a confusion matrix over batches of score maps (N, C, H, W) and labels."""

    def __init__(self, num_classes, ignore_label=255):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.hist = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, score, label):
        score = np.asarray(score)
        pred = score.argmax(axis=1)
        label = np.asarray(label).reshape(pred.shape)
        self.hist += confusion_matrix(label, pred, self.num_classes, self.ignore_label)

    def result(self):
        return scores(self.hist)


def boundary_band(labels, width):
    """Boolean mask, same shape as `labels` (..., H, W), of the pixels within `width` pixels
    (Chebyshev distance) of a label boundary of their own image (the last two axes)."""
    labels = np.asarray(labels)
    if labels.ndim < 2:
        raise NetdefError(f"boundary band: labels need two spatial axes, got shape {labels.shape}")
    width = int(width)
    if width < 0:
        raise NetdefError(f"boundary band: width must be >= 0, got {width}")
    edge = np.zeros(labels.shape, dtype=bool)
    dv = labels[..., 1:, :] != labels[..., :-1, :]
    dh = labels[..., :, 1:] != labels[..., :, :-1]
    edge[..., 1:, :] |= dv
    edge[..., :-1, :] |= dv
    edge[..., :, 1:] |= dh
    edge[..., :, :-1] |= dh
    # A square dilation is separable: grow along H, then along W, one pixel per step.
    band = edge.copy()
    for s in range(1, width + 1):
        band[..., s:, :] |= edge[..., :-s, :]
        band[..., :-s, :] |= edge[..., s:, :]
    grown = band.copy()
    for s in range(1, width + 1):
        band[..., :, s:] |= grown[..., :, :-s]
        band[..., :, :-s] |= grown[..., :, s:]
    return band


def boundary_confusion_matrix(labels, predictions, num_classes, width, ignore_label=255):
    """confusion_matrix over the pixels of boundary_band(labels, width) only; labels and
    predictions are (H, W) or (N, H, W)."""
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise NetdefError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    band = boundary_band(labels, width)
    return confusion_matrix(labels[band], predictions[band], num_classes, ignore_label)


class BoundaryScore(SegmentationScore):
    """SegmentationScore restricted to the pixels within `width` pixels of a label boundary."""

    def __init__(self, num_classes, width=3, ignore_label=255):
        super().__init__(num_classes, ignore_label)
        self.width = width

    def add(self, score, label):
        score = np.asarray(score)
        pred = score.argmax(axis=1)
        label = np.asarray(label).reshape(pred.shape)
        self.hist += boundary_confusion_matrix(label, pred, self.num_classes, self.width, self.ignore_label)


class SegmentationBlobs(NamedTuple):
    """A net's score blob (N x C x spatial...), its label blob, and the label value to skip."""

    score: str
    label: str
    ignore_label: Optional[int] = None


#: layer type -> (the message holding its axis, the message holding its ignore_label)
_SCORING_LAYERS = {"Accuracy": ("accuracy_param", "accuracy_param"),
                   "SoftmaxWithLoss": ("softmax_param", "loss_param")}


def find_segmentation_blobs(net):
    """The SegmentationBlobs an Accuracy or SoftmaxWithLoss layer of `net` scores per pixel,
    or None (see the module docstring). Blobs are named as in the prototxt, not by the Split
    copies the Net inserted in front of a blob read by several layers."""
    split_of = {t: net.bottom_names[name][0] for name, layer in net.layer_dict.items()
                if layer.type == "Split" for t in net.top_names[name]}

    def origin(blob):
        while blob in split_of:
            blob = split_of[blob]
        return blob

    for name, layer in net.layer_dict.items():
        params = _SCORING_LAYERS.get(layer.type)
        bottoms = net.bottom_names[name]
        if params is None or len(bottoms) < 2:
            continue
        axis_msg = getattr(layer.layer_param, params[0])
        ignore_msg = getattr(layer.layer_param, params[1])
        score = net.blobs[bottoms[0]]
        if score.num_axes < 3 or axis_msg.axis % score.num_axes != 1 or score.shape[1] < 2:
            continue
        ignore = ignore_msg.ignore_label if ignore_msg.HasField("ignore_label") else None
        return SegmentationBlobs(origin(bottoms[0]), origin(bottoms[1]), ignore)
    return None


class SegmentationAccumulator:
    """The confusion matrix of a net's SegmentationBlobs over its forward passes: call add()
    after each, result() at the end. A label blob that does not fit the score (size, or values
    outside the classes) turns the metrics off with a note instead of failing the caller."""

    def __init__(self, net, blobs):
        for role, name in (("score", blobs.score), ("label", blobs.label)):
            if name not in net.blobs:
                raise NetdefError(f"no blob '{name}' in the net for the segmentation {role}")
        score = net.blobs[blobs.score]
        if score.num_axes < 2 or score.shape[1] < 2:
            raise NetdefError(f"segmentation score '{blobs.score}' of shape {score.shape} has no "
                              "class axis of >= 2 channels (axis 1)")
        self.net, self.blobs = net, blobs
        self.score = SegmentationScore(score.shape[1], ignore_label=blobs.ignore_label)

    def add(self):
        if self.score is None:
            return
        backend = self.net.backend
        s, lab = self.net.blobs[self.blobs.score], self.net.blobs[self.blobs.label]
        pred = backend.xp.argmax(s.data, axis=1)
        if lab.count != pred.size:
            log.info("(no segmentation metrics: label %s does not match score %s)", lab.shape, s.shape)
            self.score = None
            return
        pred = backend.to_numpy(pred)
        labels = backend.to_numpy(lab.data).reshape(pred.shape)
        try:
            self.score.hist += confusion_matrix(labels, pred, self.score.num_classes,
                                                self.score.ignore_label)
        except NetdefError as e:
            log.info("(no segmentation metrics: %s)", e)
            self.score = None

    def result(self):
        return None if self.score is None else self.score.result()
