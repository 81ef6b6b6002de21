"""Crop: Caffe's top-left crop to the reference bottom's shape from `axis` on, offsets none / one /
per axis, against numpy slicing; gradients (zero outside the window, none to the reference),
errors naming the layer, shapes and offsets; FCN's alignment crop; GPU against CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError


def crop_ref(x, ref_shape, axis, offsets):
    axis = axis % x.ndim
    n = x.ndim - axis
    offs = offsets * n if len(offsets) == 1 else (offsets or [0] * n)
    idx = tuple(slice(None) for _ in range(axis)) + tuple(
        slice(o, o + s) for o, s in zip(offs, ref_shape[axis:]))
    return x[idx]


def proto(axis=None, offsets=()):
    fields = (f"axis: {axis} " if axis is not None else "") + "".join(f"offset: {o} " for o in offsets)
    return f"name: 'crop' type: 'Crop' crop_param {{ {fields}}}"


CASES = [  # (bottom shape, reference shape, axis, offsets)
    ((2, 3, 9, 8), (2, 3, 5, 4), None, []),          # default axis 2, offset 0: top-left corner
    ((2, 3, 9, 8), (1, 1, 5, 4), None, [3]),         # one offset for both spatial axes
    ((2, 3, 9, 8), (7, 7, 5, 6), 2, [4, 1]),         # per axis; ref's leading axes do not matter
    ((3, 5, 7, 6), (3, 2, 4, 6), 1, [1, 2, 0]),      # from axis 1
    ((4, 3, 5), (2, 3, 3), 0, [1, 0, 2]),            # from axis 0, 3-D
    ((2, 3, 7, 6), (2, 3, 7, 5), -1, [1]),           # negative axis: only the last one
    ((1, 2, 6, 6), (1, 2, 6, 6), 2, [0]),            # same size: a copy
]


@pytest.mark.parametrize("src, ref, axis, offs", CASES)
def test_forward_matches_slicing(src, ref, axis, offs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(src)
    layer, b, t = build_layer(proto(axis, offs), [x, np.zeros(ref)])
    (y,) = forward(layer, b, t)
    expect = crop_ref(x, ref, 2 if axis is None else axis, offs)
    assert y.shape == expect.shape
    np.testing.assert_array_equal(y, expect)


@pytest.mark.parametrize("src, ref, axis, offs", CASES)
def test_gradient(src, ref, axis, offs):
    x = np.random.default_rng(1).standard_normal(src)
    check_gradients(proto(axis, offs), [x, np.zeros(ref)], max_checks=120)


def test_backward_is_zero_outside_the_window_and_the_reference_gets_nothing():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 7, 9))
    layer, b, t = build_layer(proto(2, [2, 3]), [x, np.zeros((2, 2, 4, 5))])
    forward(layer, b, t)
    dy = rng.standard_normal(t[0].shape)
    t[0].diff[...] = dy
    b[1].diff[...] = np.nan
    layer.backward(t, [True, True], b)
    expect = np.zeros_like(x)
    expect[:, :, 2:6, 3:8] = dy
    np.testing.assert_array_equal(b[0].diff, expect)
    np.testing.assert_array_equal(b[1].diff, 0)
    assert layer.allow_backward(0) and not layer.allow_backward(1)


@pytest.mark.parametrize("tile", [1, 2, 3, 7, None], ids=["tile1-gpu", "tile2", "tile3", "tile7", "cpu"])
@pytest.mark.parametrize("src, ref, axis, offs", CASES + [((1, 2, 5, 300), (1, 2, 3, 100), 2, [1, 150])])
def test_row_tiles_forward_and_backward(src, ref, axis, offs, tile):
    """The kernels take `tile` elements of a row per iteration (1 on the GPU): every tiling,
    with segments wholly before, across and after the window, gives slicing's result, and
    backward writes every element of dx (zeros outside the window)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(src)
    layer, b, t = build_layer(proto(axis, offs), [x, np.zeros(ref)])
    layer.tile = tile
    (y,) = forward(layer, b, t)
    ax = 2 if axis is None else axis
    np.testing.assert_array_equal(y, crop_ref(x, ref, ax, offs))
    dy = rng.standard_normal(t[0].shape)
    t[0].diff[...] = dy
    b[0].diff[...] = np.nan
    layer.backward(t, [True, False], b)
    expect = np.zeros_like(x)
    crop_ref(expect, ref, ax, offs)[...] = dy
    np.testing.assert_array_equal(b[0].diff, expect)


