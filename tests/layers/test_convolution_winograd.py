"""The Winograd F(2x2, 3x3) and F(4x4, 3x3) paths of 3x3 stride-1 convolutions
(kernels/winograd.cu), against the im2col + GEMM reference: odd and tiny sizes (tiles cut by the
image's edge), pads 0 to 3 (pad >= kernel), batch > 1, float and double, the Deconvolution's
backward-data (which runs the same correlation), and the fusion epilogue after it."""
import numpy as np
import pytest

from gradcheck import build_layer
from netdef.layers.base_conv import BaseConvolutionLayer

from test_convolution import conv_param


@pytest.fixture(params=[2, 4], ids=["F2", "F4"])
def everywhere(request, monkeypatch):
    """Winograd F(2x2, 3x3) or F(4x4, 3x3) wherever it applies, however few channels and tiles."""
    monkeypatch.setattr(BaseConvolutionLayer, "winograd_tile", request.param)
    monkeypatch.setattr(BaseConvolutionLayer, "winograd_min_channels", 1)
    monkeypatch.setattr(BaseConvolutionLayer, "winograd_min_tiles", 1)
    monkeypatch.setattr(BaseConvolutionLayer, "winograd_min_work", 1)


def run(kind, shape, m, pad, bias, dtype, fast, monkeypatch, seed=3):
    monkeypatch.setattr(BaseConvolutionLayer, "fast_paths", fast)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    layer, b, t = build_layer(conv_param(kind, m, (3, 3), (1, 1), (pad, pad), (1, 1), 1, bias),
                              [x], dtype=dtype)
    for p in layer.blobs:
        p.data[...] = rng.standard_normal(p.shape)
    layer.forward(b, t)
    t[0].diff[...] = rng.standard_normal(t[0].shape)
    layer.backward(t, [True], b)
    return layer, [t[0].data.copy(), b[0].diff.copy()] + [p.diff.copy() for p in layer.blobs]


CASES = [((1, 2, 1, 1), 1, 1), ((2, 3, 5, 7), 4, 1), ((1, 5, 2, 9), 3, 0), ((3, 2, 6, 6), 5, 2),
         ((1, 4, 3, 4), 2, 3), ((2, 16, 13, 11), 17, 1), ((1, 8, 30, 1), 8, 1),
         ((1, 24, 17, 21), 9, 1), ((2, 7, 9, 8), 6, 4)]


@pytest.mark.parametrize("shape,m,pad", CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["Convolution", "Deconvolution"])
def test_matches_im2col(kind, shape, m, pad, dtype, everywhere, monkeypatch):
    if kind == "Convolution" and min(shape[2:]) + 2 * pad < 3:
        pytest.skip("the kernel does not fit")
    if kind == "Deconvolution" and min(shape[2:]) + 2 - 2 * pad < 1:
        pytest.skip("no output: the pad cuts more than the deconvolution makes")
    layer, fast = run(kind, shape, m, pad, True, dtype, True, monkeypatch)
    assert layer.winograd
    _, ref = run(kind, shape, m, pad, True, dtype, False, monkeypatch)
    # F(4x4)'s transforms scale values by up to 8 (A^T's last row) and mix 6 of them (B^T): its
    # float32 rounding errors are ~5x F(2x2)'s, still inside 1e-5 of the largest value
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for i, (a, r) in enumerate(zip(fast, ref)):
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * max(1.0, np.abs(r).max()), err_msg=f"array {i}")


