"""Clip: forward against numpy, gradients (the bounds pass dy), in place equal to out of place,
errors, GPU against CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError

PROTO = "type: 'Clip' clip_param {{ min: {} max: {} }}"


def _ref(x, lo, hi):
    return np.array([min(max(v, lo), hi) for v in x.ravel()]).reshape(x.shape)


@pytest.mark.parametrize("lo, hi", [(-0.5, 0.5), (0, 1), (-2, -1), (0.25, 0.25)])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (9,), (3, 1, 2)], ids=str)
def test_forward_matches_reference(lo, hi, shape):
    x = np.random.default_rng(0).standard_normal(shape)
    layer, b, t = build_layer(PROTO.format(lo, hi), [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_array_equal(y, _ref(x, lo, hi))


@pytest.mark.parametrize("lo, hi", [(-0.5, 0.5), (-2, -1)])
def test_gradient(lo, hi):
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 3))
    x = np.where((np.abs(x - lo) < 0.01) | (np.abs(x - hi) < 0.01), 0.0123, x)
    check_gradients(PROTO.format(lo, hi), [x])


def test_bounds_pass_the_gradient_and_in_place_matches():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    dy = np.arange(1.0, 6.0)
    layer, b, t = build_layer(PROTO.format(-0.5, 0.5), [x])
    forward(layer, b, t)
    t[0].diff[...] = dy
    layer.backward(t, [True], b)
    np.testing.assert_array_equal(b[0].diff, [0, 2, 3, 4, 0])
    layer2, b2, _ = build_layer(PROTO.format(-0.5, 0.5), [x])
    layer2.forward(b2, b2)
    b2[0].diff[...] = dy
    layer2.backward(b2, [True], b2)
    np.testing.assert_array_equal(b2[0].data, [-0.5, -0.5, 0, 0.5, 0.5])
    np.testing.assert_array_equal(b2[0].diff, [0, 2, 3, 4, 0])


@pytest.mark.parametrize("proto, match", [
    ("type: 'Clip'", "clip_param.min and max must be given"),
    ("type: 'Clip' clip_param { min: 1 max: 0 }", "min 1.0 is greater than max 0.0"),
])
def test_errors(proto, match):
    with pytest.raises(NetdefError, match=match):
        build_layer(proto, [np.ones((2, 2))])


@pytest.mark.gpu
def test_gpu_matches_cpu():
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 11))
    compare_devices(PROTO.format(-0.3, 0.7), [x], rtol=0, atol=0)