def test_fcn32s_crop_offset_19():
    # FCN-32s on a 500 x 500 image: upscore is 1 x 21 x 544 x 544, cropped at 19 to the data
    rng = np.random.default_rng(3)
    up = rng.standard_normal((1, 3, 544, 544)).astype(np.float32)
    layer, b, t = build_layer(proto(2, [19]), [up, np.zeros((1, 3, 500, 500))], dtype=np.float32)
    (y,) = forward(layer, b, t)
    np.testing.assert_array_equal(y, up[:, :, 19:519, 19:519])


def test_reshape_follows_the_bottoms():
    rng = np.random.default_rng(4)
    layer, b, t = build_layer(proto(2, [1]), [rng.standard_normal((1, 2, 6, 6)), np.zeros((1, 2, 3, 3))])
    x = rng.standard_normal((2, 2, 9, 7))
    b[0].reshape(x.shape)
    b[0].data[...] = x
    b[1].reshape((2, 2, 5, 4))
    layer.reshape(b, t)
    (y,) = forward(layer, b, t)
    np.testing.assert_array_equal(y, x[:, :, 1:6, 1:5])


def test_crop_larger_than_the_input_is_an_error():
    with pytest.raises(NetdefError, match=r"layer 'crop'.*cannot crop bottom\[0\] \(1, 3, 5, 5\) to "
                                          r"bottom\[1\] \(1, 3, 6, 5\).*offsets \[0, 0\].*axis 2"):
        build_layer(proto(), [np.zeros((1, 3, 5, 5)), np.zeros((1, 3, 6, 5))])


def test_offset_out_of_range_is_an_error():
    with pytest.raises(NetdefError, match=r"offsets \[2, 3\]: on axis 3, offset 3 \+ size 4 exceeds 6"):
        build_layer(proto(2, [2, 3]), [np.zeros((1, 1, 6, 6)), np.zeros((1, 1, 4, 4))])


def test_wrong_number_of_offsets_is_an_error():
    with pytest.raises(NetdefError, match="3 offset values for 2 cropped axes"):
        build_layer(proto(2, [1, 1, 1]), [np.zeros((1, 1, 6, 6)), np.zeros((1, 1, 4, 4))])


def test_different_number_of_axes_is_an_error():
    with pytest.raises(NetdefError, match=r"bottom\[0\] \(1, 1, 6, 6\) and bottom\[1\] \(1, 6, 6\)"):
        build_layer(proto(), [np.zeros((1, 1, 6, 6)), np.zeros((1, 6, 6))])


def test_axis_out_of_range_is_an_error():
    with pytest.raises(NetdefError, match="axis 4 is out of range"):
        build_layer(proto(4), [np.zeros((1, 1, 6, 6)), np.zeros((1, 1, 4, 4))])


def test_in_a_net_only_bottom0_gets_a_gradient():
    net = netdef.Net("""force_backward: true
        input: 'x' input_shape { dim: 1 dim: 2 dim: 6 dim: 7 }
        input: 'r' input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }
        layer { name: 'c' type: 'Crop' bottom: 'x' bottom: 'r' top: 'y' crop_param { offset: 1 offset: 2 } }""")
    x = np.random.default_rng(5).standard_normal((1, 2, 6, 7)).astype(np.float32)
    out = net.forward(x=x, r=np.zeros((1, 2, 3, 3), np.float32))
    np.testing.assert_array_equal(out["y"], x[:, :, 1:4, 2:5])
    dy = np.ones((1, 2, 3, 3), np.float32)
    diffs = net.backward(y=dy)
    assert diffs["x"][:, :, 1:4, 2:5].sum() == 18 and diffs["x"].sum() == 18


@pytest.mark.gpu
@pytest.mark.parametrize("src, ref, axis, offs", CASES[:5])
def test_gpu_matches_cpu(src, ref, axis, offs):
    x = np.random.default_rng(6).standard_normal(src)
    compare_devices(proto(axis, offs), [x, np.zeros(ref)], rtol=0, atol=0)
