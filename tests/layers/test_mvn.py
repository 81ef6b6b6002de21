"""MVN: forward against numpy loops (per channel, across channels, mean only), eps added to the
standard deviation, gradients (also with a large eps and constant rows), errors, GPU vs CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError


def _proto(nv=True, across=False, eps=None):
    p = f"normalize_variance: {str(nv).lower()} across_channels: {str(across).lower()}"
    p += f" eps: {eps}" if eps is not None else ""
    return f"type: 'MVN' mvn_param {{ {p} }}"


def _reference(x, nv, across, eps):
    rows = x.shape[0] if across else x.shape[0] * x.shape[1]
    flat = x.reshape(rows, -1)
    y = np.empty_like(flat)
    for r in range(rows):
        m = sum(flat[r]) / flat.shape[1]
        y[r] = flat[r] - m
        if nv:
            s = np.sqrt(sum((v - m) ** 2 for v in flat[r]) / flat.shape[1])
            y[r] /= s + eps
    return y.reshape(x.shape)


SHAPES = [(2, 3, 4, 5), (1, 2, 3), (3, 4), (2, 1, 1, 7)]
MODES = [(True, False), (True, True), (False, False), (False, True)]


@pytest.mark.parametrize("nv, across", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_matches_reference(nv, across, shape):
    x = np.random.default_rng(0).standard_normal(shape) * 3 + 1
    layer, b, t = build_layer(_proto(nv, across, 0.01), [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, _reference(x, nv, across, np.float32(0.01)), rtol=1e-11, atol=1e-12)


def test_default_eps_and_constant_rows():
    x = np.stack([np.full((2, 3), 4.0), np.arange(6.0).reshape(2, 3)])[None]  # (1, 2, 2, 3)
    layer, b, t = build_layer("type: 'MVN'", [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_array_equal(y[0, 0], 0)  # eps on the std: no NaN
    v = np.arange(6.0)
    np.testing.assert_allclose(y[0, 1].ravel(), (v - v.mean()) / (v.std() + np.float32(1e-9)), rtol=1e-12)


@pytest.mark.parametrize("nv, across", MODES)
@pytest.mark.parametrize("eps", [None, 0.5])
def test_gradient(nv, across, eps):
    x = np.random.default_rng(1).standard_normal((2, 3, 2, 3))
    check_gradients(_proto(nv, across, eps), [x])


def test_gradient_of_a_constant_row():
    x = np.random.default_rng(2).standard_normal((2, 2, 3))
    x[1, 0] = 0.7
    check_gradients(_proto(True, False, 0.5), [x])


@pytest.mark.parametrize("proto, shape, match", [
    (_proto(eps=-1), (2, 3), "eps must be >= 0"),
    (_proto(), (5,), r"bottom shape \(5,\) has no channel axis"),
    (_proto(), (2, 3, 0), "rows to normalize are empty"),
])
def test_errors(proto, shape, match):
    with pytest.raises(NetdefError, match=match):
        build_layer(proto, [np.ones(shape)])


@pytest.mark.gpu
@pytest.mark.parametrize("nv, across", MODES)
def test_gpu_matches_cpu(nv, across):
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 11))
    compare_devices(_proto(nv, across), [x], rtol=2e-4, atol=2e-5)
