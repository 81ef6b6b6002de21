"""MultinomialLogisticLoss against a numpy reference, the 1e-20 floor of Caffe's
kLOG_THRESHOLD, the finite-difference gradient, label errors, GPU against CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError, ShapeError

PROTO = "name: 'mll' type: 'MultinomialLogisticLoss'"


def data(N, C, seed):
    rng = np.random.default_rng(seed)
    p = rng.random((N, C, 1, 1)) + 0.05
    p /= p.sum(axis=1, keepdims=True)
    return p, rng.integers(0, C, (N, 1, 1, 1)).astype(float)


def test_against_reference_and_floor():
    p, lab = data(4, 5, 0)
    p[2, int(lab[2, 0, 0, 0])] = 0.0  # floored at 1e-20
    layer, b, top = build_layer(PROTO, [p, lab])
    (loss,) = forward(layer, b, top)
    ref, grad = 0.0, np.zeros_like(p)
    for n in range(4):
        l = int(lab[n, 0, 0, 0])
        q = max(p[n, l, 0, 0], 1e-20)
        ref -= np.log(q) / 4
        grad[n, l] = -1 / q / 4
    np.testing.assert_allclose(loss, ref, rtol=1e-12)
    top[0].diff[...] = 2.0
    layer.backward(top, [True, False], b)
    np.testing.assert_allclose(b[0].diff, 2 * grad, rtol=1e-12)


def test_gradient():
    p, lab = data(3, 4, 1)
    check_gradients(PROTO, [p.reshape(3, 4), lab.reshape(3)], step=1e-5)


def test_errors():
    p, lab = data(3, 4, 2)
    with pytest.raises(ShapeError, match="one label per row"):
        build_layer(PROTO, [p, np.zeros((3, 2))])
    lab[1] = 4
    layer, b, top = build_layer(PROTO, [p, lab])
    with pytest.raises(NetdefError, match=r"outside \[0, 4\)"):
        forward(layer, b, top)


@pytest.mark.gpu
def test_gpu_matches_cpu():
    compare_devices(PROTO, list(data(5, 3, 3)))
