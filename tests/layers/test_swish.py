"""Swish: forward against numpy, gradients for several beta, in place, saturation, GPU vs CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward


def _ref(x, beta):
    return x / (1 + np.exp(-beta * x))


BETAS = [None, 0.5, 2.0, -1.0, 0.0]


def _proto(beta):
    return "type: 'Swish'" + ("" if beta is None else f" swish_param {{ beta: {beta} }}")


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7,), (3, 1, 2)], ids=str)
def test_forward_matches_reference(beta, shape):
    x = np.random.default_rng(0).standard_normal(shape)
    layer, b, t = build_layer(_proto(beta), [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, _ref(x, 1.0 if beta is None else beta), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("beta", BETAS)
def test_gradient(beta):
    check_gradients(_proto(beta), [np.random.default_rng(1).standard_normal((2, 3, 4))])


def test_in_place_and_saturation():
    x = np.array([-800.0, -30.0, -1.0, 0.0, 1.0, 30.0, 800.0])
    dy = np.linspace(0.5, 2.0, x.size)
    layer, b, t = build_layer(_proto(1.5), [x])
    (y,) = forward(layer, b, t)
    t[0].diff[...] = dy
    layer.backward(t, [True], b)
    want_dx = b[0].diff.copy()
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(want_dx))
    layer2, b2, _ = build_layer(_proto(1.5), [x])
    layer2.forward(b2, b2)
    b2[0].diff[...] = dy
    layer2.backward(b2, [True], b2)
    np.testing.assert_array_equal(b2[0].data, y)
    np.testing.assert_allclose(b2[0].diff, want_dx, rtol=1e-15)
    with np.errstate(over="ignore"):
        s = 1 / (1 + np.exp(-1.5 * x))
    np.testing.assert_allclose(want_dx, dy * (s + 1.5 * x * s * (1 - s)), rtol=1e-12, atol=1e-300)


@pytest.mark.gpu
@pytest.mark.parametrize("beta", BETAS)
def test_gpu_matches_cpu(beta):
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 11))
    compare_devices(_proto(beta), [x], rtol=2e-5, atol=1e-6)
