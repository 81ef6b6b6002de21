import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward

SHAPES = [(2, 3, 4, 5), (1, 1, 3, 1), (3, 7)]


def _inputs(k, shape, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(k)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [2, 3])
def test_eltwise_forward(shape, k):
    xs = _inputs(k, shape)
    coeff = [0.5, -2.0, 3.0][:k]
    cases = {
        "operation: SUM": sum(xs),
        "operation: SUM " + " ".join(f"coeff: {c}" for c in coeff): sum(c * x for c, x in zip(coeff, xs)),
        "operation: PROD": np.prod(xs, axis=0),
        "operation: MAX": np.max(xs, axis=0),
    }
    for params, expected in cases.items():
        layer, b, t = build_layer(f"type: 'Eltwise' eltwise_param {{ {params} }}", xs)
        np.testing.assert_allclose(forward(layer, b, t)[0], expected, rtol=1e-12, err_msg=params)


@pytest.mark.parametrize("params", ["operation: SUM coeff: 1.5 coeff: -1 coeff: 0.25",
                                    "operation: PROD", "operation: PROD stable_prod_grad: false",
                                    "operation: MAX"])
def test_eltwise_gradient(params):
    xs = _inputs(3, (2, 3, 4), seed=3)
    if "MAX" in params:  # keep the maxima apart so a step of 1e-3 does not swap them
        xs = [x + 0.1 * i for i, x in enumerate(np.sort(np.stack(xs), axis=0))]
        xs = [np.random.default_rng(4).permutation(x.ravel()).reshape(x.shape) for x in xs]
    check_gradients(f"type: 'Eltwise' eltwise_param {{ {params} }}", xs)


def test_eltwise_prod_gradient_with_zeros():
    xs = _inputs(2, (4, 5), seed=5)
    xs[0][0, :] = 0.0
    check_gradients("type: 'Eltwise' eltwise_param { operation: PROD }", xs)


def test_eltwise_shape_mismatch_names_shapes():
    with pytest.raises(netdef.ShapeError, match=r"\(2, 3\).*\(2, 4\)|\(2, 4\).*\(2, 3\)"):
        build_layer("name: 'e' type: 'Eltwise'", [np.ones((2, 3)), np.ones((2, 4))])


def test_eltwise_coeff_count_checked():
    with pytest.raises(netdef.LayerSetupError, match="coeff"):
        build_layer("type: 'Eltwise' eltwise_param { coeff: 1 }", _inputs(2, (2, 2)))


@pytest.mark.gpu
@pytest.mark.parametrize("params", ["operation: SUM coeff: 2 coeff: -1", "operation: PROD", "operation: MAX"])
def test_eltwise_gpu_matches_cpu(params):
    compare_devices(f"type: 'Eltwise' eltwise_param {{ {params} }}", _inputs(2, (2, 3, 5, 7), 9))
