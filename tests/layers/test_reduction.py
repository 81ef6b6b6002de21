"""Reduction: forward against numpy loops for every operation and axis, gradients, errors,
GPU against CPU (the two-stage reduction takes several parts per row there)."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError

OPS = {"SUM": lambda v: v, "ASUM": np.abs, "SUMSQ": np.square, "MEAN": lambda v: v}


def _proto(op, axis=None, coeff=None):
    p = f"operation: {op}"
    p += f" axis: {axis}" if axis is not None else ""
    p += f" coeff: {coeff}" if coeff is not None else ""
    return f"type: 'Reduction' reduction_param {{ {p} }}"


def _reference(x, op, axis, coeff):
    axis %= max(x.ndim, 1)
    rows = int(np.prod(x.shape[:axis]))
    flat = x.reshape(rows, -1)
    y = np.zeros(rows)
    for r in range(rows):
        for v in flat[r]:
            y[r] += OPS[op](v)
        if op == "MEAN":
            y[r] /= flat.shape[1]
    return (coeff * y).reshape(x.shape[:axis])


CASES = [((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 5), -1), ((3, 5, 2, 3), 2), ((7,), 0)]


@pytest.mark.parametrize("shape, axis", CASES, ids=str)
@pytest.mark.parametrize("op", sorted(OPS))
def test_forward_matches_reference(op, shape, axis):
    x = np.random.default_rng(0).standard_normal(shape)
    layer, b, t = build_layer(_proto(op, axis, 0.5), [x])
    (y,) = forward(layer, b, t)
    assert y.shape == shape[:axis % len(shape)]
    np.testing.assert_allclose(y, _reference(x, op, axis, 0.5), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, axis", CASES, ids=str)
@pytest.mark.parametrize("op", sorted(OPS))
def test_gradient(op, shape, axis):
    x = np.random.default_rng(1).standard_normal(shape)
    x = np.where(np.abs(x) < 0.05, 0.1, x)  # ASUM's kink
    check_gradients(_proto(op, axis, -1.5), [x])


def test_default_is_sum_of_everything():
    x = np.arange(12.0).reshape(3, 4)
    layer, b, t = build_layer("type: 'Reduction'", [x])
    (y,) = forward(layer, b, t)
    assert y.shape == () and y == 66.0


def test_long_rows_sum_in_parts_on_the_gpu_policy(emulated_gpu_backend):
    x = np.random.default_rng(2).standard_normal((3, 5000))
    layer, b, t = build_layer(_proto("SUMSQ", 1), [x], backend=emulated_gpu_backend)
    assert layer.parts > 1
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, (x ** 2).sum(1), rtol=1e-12)


@pytest.mark.parametrize("proto, shape, match", [
    (_proto("SUM", 2), (2, 3), r"axis 2 is out of range.*\(2, 3\)"),
    (_proto("MEAN", -3), (2, 3), "axis -3 is out of range"),
    (_proto("SUM"), (), "axis 0 is out of range"),
])
def test_errors(proto, shape, match):
    with pytest.raises(NetdefError, match=match):
        build_layer(proto, [np.ones(shape)])


@pytest.mark.gpu
@pytest.mark.parametrize("op", sorted(OPS))
def test_gpu_matches_cpu(op):
    x = np.random.default_rng(3).standard_normal((2, 3, 40, 30))
    compare_devices(_proto(op, 1, 0.7), [x], rtol=1e-4, atol=1e-4)
