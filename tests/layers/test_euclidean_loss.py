import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward

LAYER = "type: 'EuclideanLoss'"


@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (2, 3, 4, 5)])
def test_forward_matches_numpy(shape):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    layer, bt, t = build_layer(LAYER, [a, b])
    (loss,) = forward(layer, bt, t)
    assert loss.shape == ()
    ref = sum((x - y) ** 2 for x, y in zip(a.ravel(), b.ravel())) / (2 * shape[0])
    np.testing.assert_allclose(loss, ref, rtol=1e-12)


def test_targets_of_another_shape_with_the_same_count():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 6)), rng.standard_normal((2, 3, 2))
    layer, bt, t = build_layer(LAYER, [a, b])
    (loss,) = forward(layer, bt, t)
    np.testing.assert_allclose(loss, ((a - b.reshape(2, 6)) ** 2).sum() / 4, rtol=1e-12)
    check_gradients(LAYER, [a, b])


@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (2, 3, 2, 3)])
def test_gradients(shape):
    rng = np.random.default_rng(2)
    check_gradients(LAYER, [rng.standard_normal(shape), rng.standard_normal(shape)])


def test_loss_weight_scales_gradient_in_a_net():
    net = netdef.Net("""
    layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss" loss_weight: 3 }
    """, netdef.TRAIN, dtype=np.float64)
    net.param.force_backward = True
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    net.blobs["a"].data[...] = a
    net.blobs["b"].data[...] = b
    loss = net.forward_backward()
    np.testing.assert_allclose(loss, 3 * ((a - b) ** 2).sum() / 4, rtol=1e-12)


def test_count_mismatch_names_shapes():
    with pytest.raises(netdef.ShapeError, match=r"\(2, 3\).*\(2, 4\)"):
        build_layer(LAYER, [np.zeros((2, 3)), np.zeros((2, 4))])


@pytest.mark.gpu
def test_gpu_matches_cpu():
    rng = np.random.default_rng(4)
    compare_devices(LAYER, [rng.standard_normal((4, 3, 5, 5)), rng.standard_normal((4, 3, 5, 5))])
