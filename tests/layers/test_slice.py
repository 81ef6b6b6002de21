"""Slice: forward against numpy slicing, gradients, legacy slice_dim, empty batches, errors,
emulated GPU against CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError


def _proto(axis=None, points=(), slice_dim=None, tops=2):
    p = [f"axis: {axis}"] if axis is not None else []
    p += [f"slice_point: {s}" for s in points]
    if slice_dim is not None:
        p.append(f"slice_dim: {slice_dim}")
    return ("type: 'Slice' " + "".join(f"top: 't{k}' " for k in range(tops))
            + "slice_param { " + " ".join(p) + " }")


def _reference(x, axis, points, tops):
    """top k as an explicit loop over the bottom's positions along axis."""
    D = x.shape[axis]
    bounds = [0] + list(points) + [D] if points else [k * D // tops for k in range(tops + 1)]
    xm = np.moveaxis(x, axis, 0)
    outs = []
    for k in range(tops):
        rows = [xm[j] for j in range(bounds[k], bounds[k + 1])]
        outs.append(np.moveaxis(np.stack(rows), 0, axis))
    return outs


CASES = [  # (shape, axis, slice_point, tops)
    ((2, 6, 3, 5), None, (), 3),           # default axis 1, equal split
    ((2, 7, 3), 1, (2, 3), 3),             # uneven, odd sizes
    ((3, 4, 5), -1, (1, 4), 3),            # last axis, negative
    ((4, 3), 0, (1,), 2),                  # batch axis
    ((2, 3, 4, 5), -2, (), 2),             # axis -2 equal split
    ((5, 2), 1, (), 1),                    # one top: a copy
    ((3, 9, 1, 2), 1, (1, 2, 8), 4),       # slices of size 1 at both edges
]


@pytest.mark.parametrize("shape, axis, points, tops", CASES, ids=str)
def test_forward_matches_reference(shape, axis, points, tops):
    x = np.random.default_rng(0).standard_normal(shape)
    layer, b, t = build_layer(_proto(axis, points, tops=tops), [x])
    outs = forward(layer, b, t)
    for got, want in zip(outs, _reference(x, 1 if axis is None else axis, points, tops)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape, axis, points, tops", CASES[:5], ids=str)
def test_gradient(shape, axis, points, tops):
    x = np.random.default_rng(1).standard_normal(shape)
    check_gradients(_proto(axis, points, tops=tops), [x])


def test_legacy_slice_dim():
    x = np.random.default_rng(2).standard_normal((4, 3, 6))
    layer, b, t = build_layer(_proto(slice_dim=2, points=(2,)), [x])
    a, c = forward(layer, b, t)
    np.testing.assert_array_equal(a, x[:, :, :2])
    np.testing.assert_array_equal(c, x[:, :, 2:])


@pytest.mark.parametrize("tile", [1, 3, None])
def test_row_tiles(tile):
    x = np.random.default_rng(3).standard_normal((3, 5, 7))
    outs = []
    layer, b, t = build_layer(_proto(-1, (3,)), [x])
    layer.tile = tile
    outs = forward(layer, b, t)
    np.testing.assert_array_equal(outs[0], x[..., :3])
    np.testing.assert_array_equal(outs[1], x[..., 3:])
    t[0].diff[...] = 1
    t[1].diff[...] = 2
    layer.backward(t, [True], b)
    np.testing.assert_array_equal(b[0].diff, np.concatenate([np.ones((3, 5, 3)), 2 * np.ones((3, 5, 4))], -1))


def test_empty_batch_gives_empty_tops_and_gradient():
    x = np.zeros((0, 4, 3))
    layer, b, t = build_layer(_proto(1, (1,)), [x])
    outs = forward(layer, b, t)
    assert [o.shape for o in outs] == [(0, 1, 3), (0, 3, 3)]
    layer.backward(t, [True], b)
    assert b[0].diff.shape == (0, 4, 3)


def test_reshape_follows_the_bottom():
    layer, b, t = build_layer(_proto(0), [np.ones((4, 2))])
    b[0].reshape(6, 3)
    layer.reshape(b, t)
    assert t[0].shape == (3, 3) == t[1].shape


@pytest.mark.parametrize("proto, shape, match", [
    (_proto(1, (3,)), (2, 3), r"increase strictly.*top 1 would take \[3, 3\)"),
    (_proto(1, (2, 2), tops=3), (2, 5), "increase strictly"),
    (_proto(1, (1, 2)), (2, 5), "2 slice_point values for 2 tops"),
    (_proto(1, tops=3), (2, 5), "5 elements, which 3 tops cannot split"),
    (_proto(3), (2, 5), "axis 3 is out of range"),
    (_proto(axis=1, slice_dim=1), (2, 4), "not both"),
])
def test_errors(proto, shape, match):
    with pytest.raises(NetdefError, match=match):
        build_layer(proto, [np.ones(shape)])


def test_in_a_net_with_concat_round_trip():
    net = netdef.Net("""
      force_backward: true
      input: 'x' input_shape { dim: 2 dim: 5 dim: 3 }
      layer { name: 's' type: 'Slice' bottom: 'x' top: 'a' top: 'b' slice_param { slice_point: 2 } }
      layer { name: 'c' type: 'Concat' bottom: 'b' bottom: 'a' top: 'y' }
    """, netdef.TRAIN, dtype=np.float64)
    x = np.random.default_rng(4).standard_normal((2, 5, 3))
    y = net.forward(x=x)["y"]
    np.testing.assert_array_equal(y, np.concatenate([x[:, 2:], x[:, :2]], 1))


@pytest.mark.gpu
@pytest.mark.parametrize("shape, axis, points, tops", CASES, ids=str)
def test_gpu_matches_cpu(shape, axis, points, tops):
    x = np.random.default_rng(5).standard_normal(shape)
    compare_devices(_proto(axis, points, tops=tops), [x], num_tops=tops, rtol=0, atol=0)
