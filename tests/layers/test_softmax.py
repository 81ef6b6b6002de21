"""Softmax over any axis against numpy, numerically stable for large scores, in place,
gradient checks, errors, GPU against CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError


def softmax_ref(x, axis):
    out = np.empty_like(x)
    moved = np.moveaxis(x, axis, -1)
    res = np.moveaxis(out, axis, -1)
    for idx in np.ndindex(*moved.shape[:-1]):
        v = moved[idx]
        e = np.exp(v - v.max())
        res[idx] = e / e.sum()
    return out


CASES = [((2, 5, 3, 4), 1), ((3, 7), 1), ((2, 3, 4), 2), ((2, 3, 4), -1), ((4, 3, 2, 2), 0),
         ((1, 1, 3, 3), 1), ((2, 6, 1, 1), 1)]


@pytest.mark.parametrize("shape, axis", CASES)
def test_forward(shape, axis):
    x = np.random.default_rng(0).standard_normal(shape) * 3
    layer, b, t = build_layer(f"type: 'Softmax' softmax_param {{ axis: {axis} }}", [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, softmax_ref(x, axis), rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(y.sum(axis=axis), 1, rtol=1e-13)


def test_large_scores_do_not_overflow():
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1002.0, -1001.0]]).reshape(2, 3, 1, 1)
    for dt in (np.float32, np.float64):
        layer, b, t = build_layer("type: 'Softmax'", [x], dtype=dt)
        (y,) = forward(layer, b, t)
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y, softmax_ref(x, 1), rtol=1e-5)


@pytest.mark.parametrize("shape, axis", CASES[:5])
def test_gradient(shape, axis):
    x = np.random.default_rng(1).standard_normal(shape)
    check_gradients(f"type: 'Softmax' softmax_param {{ axis: {axis} }}", [x], max_checks=80)


def test_in_place_in_a_net():
    x = np.random.default_rng(2).standard_normal((2, 4, 3, 3)).astype(np.float32)
    net = netdef.Net("""force_backward: true
        input: 'x' input_shape { dim: 2 dim: 4 dim: 3 dim: 3 }
        layer { name: 'c' type: 'Convolution' bottom: 'x' top: 's'
                convolution_param { num_output: 4 kernel_size: 1 bias_term: false
                                    weight_filler { type: 'gaussian' std: 1 } } }
        layer { name: 'sm' type: 'Softmax' bottom: 's' top: 's' }""")
    out = net.forward(x=x)
    w = net.params["c"][0].data.reshape(4, 4)
    s = np.einsum("oc,nchw->nohw", w, x)
    y = softmax_ref(s.astype(np.float64), 1)
    np.testing.assert_allclose(out["s"], y, rtol=1e-5, atol=1e-6)
    dy = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
    diffs = net.backward(s=dy)
    ds = y * (dy - (dy * y).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(diffs["x"], np.einsum("oc,nohw->nchw", w, ds), rtol=1e-4, atol=1e-5)


def test_axis_out_of_range_is_an_error():
    with pytest.raises(NetdefError, match=r"axis 3 is out of range for a blob of 3 axes"):
        build_layer("type: 'Softmax' softmax_param { axis: 3 }", [np.zeros((2, 3, 4))])


@pytest.mark.gpu
@pytest.mark.parametrize("shape, axis", [((2, 21, 17, 19), 1), ((5, 1000), 1), ((3, 4, 50), 2)])
def test_gpu_matches_cpu(shape, axis):
    x = np.random.default_rng(4).standard_normal(shape) * 4
    compare_devices(f"type: 'Softmax' softmax_param {{ axis: {axis} }}", [x], rtol=1e-4, atol=1e-6)