@pytest.mark.parametrize("tile", [1, 5, 100, None], ids=["tile1-gpu", "tile5", "tile100", "cpu"])
def test_weight_transform_segments(tile, everywhere, monkeypatch):
    """wino_weight takes `tile` (o, c) pairs per iteration (one on the GPU) in blocks of 64: 11 x
    24 = 264 pairs cut into segments of 1, 5 and 100 (64 + 36) give the im2col forward."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 24, 9, 10))
    layers = []
    for fast in (True, False):
        monkeypatch.setattr(BaseConvolutionLayer, "fast_paths", fast)
        layer, b, t = build_layer(conv_param("Convolution", 11, (3, 3), (1, 1), (1, 1), (1, 1), 1, True), [x])
        layer.blobs[0].data[...] = np.random.default_rng(6).standard_normal(layer.blobs[0].shape)
        layer.tile = tile
        layer.forward(b, t)
        layers.append((layer, t[0].data.copy()))
    assert layers[0][0].winograd and not layers[1][0].winograd
    np.testing.assert_allclose(layers[0][1], layers[1][1], rtol=1e-12, atol=1e-12 * np.abs(layers[1][1]).max())


@pytest.mark.parametrize("cap", [1, 2, 7, 14, 100], ids=lambda c: f"cap{c}")
def test_bands(cap, everywhere, monkeypatch):
    """Bands keep V and M within the workspace bound: `cap` tile rows' worth of them (7 tile
    rows an image here with F(2x2), 4 with F(4x4)) gives bands of 1 and 2 tile rows (the last
    one shorter), whole images one at a time, two at a time (3 images: 2 + 1), all at once; each
    the im2col result."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 13, 11))
    w = rng.standard_normal((4, 5, 3, 3))
    outs = []
    for fast in (True, False):
        monkeypatch.setattr(BaseConvolutionLayer, "fast_paths", fast)
        layer, b, t = build_layer(conv_param("Convolution", 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True), [x])
        TH, TW = layer.tiles
        assert (TH, TW) == ((7, 6) if layer.wino_m == 2 else (4, 3))
        per_row = (layer.wino_m + 2) ** 2 * 5 * TW  # 16 or 36 max(Ci, Co) TW values per tile row
        monkeypatch.setattr(layer, "winograd_budget", cap * per_row / layer.backend.col_budget)
        bands = list(layer._winograd_bands(3))
        layer.blobs[0].data[...] = w
        layer.forward(b, t)
        outs.append(t[0].data.copy())
        if fast:
            assert layer.winograd
            assert sum(nb * rows for _, nb, _, rows in bands) == 3 * TH
            assert max(nb * rows for _, nb, _, rows in bands) == min(cap if cap < TH else cap // TH * TH, 3 * TH)
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-12, atol=1e-12 * np.abs(outs[1]).max())


def test_only_where_it_applies(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 32, 40, 40))
    checks = [((1, 1), (1, 1), 1, True), ((2, 2), (1, 1), 1, False), ((1, 1), (2, 2), 1, False),
              ((1, 1), (1, 1), 2, False)]
    for stride, dil, group, expect in checks:
        layer, _, _ = build_layer(conv_param("Convolution", 32, (3, 3), stride, (1, 1), dil, group, True), [x])
        assert layer.winograd == expect, (stride, dil, group)
    small, _, _ = build_layer(conv_param("Convolution", 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
                              [rng.standard_normal((1, 32, 8, 8))])
    assert not small.winograd  # 16 tiles: GEMMs too narrow for the transforms to pay


def test_cached_weight_transform_follows_the_weights(everywhere, monkeypatch):
    """A layer no backward can reach keeps its transformed weights between forwards and
    transforms again when the weights change in any way (here written in place, as
    net.params[...].data[...] = ... does): every forward gives the im2col result."""
    m = BaseConvolutionLayer.winograd_tile
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 20, 12, 12)).astype(np.float32)
    weights = [rng.standard_normal((24, 20, 3, 3)) for _ in range(2)]
    results = {}
    for fast in (True, False):
        monkeypatch.setattr(BaseConvolutionLayer, "fast_paths", fast)
        layer, b, t = build_layer(conv_param("Convolution", 24, (3, 3), (1, 1), (1, 1), (1, 1), 1, True), [x])
        layer.need_backward = False
        outs, calls = [], []
        if fast:
            assert layer.winograd and layer.wino_m == m
            own = layer.kernels
            kernels = own("winograd")

            class Counting:
                def __getattr__(self, attr):
                    fn = getattr(kernels, attr)
                    if attr != "wino_weight":
                        return fn
                    return lambda *args: (calls.append(1), fn(*args))[1]

            monkeypatch.setattr(layer, "kernels", lambda family: Counting() if family == "winograd" else own(family))
        for w in (weights[0], weights[0], weights[1], weights[1]):
            layer.blobs[0].data[...] = w
            layer.forward(b, t)
            outs.append(t[0].data.copy())
        results[fast] = outs
        if fast:
            assert len(calls) == 2  # the first forward and the one after the change
    for a, r in zip(results[True], results[False]):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5 * np.abs(r).max())


def test_f4_where_it_does_fewer_multiplies():
    """F(4x4, 3x3) where its tiles cover the image with little overhang (28 x 28, 41 x 41), F(2x2,
    3x3) where they overhang it (13 x 13, 14 x 14: 1.36 x fewer multiplies only)."""
    rng = np.random.default_rng(0)
    for side, m in ((28, 4), (41, 4), (13, 2), (14, 2), (56, 4)):
        layer, _, _ = build_layer(conv_param("Convolution", 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
                                  [rng.standard_normal((2, 128, side, side))])
        assert layer.winograd and layer.wino_m == m, side
