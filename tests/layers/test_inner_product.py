import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward

CONFIGS = [
    # bottom shape, axis, num_output, bias, transpose
    ((2, 3, 4, 5), 1, 7, True, False),
    ((3, 5), 1, 4, False, False),
    ((2, 3, 4), 2, 3, True, True),
    ((1, 1, 1, 1), 1, 1, True, False),
    ((2, 6, 3), -1, 5, True, False),
]


def _param(axis, n, bias, transpose):
    return (f"type: 'InnerProduct' inner_product_param {{ num_output: {n} axis: {axis} "
            f"bias_term: {str(bias).lower()} transpose: {str(transpose).lower()} "
            "weight_filler { type: 'gaussian' std: 0.5 } bias_filler { type: 'uniform' min: -1 max: 1 } }")


@pytest.mark.parametrize("shape,axis,n,bias,transpose", CONFIGS)
def test_inner_product_forward_matches_einsum(shape, axis, n, bias, transpose):
    x = np.random.default_rng(0).standard_normal(shape)
    layer, b, t = build_layer(_param(axis, n, bias, transpose), [x])
    (y,) = forward(layer, b, t)
    a = axis % len(shape)
    X = x.reshape(int(np.prod(shape[:a])), -1)
    W = layer.blobs[0].data
    if transpose:
        W = W.T
    expected = np.einsum("mk,nk->mn", X, W)
    if bias:
        expected = expected + layer.blobs[1].data
    assert y.shape == shape[:a] + (n,)
    np.testing.assert_allclose(y.reshape(X.shape[0], n), expected, rtol=1e-10)


@pytest.mark.parametrize("shape,axis,n,bias,transpose", CONFIGS)
def test_inner_product_gradient(shape, axis, n, bias, transpose):
    x = np.random.default_rng(1).standard_normal(shape)
    check_gradients(_param(axis, n, bias, transpose), [x])


def test_inner_product_needs_num_output():
    with pytest.raises(netdef.LayerSetupError, match="num_output"):
        build_layer("name: 'fc' type: 'InnerProduct'", [np.ones((2, 3))])


def test_inner_product_reshape_to_wrong_width_is_an_error():
    layer, b, t = build_layer(_param(1, 3, True, False), [np.ones((2, 4))])
    b[0].reshape(2, 5)
    with pytest.raises(netdef.ShapeError, match="5 inputs"):
        layer.reshape(b, t)


@pytest.mark.gpu
def test_inner_product_gpu_matches_cpu():
    x = np.random.default_rng(2).standard_normal((4, 3, 5, 5))
    compare_devices(_param(1, 10, True, False), [x], rtol=1e-4, atol=1e-4)
