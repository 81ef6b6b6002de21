"""Concat, Flatten, Reshape, Silence, Split: layers that move data without arithmetic."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, forward


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("axis,shapes", [
    (1, [(2, 3, 4, 5), (2, 1, 4, 5), (2, 2, 4, 5)]),
    (0, [(1, 3), (4, 3)]),
    (-1, [(2, 3, 1), (2, 3, 5)]),
    (2, [(1, 2, 3, 3)]),
])
def test_concat_forward_and_gradient(axis, shapes):
    xs = [_x(s, i) for i, s in enumerate(shapes)]
    p = f"type: 'Concat' concat_param {{ axis: {axis} }}"
    layer, b, t = build_layer(p, xs)
    np.testing.assert_array_equal(forward(layer, b, t)[0], np.concatenate(xs, axis=axis))
    check_gradients(p, xs)


def test_concat_legacy_concat_dim():
    xs = [_x((2, 3)), _x((2, 3), 1)]
    layer, b, t = build_layer("type: 'Concat' concat_param { concat_dim: 0 }", xs)
    assert forward(layer, b, t)[0].shape == (4, 3)


def test_concat_mismatch_is_an_error():
    with pytest.raises(netdef.ShapeError, match=r"bottom\[1\] has shape \(2, 4, 5\)"):
        build_layer("name: 'c' type: 'Concat'", [_x((2, 3, 4)), _x((2, 4, 5))])


@pytest.mark.parametrize("params,shape,expected", [
    ("", (2, 3, 4, 5), (2, 60)),
    ("axis: 2", (2, 3, 4, 5), (2, 3, 20)),
    ("axis: 1 end_axis: 2", (2, 3, 4, 5), (2, 12, 5)),
    ("axis: 0 end_axis: -1", (3, 5), (15,)),
])
def test_flatten(params, shape, expected):
    x = _x(shape)
    p = f"type: 'Flatten' flatten_param {{ {params} }}"
    layer, b, t = build_layer(p, [x])
    np.testing.assert_array_equal(forward(layer, b, t)[0], x.reshape(expected))
    check_gradients(p, [x])


@pytest.mark.parametrize("params,shape,expected", [
    ("shape { dim: 0 dim: -1 }", (2, 3, 4), (2, 12)),
    ("shape { dim: 6 dim: 2 dim: 2 }", (2, 3, 4), (6, 2, 2)),
    ("shape { dim: 2 dim: 2 } axis: 1 num_axes: 1", (3, 4, 5), (3, 2, 2, 5)),
    ("shape { dim: -1 } axis: -2", (2, 3, 4), (2, 3, 4)),
    ("shape { dim: 1 } axis: 1 num_axes: 0", (2, 3), (2, 1, 3)),
])
def test_reshape(params, shape, expected):
    x = _x(shape)
    p = f"type: 'Reshape' reshape_param {{ {params} }}"
    layer, b, t = build_layer(p, [x])
    np.testing.assert_array_equal(forward(layer, b, t)[0], x.reshape(expected))
    check_gradients(p, [x])


@pytest.mark.parametrize("params,match", [
    ("shape { dim: 5 dim: -1 }", "cannot infer"),
    ("shape { dim: 7 }", "changes the count"),
    ("shape { dim: -1 dim: -1 }", "more than one -1"),
])
def test_reshape_errors(params, match):
    with pytest.raises(netdef.NetdefError, match=match):
        build_layer(f"name: 'r' type: 'Reshape' reshape_param {{ {params} }}", [_x((2, 3))])


def test_silence_zeroes_gradient():
    layer, b, t = build_layer("type: 'Silence'", [_x((2, 3)), _x((4,))], num_tops=0)
    layer.backward(t, [True, True], b)
    assert not b[0].diff.any() and not b[1].diff.any()


def test_split_shares_data_and_sums_diffs():
    x = _x((2, 3))
    layer, b, t = build_layer("type: 'Split'", [x], num_tops=3)
    for i, top in enumerate(t):
        np.testing.assert_array_equal(top.data, x)
        top.diff[...] = i + 1
    layer.backward(t, [True], b)
    np.testing.assert_array_equal(b[0].diff, np.full((2, 3), 6.0))
    check_gradients("type: 'Split'", [x], num_tops=3)
