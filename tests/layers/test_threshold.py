"""Threshold: the step against numpy, x == threshold gives 0, backward writes zeros (Caffe has
none), in place, GPU against CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward


@pytest.mark.parametrize("t", [None, 0.5, -1.25])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7,), (3, 1, 2)], ids=str)
def test_forward_matches_reference(t, shape):
    x = np.random.default_rng(0).standard_normal(shape)
    proto = "type: 'Threshold'" + ("" if t is None else f" threshold_param {{ threshold: {t} }}")
    layer, b, t_ = build_layer(proto, [x])
    (y,) = forward(layer, b, t_)
    want = np.array([1.0 if v > (t or 0.0) else 0.0 for v in x.ravel()]).reshape(shape)
    np.testing.assert_array_equal(y, want)


def test_at_the_threshold_is_zero():
    layer, b, t = build_layer("type: 'Threshold' threshold_param { threshold: 0.5 }",
                              [np.array([0.5, 0.5000001, 0.4999999])])
    (y,) = forward(layer, b, t)
    np.testing.assert_array_equal(y, [0, 1, 0])


def test_backward_is_zero_and_matches_finite_differences():
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    x = np.where(np.abs(x - 0.2) < 0.01, 0.5, x)  # no element within a step of the threshold
    check_gradients("type: 'Threshold' threshold_param { threshold: 0.2 }", [x])
    layer, b, t = build_layer("type: 'Threshold'", [x])
    forward(layer, b, t)
    t[0].diff[...] = 3.0
    b[0].diff[...] = np.nan
    layer.backward(t, [True], b)
    np.testing.assert_array_equal(b[0].diff, 0)


def test_in_place_in_a_net_with_backward():
    net = netdef.Net("""
      force_backward: true
      input: 'x' input_shape { dim: 2 dim: 3 }
      layer { name: 't' type: 'Threshold' bottom: 'x' top: 'x' threshold_param { threshold: 0.1 } }
    """, netdef.TRAIN, dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((2, 3))
    y = net.forward(x=x)["x"]
    np.testing.assert_array_equal(y, (x > np.float32(0.1)).astype(float))
    np.testing.assert_array_equal(net.backward(x=np.ones((2, 3)))["x"], 0)


@pytest.mark.gpu
def test_gpu_matches_cpu():
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 11))
    compare_devices("type: 'Threshold' threshold_param { threshold: 0.3 }", [x], rtol=0, atol=0)
