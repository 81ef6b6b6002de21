"""LRN: ACROSS_CHANNELS and WITHIN_CHANNEL against numpy references written here (loops over
the window; WITHIN_CHANNEL also as Caffe's sub-net: square, zero-padded average pool,
Power(shift 1), product), gradient checks, errors, GPU against CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError


def f32(v):
    return float(np.float32(v))


def lrn_across_ref(x, size, alpha, beta, k):
    N, C, H, W = x.shape
    half = (size - 1) // 2
    y = np.empty_like(x)
    for c in range(C):
        lo, hi = max(0, c - half), min(C - 1, c + half)
        s = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        y[:, c] = x[:, c] * (k + alpha / size * s) ** -beta
    return y


def lrn_within_ref(x, size, alpha, beta):
    N, C, H, W = x.shape
    half = (size - 1) // 2
    y = np.empty_like(x)
    for h in range(H):
        for w in range(W):
            win = x[:, :, max(0, h - half):h + half + 1, max(0, w - half):w + half + 1]
            s = (win ** 2).sum(axis=(2, 3))
            y[:, :, h, w] = x[:, :, h, w] * (1 + alpha / size ** 2 * s) ** -beta
    return y


def lrn_within_as_caffe_subnet(x, size, alpha, beta):
    """square -> AVE pooling (kernel size, stride 1, pad half; Caffe divides by size^2 here since
    every window fits in the padded input) -> Power(power -beta, scale alpha, shift 1) -> x *."""
    half = (size - 1) // 2
    sq = np.pad(x * x, ((0, 0), (0, 0), (half, half), (half, half)))
    H, W = x.shape[2:]
    pooled = np.zeros_like(x)
    for dh in range(size):
        for dw in range(size):
            pooled += sq[:, :, dh:dh + H, dw:dw + W]
    pooled /= size * size
    return x * (1 + alpha * pooled) ** -beta


CONFIGS = [  # (shape, local_size, alpha, beta, k)
    ((2, 7, 3, 5), 5, 1e-1, 0.75, 1.0),
    ((1, 1, 4, 4), 3, 2.0, 0.5, 2.0),
    ((3, 4, 1, 1), 7, 0.5, 1.25, 0.5),   # window wider than the channels / the image
    ((2, 5, 6, 3), 1, 0.3, 0.75, 1.5),
    ((1, 96, 5, 5), 5, 1e-4, 0.75, 1.0),  # CaffeNet's norm1 parameters
]


def _proto(size, alpha, beta, k, region):
    return (f"type: 'LRN' lrn_param {{ local_size: {size} alpha: {alpha} beta: {beta} k: {k} "
            f"norm_region: {region} }}")


@pytest.mark.parametrize("shape, size, alpha, beta, k", CONFIGS)
def test_across_channels_forward(shape, size, alpha, beta, k):
    x = np.random.default_rng(0).standard_normal(shape) * 2
    layer, b, t = build_layer(_proto(size, alpha, beta, k, "ACROSS_CHANNELS"), [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, lrn_across_ref(x, size, f32(alpha), f32(beta), f32(k)), rtol=1e-12)


@pytest.mark.parametrize("shape, size, alpha, beta, k", CONFIGS)
def test_within_channel_forward(shape, size, alpha, beta, k):
    x = np.random.default_rng(1).standard_normal(shape) * 2
    layer, b, t = build_layer(_proto(size, alpha, beta, k, "WITHIN_CHANNEL"), [x])
    (y,) = forward(layer, b, t)
    a, be = f32(alpha), f32(beta)
    np.testing.assert_allclose(y, lrn_within_ref(x, size, a, be), rtol=1e-12)
    np.testing.assert_allclose(y, lrn_within_as_caffe_subnet(x, size, a, be), rtol=1e-12)


def test_defaults_are_caffes():
    x = np.random.default_rng(2).standard_normal((2, 6, 3, 3))
    layer, b, t = build_layer("type: 'LRN'", [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, lrn_across_ref(x, 5, 1.0, 0.75, 1.0), rtol=1e-12)


def test_within_channel_ignores_k_as_caffe_does():
    x = np.random.default_rng(3).standard_normal((1, 2, 4, 5))
    outs = []
    for k in (1.0, 7.0):
        layer, b, t = build_layer(_proto(3, 0.5, 0.75, k, "WITHIN_CHANNEL"), [x])
        outs.append(forward(layer, b, t)[0])
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
@pytest.mark.parametrize("shape, size, alpha, beta, k", CONFIGS[:4])
def test_gradient(region, shape, size, alpha, beta, k):
    x = np.random.default_rng(4).standard_normal(shape)
    check_gradients(_proto(size, alpha, beta, k, region), [x], max_checks=60)


def test_gradient_large_alpha():
    # a strongly normalizing layer: the cross terms dominate the gradient
    x = np.random.default_rng(5).standard_normal((2, 4, 3, 3))
    for region in ("ACROSS_CHANNELS", "WITHIN_CHANNEL"):
        check_gradients(_proto(3, 5.0, 1.5, 0.5, region), [x], max_checks=40)


def test_float32_matches_float64():
    x = np.random.default_rng(6).standard_normal((2, 8, 5, 5))
    for region in ("ACROSS_CHANNELS", "WITHIN_CHANNEL"):
        outs = []
        for dt in (np.float32, np.float64):
            layer, b, t = build_layer(_proto(5, 1e-2, 0.75, 1, region), [x], dtype=dt)
            outs.append(forward(layer, b, t)[0])
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("beta", [0.75, 0.5, 1.0, 0.6])  # the square-root forms and pow
def test_across_channels_row_segments(beta):
    """The CPU takes row segments (one position per iteration on the GPU) in blocks of ND_LANES
    (64): segments of 1, 5 and 70 positions over 9 x 13 = 117-long planes give the reference's
    forward, and backwards equal to one another's and to the finite difference's."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 6, 9, 13)) * 2
    dy = rng.standard_normal(x.shape)
    proto = _proto(5, 0.5, beta, 1.5, "ACROSS_CHANNELS")
    grads = []
    for tile in (None, 1, 5, 70):
        layer, b, t = build_layer(proto, [x])
        layer.tile = tile
        (y,) = forward(layer, b, t)
        np.testing.assert_allclose(y, lrn_across_ref(x, 5, 0.5, f32(beta), 1.5), rtol=1e-12)
        t[0].diff[...] = dy
        layer.backward(t, [True], b)
        grads.append(np.array(b[0].diff))
    for g in grads[1:]:
        np.testing.assert_allclose(g, grads[0], rtol=1e-12, atol=1e-15)
    check_gradients(proto, [x[:1, :, :3]], max_checks=40)


