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


# ---- the boundary ("trimap") measure --------------------------------------------------------

def test_boundary_score_by_hand():
    """Two halves, 0 | 1, 5 x 6; the prediction misses the first column of class 1. Boundary
    pixels are columns 2 and 3, the width-1 band columns 1-4: there the confusion is
    [[10, 0], [5, 5]] (IU 10/15 and 5/10), while the whole image's is [[15, 0], [5, 10]]."""
    from netdef.metrics import BoundaryScore, boundary_band

    label = np.zeros((5, 6), dtype=np.int64)
    label[:, 3:] = 1
    pred = label.copy()
    pred[:, 3] = 0
    band = boundary_band(label, 1)
    assert band.sum(axis=0).tolist() == [0, 5, 5, 5, 5, 0]
    assert boundary_band(label, 0).sum(axis=0).tolist() == [0, 0, 5, 5, 0, 0]
    score = BoundaryScore(2, width=1)
    onehot = np.eye(2)[pred].transpose(2, 0, 1)[None]
    score.add(onehot, label[None])
    assert score.hist.tolist() == [[10, 0], [5, 5]]
    assert score.result()["mean_iu"] == pytest.approx((10 / 15 + 5 / 10) / 2)
    whole = scores(confusion_matrix(label, pred, 2))
    assert whole["mean_iu"] == pytest.approx((15 / 20 + 10 / 15) / 2)


@pytest.mark.parametrize("width", [0, 1, 3])
def test_boundary_band_matches_brute_force(width):
    """Against the definition: within Chebyshev distance `width` of a pixel whose label differs
    from a 4-neighbour's; per image, 255 a label of its own; ignored pixels not scored."""
    from netdef.metrics import boundary_band, boundary_confusion_matrix

    rng = np.random.default_rng(width)
    labels = rng.integers(0, 3, size=(2, 9, 11)) * (rng.random((2, 9, 11)) < 0.15)
    labels[0, 4, 4] = 255
    n_, h, w = labels.shape
    edge = np.zeros(labels.shape, bool)
    for i in range(n_):
        for y in range(h):
            for x in range(w):
                for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                    if 0 <= y + dy < h and 0 <= x + dx < w and labels[i, y + dy, x + dx] != labels[i, y, x]:
                        edge[i, y, x] = True
    ref = np.zeros(labels.shape, bool)
    for i, y, x in zip(*np.nonzero(edge)):
        ref[i, max(y - width, 0):y + width + 1, max(x - width, 0):x + width + 1] = True
    assert np.array_equal(boundary_band(labels, width), ref)
    preds = rng.integers(0, 3, size=labels.shape)
    keep = ref & (labels != 255)
    expected = np.zeros((3, 3), np.int64)
    np.add.at(expected, (labels[keep], preds[keep]), 1)
    assert np.array_equal(boundary_confusion_matrix(labels, preds, 3, width), expected)


def test_boundary_band_bad_input():
    from netdef.metrics import boundary_band

    with pytest.raises(netdef.NetdefError, match="two spatial axes"):
        boundary_band(np.zeros(4), 1)
    with pytest.raises(netdef.NetdefError, match="width must be >= 0"):
        boundary_band(np.zeros((4, 4)), -1)
