import numpy as np
import pytest

import netdef
from netdef.metrics import SegmentationScore, confusion_matrix, scores


def _reference(labels, preds, n):
    """Per-class counts with explicit loops."""
    tp = np.zeros(n); fp = np.zeros(n); fn = np.zeros(n); total = 0; correct = 0
    for l, p in zip(labels.ravel(), preds.ravel()):
        if l == 255:
            continue
        total += 1
        if l == p:
            tp[l] += 1; correct += 1
        else:
            fn[l] += 1; fp[p] += 1
    present = (tp + fn) > 0
    iu = [tp[c] / (tp[c] + fp[c] + fn[c]) for c in range(n) if tp[c] + fp[c] + fn[c] > 0]
    acc = [tp[c] / (tp[c] + fn[c]) for c in range(n) if present[c]]
    freq = (tp + fn) / total
    fw = sum(freq[c] * tp[c] / (tp[c] + fp[c] + fn[c]) for c in range(n) if present[c])
    return correct / total, np.mean(acc), np.mean(iu), fw


@pytest.mark.parametrize("seed", range(5))
def test_scores_match_loop_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    labels = rng.integers(0, n, size=(3, 17, 13))
    labels[rng.random(labels.shape) < 0.1] = 255
    preds = np.where(rng.random(labels.shape) < 0.6, labels % 255 % n, rng.integers(0, n, labels.shape))
    preds[labels == 255] = rng.integers(0, n, (labels == 255).sum())
    s = scores(confusion_matrix(labels, preds, n))
    ref = _reference(labels, preds, n)
    np.testing.assert_allclose([s["pixel_accuracy"], s["mean_accuracy"], s["mean_iu"], s["fw_iu"]], ref)


def test_perfect_and_accumulated():
    score = SegmentationScore(3)
    label = np.array([[[0, 1], [2, 255]]])
    onehot = np.eye(3)[np.where(label == 255, 0, label)].transpose(0, 3, 1, 2)
    score.add(onehot, label)
    score.add(onehot, label)
    r = score.result()
    assert r["pixel_accuracy"] == r["mean_iu"] == r["mean_accuracy"] == 1.0
    assert score.hist.sum() == 6


def test_bad_label_is_an_error():
    with pytest.raises(netdef.NetdefError, match="label value 7"):
        confusion_matrix(np.array([0, 7]), np.array([0, 1]), 3)