def test_even_local_size_is_an_error():
    with pytest.raises(NetdefError, match="local_size must be odd.*4"):
        build_layer("type: 'LRN' lrn_param { local_size: 4 }", [np.ones((1, 3, 2, 2))])


def test_non_4d_bottom_is_an_error():
    with pytest.raises(NetdefError, match=r"\(2, 3, 4\) is not 4-D"):
        build_layer("type: 'LRN'", [np.ones((2, 3, 4))])


def test_in_place_is_refused_in_a_net():
    with pytest.raises(NetdefError, match="LRN cannot compute top 'x' in place"):
        netdef.Net("""input: 'x' input_shape { dim: 1 dim: 3 dim: 2 dim: 2 }
                      layer { name: 'n' type: 'LRN' bottom: 'x' top: 'x' }""")


def test_reshape_follows_the_bottom():
    rng = np.random.default_rng(7)
    layer, b, t = build_layer("type: 'LRN' lrn_param { local_size: 3 }", [rng.standard_normal((1, 3, 2, 2))])
    x = rng.standard_normal((2, 5, 3, 4))
    b[0].reshape(x.shape)
    b[0].data[...] = x
    layer.reshape(b, t)
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, lrn_across_ref(x, 3, 1.0, 0.75, 1.0), rtol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_gpu_matches_cpu(region):
    x = np.random.default_rng(8).standard_normal((2, 16, 13, 11))
    compare_devices(_proto(5, 1e-1, 0.75, 2, region), [x], rtol=2e-4, atol=1e-5)
