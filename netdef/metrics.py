"""Segmentation metrics from a confusion matrix, as the FCN paper reports them.

hist[i, j] = number of pixels of true class i predicted as class j (ignored labels excluded)
pixel accuracy          sum_i hist[i,i] / sum hist
mean class accuracy     mean_i hist[i,i] / sum_j hist[i,j]
mean IU                 mean_i hist[i,i] / (sum_j hist[i,j] + sum_j hist[j,i] - hist[i,i])
frequency-weighted IU   sum_i freq_i * IU_i,  freq_i = sum_j hist[i,j] / sum hist
Means run over the classes that occur (in the truth, or for IU in truth or prediction).
"""
import numpy as np

from .errors import NetdefError


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
