import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward


def _away_from_zero(rng, shape):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.1, x)  # finite differences cannot straddle the kink


@pytest.mark.parametrize("slope", [0.0, 0.1, -0.3])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (3, 4)])
def test_relu_forward_matches_numpy(slope, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    layer, b, t = build_layer(f"type: 'ReLU' relu_param {{ negative_slope: {slope} }}", [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, np.where(x > 0, x, slope * x))


@pytest.mark.parametrize("slope", [0.0, 0.25, -0.5])
def test_relu_gradient(slope):
    x = _away_from_zero(np.random.default_rng(1), (2, 3, 4, 5))
    check_gradients(f"type: 'ReLU' relu_param {{ negative_slope: {slope} }}", [x])


def test_relu_float32_matches_float64():
    x = np.random.default_rng(2).standard_normal((3, 5, 7))
    outs = []
    for dt in (np.float32, np.float64):
        layer, b, t = build_layer("type: 'ReLU' relu_param { negative_slope: 0.1 }", [x], dtype=dt)
        outs.append(forward(layer, b, t)[0])
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6, atol=1e-6)


def test_relu_in_place_in_a_net():
    import netdef

    net = netdef.Net("""
      input: 'x' input_shape { dim: 2 dim: 6 }
      layer { name: 'r' type: 'ReLU' bottom: 'x' top: 'x' }
      layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'y'
              inner_product_param { num_output: 1 weight_filler { type: 'constant' value: 1 } } }
    """, netdef.TRAIN)
    x = np.array([[1, -2, 3, -4, 5, -6]] * 2, dtype=np.float32)
    out = net.forward(x=x)
    np.testing.assert_allclose(out["y"], [[9], [9]])


@pytest.mark.gpu
def test_relu_gpu_matches_cpu():
    x = _away_from_zero(np.random.default_rng(3), (2, 3, 9, 11))
    compare_devices("type: 'ReLU' relu_param { negative_slope: 0.1 }", [x])
