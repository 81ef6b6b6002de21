"""Classifier and Detector (pycaffe's) on a net whose output is the per-channel mean of its
input, so that every prediction can be computed by hand from the crops."""
import numpy as np
import pytest
from PIL import Image

from netdef import NetdefError
from netdef.classifier import Classifier, Detector

MEAN_NET = """
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: {n} dim: 3 dim: {h} dim: {w} }} }} }}
layer {{ name: "gap" type: "Pooling" bottom: "data" top: "gap" pooling_param {{ pool: AVE global_pooling: true }} }}
layer {{ name: "flat" type: "Flatten" bottom: "gap" top: "prob" }}
"""
MEAN = np.array([10.0, 20.0, 30.0])


def _expected(crop):
    """The preprocessed per-channel mean of an (h, w, 3) RGB crop in [0, 1]: BGR, * 255, - mean."""
    return crop.mean(axis=(0, 1))[::-1] * 255.0 - MEAN


def test_classifier_oversample_and_center(tmp_path):
    model = tmp_path / "deploy.prototxt"
    model.write_text(MEAN_NET.format(n=10, h=4, w=4))
    clf = Classifier(str(model), None, image_dims=(6, 6), mean=MEAN, raw_scale=255.0,
                     channel_swap=(2, 1, 0))
    rng = np.random.default_rng(1)
    images = [rng.random((6, 6, 3)).astype(np.float32) for _ in range(2)]
    pred = clf.predict(images)
    assert pred.shape == (2, 3)
    for im, p in zip(images, pred):
        corners = [im[i:i + 4, j:j + 4] for i, j in ((0, 0), (0, 2), (2, 0), (2, 2), (1, 1))]
        np.testing.assert_allclose(p, np.mean([_expected(c) for c in corners], axis=0), rtol=1e-4, atol=1e-3)
    center = clf.predict(images, oversample=False)
    for im, p in zip(images, center):
        np.testing.assert_allclose(p, _expected(im[1:5, 1:5]), rtol=1e-4, atol=1e-3)


def test_classifier_batches_more_images_than_the_input_holds(tmp_path):
    model = tmp_path / "deploy.prototxt"
    model.write_text(MEAN_NET.format(n=1, h=2, w=2))
    clf = Classifier(str(model), None)  # image_dims default: the input's size
    ims = [np.full((2, 2, 3), v, np.float32) for v in (0.1, 0.2, 0.3)]
    pred = clf.predict(ims, oversample=False)
    np.testing.assert_allclose(pred, [[0.1] * 3, [0.2] * 3, [0.3] * 3], rtol=1e-6)
    with pytest.raises(NetdefError, match="image_dims"):
        Classifier(str(model), None, image_dims=(1, 1))


def test_detector_windows_with_and_without_context(tmp_path):
    model = tmp_path / "deploy.prototxt"
    model.write_text(MEAN_NET.format(n=2, h=4, w=4))
    rng = np.random.default_rng(2)
    rgb = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "im.png")
    im = rgb.astype(np.float32) / 255.0
    det = Detector(str(model), None, mean=MEAN, raw_scale=255.0, channel_swap=(2, 1, 0))
    out = det.detect_windows([(str(tmp_path / "im.png"), [(1, 1, 5, 5), (0, 2, 4, 6), (2, 0, 6, 4)])])
    assert [d["window"] for d in out] == [(1, 1, 5, 5), (0, 2, 4, 6), (2, 0, 6, 4)]
    assert all(d["filename"] == str(tmp_path / "im.png") for d in out)
    for d in out:  # 4 x 4 windows need no warping
        y0, x0, y1, x1 = d["window"]
        np.testing.assert_allclose(d["prediction"], _expected(im[y0:y1, x0:x1]), rtol=1e-4, atol=1e-3)

    ctx = Detector(str(model), None, mean=MEAN, raw_scale=255.0, channel_swap=(2, 1, 0), context_pad=1)
    # window (2, 2, 3, 3): box widened by 4 / (4 - 2) around its centre (3, 3) to rows/cols 1..5,
    # taken as im[1:5, 1:5], already 4 x 4.
    # window (0, 0, 1, 1): box -1..3, one row and column of mean padding, then im[0:3, 0:3]
    # (3 x 3, no warping); padding is zero once preprocessed, so the mean is over 16 pixels.
    res = ctx.detect_windows([(str(tmp_path / "im.png"), [(2, 2, 3, 3), (0, 0, 1, 1)])])
    np.testing.assert_allclose(res[0]["prediction"], _expected(im[1:5, 1:5]), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(res[1]["prediction"], _expected(im[0:3, 0:3]) * 9 / 16, rtol=1e-4, atol=1e-3)
    with pytest.raises(NetdefError, match="selective_search"):
        ctx.detect_selective_search([str(tmp_path / "im.png")])
