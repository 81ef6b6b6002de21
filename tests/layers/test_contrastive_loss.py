"""ContrastiveLoss (current and legacy_version) against a numpy loop, the finite-difference
gradient of both inputs, shape errors, GPU against CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError, ShapeError


def proto(margin=None, legacy=False):
    p = "" if margin is None else f"margin: {margin} "
    p += "legacy_version: true" if legacy else ""
    return f"name: 'c' type: 'ContrastiveLoss' contrastive_loss_param {{ {p} }}"


def reference(a, b, y, margin, legacy):
    N = a.shape[0]
    loss, ga = 0.0, np.zeros_like(a)
    for n in range(N):
        d = a[n].reshape(-1) - b[n].reshape(-1)
        dsq = d @ d
        if int(y[n]) != 0:
            loss += dsq
            ga[n] = d.reshape(a[n].shape) / N
        elif legacy:
            loss += max(margin - dsq, 0)
            ga[n] = -float(margin - dsq > 0) * d.reshape(a[n].shape) / N
        else:
            m = margin - np.sqrt(dsq)
            loss += max(m, 0) ** 2
            if m > 0:
                ga[n] = -m / (np.sqrt(dsq) + 1e-4) * d.reshape(a[n].shape) / N
    return loss / (2 * N), ga


def data(seed, N=6, C=3):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((N, C, 1, 1)) * 0.6
    b = rng.standard_normal((N, C, 1, 1)) * 0.6
    y = (np.arange(N) % 2).astype(float).reshape(N, 1, 1, 1)
    return a, b, y


@pytest.mark.parametrize("legacy", [False, True])
def test_against_reference(legacy):
    a, b, y = data(0)
    layer, bt, top = build_layer(proto(1.5, legacy), [a, b, y])
    (loss,) = forward(layer, bt, top)
    ref, ga = reference(a, b, y.reshape(-1), 1.5, legacy)
    np.testing.assert_allclose(loss, ref, rtol=1e-12)
    top[0].diff[...] = 0.5
    layer.backward(top, [True, True, False], bt)
    np.testing.assert_allclose(bt[0].diff, 0.5 * ga, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(bt[1].diff, -0.5 * ga, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("legacy", [False, True])
def test_gradient(legacy):
    a, b, y = data(1, N=4, C=2)
    # Caffe's 1e-4 in the dissimilar gradient is below the checker's 1e-3 tolerance here
    check_gradients(proto(None, legacy), [a.reshape(4, 2), b.reshape(4, 2), y.reshape(4)])


def test_errors():
    a, b, y = data(2)
    with pytest.raises(ShapeError, match="same shape"):
        build_layer(proto(), [a, b[:, :2], y])
    with pytest.raises(ShapeError, match="N x C"):
        build_layer(proto(), [np.zeros((2, 3, 2, 1)), np.zeros((2, 3, 2, 1)), np.zeros(2)])
    layer, bt, top = build_layer(proto(), [a, b, y])
    forward(layer, bt, top)
    with pytest.raises(NetdefError, match="similarity labels"):
        layer.backward(top, [True, False, True], bt)


@pytest.mark.gpu
def test_gpu_matches_cpu():
    compare_devices(proto(2.0), list(data(3, N=5, C=4)))
