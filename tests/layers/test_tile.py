"""Tile: forward against a numpy loop, gradients (the tiles' diffs sum), errors, GPU vs CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError


def _reference(x, axis, tiles):
    axis %= x.ndim
    outer = int(np.prod(x.shape[:axis]))
    flat = x.reshape(outer, -1)
    y = np.empty((outer, tiles, flat.shape[1]))
    for o in range(outer):
        for t in range(tiles):
            y[o, t] = flat[o]
    shape = list(x.shape)
    shape[axis] *= tiles
    return y.reshape(shape)


CASES = [((2, 3, 4), 1, 3), ((2, 3, 5), -1, 2), ((3, 2), 0, 4), ((1, 5, 1, 3), 2, 1),
         ((2, 3, 2, 3), -3, 5)]


@pytest.mark.parametrize("shape, axis, tiles", CASES, ids=str)
def test_forward_matches_reference(shape, axis, tiles):
    x = np.random.default_rng(0).standard_normal(shape)
    layer, b, t = build_layer(f"type: 'Tile' tile_param {{ axis: {axis} tiles: {tiles} }}", [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_array_equal(y, _reference(x, axis, tiles))
    if axis % x.ndim == x.ndim - 1:
        np.testing.assert_array_equal(y, np.tile(x, (1,) * (x.ndim - 1) + (tiles,)))


@pytest.mark.parametrize("shape, axis, tiles", CASES, ids=str)
def test_gradient(shape, axis, tiles):
    x = np.random.default_rng(1).standard_normal(shape)
    check_gradients(f"type: 'Tile' tile_param {{ axis: {axis} tiles: {tiles} }}", [x])


def test_default_axis_and_empty_batch():
    layer, b, t = build_layer("type: 'Tile' tile_param { tiles: 2 }", [np.zeros((0, 3))])
    (y,) = forward(layer, b, t)
    assert y.shape == (0, 6)
    layer.backward(t, [True], b)


@pytest.mark.parametrize("proto, match", [
    ("type: 'Tile'", "tiles must be given"),
    ("type: 'Tile' tile_param { tiles: 0 }", "must be > 0"),
    ("type: 'Tile' tile_param { tiles: 2 axis: 2 }", "axis 2 is out of range"),
])
def test_errors(proto, match):
    with pytest.raises(NetdefError, match=match):
        build_layer(proto, [np.ones((2, 3))])


@pytest.mark.gpu
@pytest.mark.parametrize("shape, axis, tiles", CASES, ids=str)
def test_gpu_matches_cpu(shape, axis, tiles):
    x = np.random.default_rng(2).standard_normal(shape)
    compare_devices(f"type: 'Tile' tile_param {{ axis: {axis} tiles: {tiles} }}", [x], rtol=1e-6)
