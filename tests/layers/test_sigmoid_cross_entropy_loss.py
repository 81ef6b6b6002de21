"""SigmoidCrossEntropyLoss against a numpy reference under every normalization (and Caffe's
BATCH_SIZE default), ignore_label, extreme logits (no overflow), the finite-difference
gradient, errors, GPU against CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError, ShapeError


def reference(x, t, ignore=None, mode="BATCH_SIZE"):
    xf, tf = x.reshape(-1), t.reshape(-1)
    loss, grad, valid = 0.0, np.zeros_like(xf), 0
    for i in range(xf.size):
        if ignore is not None and int(tf[i]) == ignore:
            continue
        s = 1 / (1 + np.exp(-xf[i]))
        loss -= tf[i] * np.log(s) + (1 - tf[i]) * np.log(1 - s)
        grad[i] = s - tf[i]
        valid += 1
    N = x.shape[0]
    norm = max({"FULL": xf.size, "VALID": valid, "BATCH_SIZE": N, "NONE": 1}[mode], 1)
    return loss / norm, grad.reshape(x.shape) / norm


def proto(mode=None, ignore=None, normalize=None):
    lp = "" if mode is None else f"normalization: {mode} "
    lp += "" if ignore is None else f"ignore_label: {ignore} "
    lp += "" if normalize is None else f"normalize: {str(normalize).lower()} "
    return f"name: 'sce' type: 'SigmoidCrossEntropyLoss' loss_param {{ {lp}}}"


def data(shape, seed, ignore=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2
    t = rng.random(shape)
    t[rng.random(shape) < 0.3] = 1.0
    if ignore is not None:
        t[rng.random(shape) < 0.3] = ignore
    return x, t


@pytest.mark.parametrize("mode", [None, "FULL", "VALID", "BATCH_SIZE", "NONE"])
@pytest.mark.parametrize("ignore", [None, -1])
def test_against_reference(mode, ignore):
    x, t = data((3, 5, 2), 0, ignore)
    layer, b, top = build_layer(proto(mode, ignore), [x, t])
    (loss,) = forward(layer, b, top)
    ref, g = reference(x, t, ignore, mode or "BATCH_SIZE")  # Caffe's default is BATCH_SIZE
    np.testing.assert_allclose(loss, ref, rtol=1e-12)
    top[0].diff[...] = 0.7
    layer.backward(top, [True, False], b)
    np.testing.assert_allclose(b[0].diff, 0.7 * g, rtol=1e-12, atol=1e-15)


def test_legacy_normalize_and_extreme_logits():
    x = np.array([[-300.0, 300.0, 0.0, 40.0]])
    t = np.array([[1.0, 0.0, 0.5, 1.0]])
    layer, b, top = build_layer(proto(normalize=True), [x, t], dtype=np.float32)
    (loss,) = forward(layer, b, top)
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, (300 + 300 + np.log(2)) / 4, rtol=1e-6)  # VALID: 4 terms


@pytest.mark.parametrize("ignore", [None, 255])
def test_gradient(ignore):
    x, t = data((2, 3, 3), 1, ignore)
    check_gradients(proto("VALID", ignore), [x, t])


def test_errors():
    x, t = data((2, 3), 2)
    with pytest.raises(ShapeError, match="same count"):
        build_layer(proto(), [x, t[:, :2]])
    with pytest.raises(ShapeError, match="first"):
        build_layer(proto(), [x, t.reshape(3, 2)])
    layer, b, top = build_layer(proto(), [x, t])
    forward(layer, b, top)
    with pytest.raises(NetdefError, match=r"target input \(bottom\[1\]\)"):
        layer.backward(top, [True, True], b)


@pytest.mark.gpu
def test_gpu_matches_cpu():
    compare_devices(proto("VALID", 3), list(data((4, 3, 5), 3, 3)))
