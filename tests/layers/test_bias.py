"""Bias: one-bottom (learned bias) and two-bottom forms, axis / num_axes, filler, against numpy
broadcasting written here; gradient checks; in place; errors; GPU against CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError


def bcast(v, shape, axis):
    axis = axis % len(shape) if v.ndim else 0
    return v.reshape((1,) * axis + v.shape + (1,) * (len(shape) - axis - v.ndim))


CASES = [  # (bottom shape, axis, num_axes)
    ((2, 3, 4, 5), 1, 1),
    ((2, 3, 4, 5), 0, -1),
    ((2, 3, 4, 5), 2, 2),
    ((2, 3, 4, 5), 1, 0),
    ((3, 5), -1, 1),
    ((1, 3, 1, 7), 1, 3),
]


@pytest.mark.parametrize("shape, axis, num_axes", CASES)
def test_one_bottom_forward_and_gradient(shape, axis, num_axes):
    x = np.random.default_rng(0).standard_normal(shape)
    text = f"type: 'Bias' bias_param {{ axis: {axis} num_axes: {num_axes} filler {{ type: 'gaussian' }} }}"
    layer, b, t = build_layer(text, [x])
    a = axis % len(shape)
    assert layer.blobs[0].shape == (shape[a:] if num_axes == -1 else shape[a:a + num_axes])
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, x + bcast(layer.blobs[0].to_numpy(), shape, axis), rtol=1e-14)
    check_gradients(text, [x], max_checks=40)


def test_default_filler_is_zero():
    x = np.random.default_rng(1).standard_normal((2, 3))
    layer, b, t = build_layer("type: 'Bias'", [x])
    np.testing.assert_array_equal(layer.blobs[0].data, [0, 0, 0])
    np.testing.assert_array_equal(forward(layer, b, t)[0], x)


@pytest.mark.parametrize("shape, bshape, axis", [((2, 3, 4, 5), (3,), 1), ((2, 3, 4, 5), (4, 5), 2),
                                                 ((2, 3, 4), (), 1), ((6, 4), (6, 4), 0)])
def test_two_bottoms(shape, bshape, axis):
    rng = np.random.default_rng(2)
    x, bias = rng.standard_normal(shape), rng.standard_normal(bshape)
    text = f"type: 'Bias' bias_param {{ axis: {axis} }}"
    layer, b, t = build_layer(text, [x, bias])
    assert layer.blobs == []
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, x + bcast(bias, shape, axis), rtol=1e-14)
    check_gradients(text, [x, bias], max_checks=40)


def test_gradients_by_hand_and_accumulation():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4))
    dy = rng.standard_normal(x.shape)
    layer, b, t = build_layer("type: 'Bias'", [x])
    forward(layer, b, t)
    t[0].diff[...] = dy
    layer.blobs[0].diff[...] = 0.5
    layer.backward(t, [True], b)
    np.testing.assert_allclose(layer.blobs[0].diff, 0.5 + dy.sum(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_array_equal(b[0].diff, dy)


def test_in_place():
    net = netdef.Net("""
      force_backward: true
      input: 'x' input_shape { dim: 2 dim: 3 }
      layer { name: 'b' type: 'Bias' bottom: 'x' top: 'x' bias_param { filler { type: 'constant' value: 1 } } }
      layer { name: 'loss' type: 'InnerProduct' bottom: 'x' top: 'loss' loss_weight: 1
              inner_product_param { num_output: 1 weight_filler { type: 'constant' value: 3 } } }
    """, netdef.TRAIN, dtype=np.float64)
    x = np.arange(6.0).reshape(2, 3)
    net.forward(x=x)
    np.testing.assert_allclose(net.blobs["x"].data, x + 1)
    dx = net.backward()["x"]
    np.testing.assert_allclose(dx, np.full((2, 3), 3.0))
    np.testing.assert_allclose(net.params["b"][0].diff, [6, 6, 6])


@pytest.mark.parametrize("text, bottoms, match", [
    ("type: 'Bias' bias_param { num_axes: -3 }", [(2, 3)], "num_axes must be >= 0"),
    ("type: 'Bias' bias_param { axis: 2 num_axes: 2 }", [(2, 3, 4)], r"has no 2 axes from axis 2"),
    ("type: 'Bias' bias_param { axis: -4 }", [(2, 3, 4)], "axis -4 is out of range"),
    ("type: 'Bias'", [(2, 3, 4), (3, 5)], r"bias of shape \(3, 5\) does not match bottom\[0\] shape \(2, 3, 4\)"),
])
def test_errors(text, bottoms, match):
    with pytest.raises(NetdefError, match=match):
        build_layer(text, [np.ones(s) for s in bottoms])


@pytest.mark.gpu
def test_gpu_matches_cpu():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 8, 60, 70))
    compare_devices("type: 'Bias' bias_param { filler { type: 'gaussian' } }", [x], rtol=2e-4, atol=2e-4)
    compare_devices("type: 'Bias' bias_param { axis: 2 }", [x, rng.standard_normal((60, 70))],
                    rtol=2e-4, atol=2e-4)
