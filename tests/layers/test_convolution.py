"""Convolution: forward against a direct per-tap einsum reference, gradients, fast paths against
the general im2col path, column-buffer chunking, dilation as a spread kernel, errors, GPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.layers import base_conv


# (N, C, H, W, num_output, (kh, kw), (sh, sw), (ph, pw), (dh, dw), group, bias)
CONFIGS = [
    (2, 3, 7, 9, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),     # odd sizes
    (1, 2, 8, 7, 3, (2, 2), (3, 3), (0, 0), (1, 1), 1, True),     # stride > kernel
    (2, 2, 5, 6, 3, (3, 3), (2, 1), (3, 4), (1, 1), 1, False),    # pad >= kernel
    (1, 3, 11, 10, 2, (3, 3), (1, 1), (2, 2), (2, 2), 1, True),   # dilation 2
    (2, 2, 13, 12, 3, (3, 2), (2, 1), (1, 0), (3, 4), 1, True),   # dilation 3 / 4, non-square
    (2, 4, 6, 7, 6, (3, 3), (1, 2), (1, 1), (1, 1), 2, True),     # group 2
    (1, 6, 7, 5, 9, (2, 3), (1, 1), (0, 1), (1, 1), 3, False),    # group 3, non-square
    (3, 5, 4, 6, 7, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),     # 1x1 (plain GEMM), batch 3
    (2, 4, 5, 5, 4, (1, 1), (2, 2), (1, 1), (1, 1), 2, True),     # 1x1 with stride and pad
    (2, 3, 6, 8, 3, (3, 3), (2, 2), (1, 1), (2, 1), 3, True),     # depthwise, dilated
    (1, 1, 9, 1, 2, (4, 1), (3, 1), (2, 0), (1, 1), 1, True),     # one column
    # "same" width (OW == W, im2col's one-copy rows) with taps further out than the image is wide
    (2, 2, 3, 2, 3, (3, 5), (1, 1), (1, 2), (1, 1), 1, True),
    # rows of >= 16 outputs at stride 2 and 4 (im2col's vectorized strided copy)
    (1, 2, 5, 41, 3, (3, 3), (2, 2), (1, 1), (1, 1), 1, True),
    (1, 1, 4, 70, 2, (3, 5), (1, 4), (0, 2), (1, 1), 1, True),
]
IDS = ["odd", "stride>k", "pad>=k", "dil2", "dil34", "group2", "group3", "1x1", "1x1s2",
       "depthwise", "column", "same-narrow", "wide-s2", "wide-s4"]


def random_configs(count, seed, max_group=3):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        g = int(rng.integers(1, max_group + 1))
        c, m = g * int(rng.integers(1, 3)), g * int(rng.integers(1, 3))
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        p = tuple(int(v) for v in rng.integers(0, 4, 2))
        d = tuple(int(v) for v in rng.integers(1, 4, 2))
        h, w = (int(v) for v in rng.integers(1, 10, 2))
        if h + 2 * p[0] < d[0] * (k[0] - 1) + 1 or w + 2 * p[1] < d[1] * (k[1] - 1) + 1:
            continue
        out.append((int(rng.integers(1, 4)), c, h, w, m, k, s, p, d, g, bool(rng.integers(0, 2))))
    return out


RANDOM = random_configs(8, 2024)


def conv_param(kind, m, k, s, p, d, g, bias, form=0):
    """Prototxt of a Convolution/Deconvolution; `form` picks how the pairs are spelled:
    0 repeated (one value when h == w), 1 repeated (always two), 2 the _h/_w fields."""
    def pair(name, v, default):
        if v == (default, default) and form != 1:
            return ""
        if form == 2 and name != "dilation":
            return f"{name}_h: {v[0]} {name}_w: {v[1]} "
        if v[0] == v[1] and form == 0:
            return f"{name}: {v[0]} "
        return f"{name}: {v[0]} {name}: {v[1]} "

    kern = (f"kernel_h: {k[0]} kernel_w: {k[1]} " if form == 2 else pair("kernel_size", k, None))
    return (f"name: 'c' type: '{kind}' convolution_param {{ num_output: {m} {kern}"
            f"{pair('stride', s, 1)}{pair('pad', p, 0)}{pair('dilation', d, 1)}"
            f"group: {g} bias_term: {str(bias).lower()} "
            "weight_filler { type: 'gaussian' std: 0.5 } bias_filler { type: 'uniform' min: -1 max: 1 } }")


def reference_conv(x, W, b, s, p, d, g):
    """Direct definition: per kernel tap, a strided window of the padded input times the tap's
    weights, summed (einsum over the group's channels)."""
    N, C, H, Wd = x.shape
    M, cg, kh, kw = W.shape
    OH = (H + 2 * p[0] - (d[0] * (kh - 1) + 1)) // s[0] + 1
    OW = (Wd + 2 * p[1] - (d[1] * (kw - 1) + 1)) // s[1] + 1
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    y = np.zeros((N, M, OH, OW))
    mg = M // g
    for gi in range(g):
        for ki in range(kh):
            for kj in range(kw):
                h0, w0 = ki * d[0], kj * d[1]
                win = xp[:, gi * cg:(gi + 1) * cg, h0:h0 + s[0] * (OH - 1) + 1:s[0],
                         w0:w0 + s[1] * (OW - 1) + 1:s[1]]
                y[:, gi * mg:(gi + 1) * mg] += np.einsum("nchw,mc->nmhw", win,
                                                         W[gi * mg:(gi + 1) * mg, :, ki, kj])
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


@pytest.fixture(params=["whole", "images", "rows"])
def chunking(request, monkeypatch):
    """Column-buffer budgets: all images at once, one image per chunk, bands of output rows.
    Returns a function that applies the budget to a built layer."""
    def apply(layer, bottom, top):
        if request.param == "whole":
            return
        per_image = max(layer.K * layer.L, layer.Co * layer.K // layer.group)
        monkeypatch.setattr(layer.backend, "col_budget", per_image if request.param == "images" else 1)
        layer.reshape(bottom, top)
        assert request.param != "images" or layer.images_per_chunk == 1
        assert request.param != "rows" or layer.rows_per_chunk == 1

    return apply


def _build(cfg, form=0, fast=True, dtype=np.float64, seed=0):
    N, C, H, Wd, m, k, s, p, d, g, bias = cfg
    x = np.random.default_rng(seed).standard_normal((N, C, H, Wd))
    param = conv_param("Convolution", m, k, s, p, d, g, bias, form)
    layer, bottom, top = build_layer(param, [x], dtype=dtype)
    if not fast:
        layer.fast_paths = False
        layer.reshape(bottom, top)
    return layer, bottom, top, x


@pytest.mark.parametrize("cfg", CONFIGS + RANDOM, ids=IDS + [f"rand{i}" for i in range(len(RANDOM))])
@pytest.mark.parametrize("fast,tile", [(True, None), (True, 1), (False, None), (False, 1)],
                         ids=["fast", "fast-tile1", "im2col", "im2col-tile1"])
def test_convolution_forward_matches_reference(cfg, fast, tile, chunking):
    """tile 1 is how the GPU runs the kernels: one element per iteration."""
    layer, bottom, top, x = _build(cfg, form=CONFIGS.index(cfg) % 3 if cfg in CONFIGS else 0, fast=fast)
    layer.tile = tile
    chunking(layer, bottom, top)
    (y,) = forward(layer, bottom, top)
    N, C, H, Wd, m, k, s, p, d, g, bias = cfg
    W = layer.blobs[0].data
    assert W.shape == (m, C // g) + k
    expected = reference_conv(x, W, layer.blobs[1].data if bias else None, s, p, d, g)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("tile", [1, 2, 5])
@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[4], CONFIGS[9], RANDOM[2], RANDOM[7]],
                         ids=["s3", "dil34", "depthwise", "r2", "r7"])
def test_column_tiles_give_the_same_results(cfg, tile):
    """im2col/col2im take `tile` columns per iteration (1 on the GPU): every tiling agrees."""
    runs = []
    for t in (None, tile):
        layer, bottom, top, x = _build(cfg, fast=cfg is CONFIGS[9])
        if t:
            layer.tile = t
        (y,) = forward(layer, bottom, top)
        top[0].diff[...] = np.random.default_rng(5).standard_normal(top[0].shape)
        for blob in layer.blobs:
            blob.diff[...] = 0
        layer.backward(top, [True], bottom)
        runs.append([y, bottom[0].diff.copy(), layer.blobs[0].diff.copy()])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_fast_paths_are_taken():
    assert _build(CONFIGS[7])[0].path == "1x1"
    assert _build(CONFIGS[9])[0].path == "depthwise"
    assert _build(CONFIGS[8])[0].path == "im2col"
    assert _build(CONFIGS[9], fast=False)[0].path == "im2col"


def test_float32_forward():
    layer, bottom, top, x = _build(CONFIGS[5], dtype=np.float32)
    (y,) = forward(layer, bottom, top)
    assert y.dtype == np.float32
    cfg = CONFIGS[5]
    expected = reference_conv(x, layer.blobs[0].data.astype(np.float64),
                              layer.blobs[1].data.astype(np.float64), *cfg[6:10])
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cfg", CONFIGS + RANDOM[:4], ids=IDS + [f"rand{i}" for i in range(4)])
def test_convolution_gradients(cfg):
    N, C, H, Wd, m, k, s, p, d, g, bias = cfg
    x = np.random.default_rng(3).standard_normal((N, C, H, Wd))
    check_gradients(conv_param("Convolution", m, k, s, p, d, g, bias), [x], max_checks=120)


@pytest.mark.parametrize("cfg", [CONFIGS[4], CONFIGS[5], CONFIGS[9]], ids=["dil34", "group2", "depthwise"])
def test_convolution_gradients_im2col_path_in_row_bands(cfg, monkeypatch):
    monkeypatch.setattr(netdef.get_backend("cpu"), "col_budget", 1)
    monkeypatch.setattr(base_conv.BaseConvolutionLayer, "fast_paths", False)
    N, C, H, Wd, m, k, s, p, d, g, bias = cfg
    x = np.random.default_rng(4).standard_normal((N, C, H, Wd))
    check_gradients(conv_param("Convolution", m, k, s, p, d, g, bias), [x], max_checks=80)


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[5], CONFIGS[7], CONFIGS[9]],
                         ids=["odd", "group2", "1x1", "depthwise"])
def test_backward_matches_im2col_path_and_accumulates_param_grads(cfg):
    """Fast paths against the general path for every gradient; param diffs are added to."""
    results = []
    for fast in (True, False):
        layer, bottom, top, x = _build(cfg, fast=fast)
        forward(layer, bottom, top)
        top[0].diff[...] = np.random.default_rng(5).standard_normal(top[0].shape)
        for blob in layer.blobs:
            blob.diff[...] = 1.0
        layer.backward(top, [True], bottom)
        results.append([bottom[0].diff.copy()] + [b.diff.copy() for b in layer.blobs])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    # the bias gradient plus the 1.0 already there
    dy = top[0].diff
    if cfg[-1]:
        np.testing.assert_allclose(results[0][2], 1.0 + dy.sum(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_dilated_kernel_equals_spread_kernel(d):
    """3x3 with dilation d == a (2d+1)x(2d+1) kernel holding the 3x3 taps every d-th place."""
    x = np.random.default_rng(6).standard_normal((2, 3, 15, 13))
    dil, b1, t1 = build_layer(conv_param("Convolution", 4, (3, 3), (2, 1), (d, d), (d, d), 1, True), [x])
    k = 2 * d + 1
    spread, b2, t2 = build_layer(conv_param("Convolution", 4, (k, k), (2, 1), (d, d), (1, 1), 1, True), [x])
    big = np.zeros((4, 3, k, k))
    big[:, :, ::d, ::d] = dil.blobs[0].data
    spread.blobs[0].data[...] = big
    spread.blobs[1].data[...] = dil.blobs[1].data
    (y1,), (y2,) = forward(dil, b1, t1), forward(spread, b2, t2)
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-12)


def test_parameter_spellings_agree():
    x = np.random.default_rng(7).standard_normal((1, 2, 9, 8))
    outs = []
    for form in (0, 1, 2):
        layer, b, t = build_layer(conv_param("Convolution", 3, (3, 2), (2, 1), (1, 2), (1, 1), 1, True,
                                             form), [x])
        outs.append(forward(layer, b, t)[0])
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_several_bottoms_share_the_weights():
    rng = np.random.default_rng(8)
    x1, x2 = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((2, 3, 5, 5))
    param = conv_param("Convolution", 2, (3, 3), (1, 1), (1, 1), (1, 1), 1, True) + " top: 'a' top: 'b'"
    layer, b, t = build_layer(param, [x1, x2])
    y1, y2 = forward(layer, b, t)
    W, bias = layer.blobs[0].data, layer.blobs[1].data
    np.testing.assert_allclose(y1, reference_conv(x1, W, bias, (1, 1), (1, 1), (1, 1), 1), atol=1e-12)
    np.testing.assert_allclose(y2, reference_conv(x2, W, bias, (1, 1), (1, 1), (1, 1), 1), atol=1e-12)
    check_gradients(param, [x1, x2], max_checks=40)


def test_reshape_follows_the_bottom():
    layer, bottom, top, x = _build(CONFIGS[0])
    bottom[0].reshape(3, 3, 10, 4)
    layer.reshape(bottom, top)
    assert top[0].shape == (3, 4, 10, 4)
    x2 = np.random.default_rng(9).standard_normal((3, 3, 10, 4))
    bottom[0].data[...] = x2
    (y,) = forward(layer, bottom, top)
    np.testing.assert_allclose(y, reference_conv(x2, layer.blobs[0].data, layer.blobs[1].data,
                                                 (1, 1), (1, 1), (1, 1), 1), atol=1e-12)


def test_frozen_weights_get_no_gradient_in_a_net():
    net = netdef.Net("""
      force_backward: true
      layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 1 dim: 2 dim: 5 dim: 5 } } }
      layer { name: 'c' type: 'Convolution' bottom: 'x' top: 'y' param { lr_mult: 0 } param { lr_mult: 1 }
              convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: 'xavier' } } }
    """, netdef.TRAIN, dtype=np.float64)
    net.blobs["x"].data[...] = 1.0
    net.forward()
    net.clear_param_diffs()
    net.backward(y=np.ones((1, 3, 3, 3)))
    assert not net.params["c"][0].diff.any()
    np.testing.assert_allclose(net.params["c"][1].diff, 9.0)


def _err(param, shape, match, cls=netdef.NetdefError):
    with pytest.raises(cls, match=match) as e:
        build_layer(param, [np.zeros(shape)])
    return e.value


@pytest.mark.parametrize("body,shape,match", [
    ("num_output: 2 kernel_size: 5", (1, 1, 3, 3), r"kernel extent 5x5 .* larger than the padded input 3x3"),
    ("num_output: 2 kernel_size: 3 dilation: 3", (1, 1, 5, 9), r"kernel extent 7x7 .* padded input 5x9"),
    ("num_output: 2 kernel_h: 3 kernel_w: 9 pad: 1", (1, 1, 6, 6), r"9x9 .*larger than the padded input 8x8|extent 3x9"),
    ("num_output: 3 kernel_size: 1 group: 2", (1, 4, 3, 3), r"num_output 3 is not divisible by group 2"),
    ("num_output: 4 kernel_size: 1 group: 2", (1, 3, 3, 3), r"channels 3 is not divisible by group 2.*\(1, 3, 3, 3\)"),
    ("num_output: 0 kernel_size: 1", (1, 1, 3, 3), r"num_output must be set and > 0"),
    ("kernel_size: 1", (1, 1, 3, 3), r"num_output must be set"),
    ("num_output: 1 kernel_size: 0", (1, 1, 3, 3), r"kernel size must be > 0"),
    ("num_output: 1 kernel_size: 1 stride: 0", (1, 1, 3, 3), r"stride must be > 0"),
    ("num_output: 1 kernel_size: 1 dilation: 0", (1, 1, 3, 3), r"dilation must be > 0"),
    ("num_output: 1 kernel_size: 1 group: 0", (1, 1, 3, 3), r"group must be > 0"),
    ("num_output: 1", (1, 1, 3, 3), r"needs kernel_size or kernel_h and kernel_w"),
    ("num_output: 1 kernel_size: 3 kernel_size: 3 kernel_size: 3", (1, 1, 3, 3, 3), r"N-D convolution is not supported"),
    ("num_output: 1 kernel_size: 3", (1, 1, 3, 3, 3), r"\(1, 1, 3, 3, 3\): N-D convolution"),
    ("num_output: 1 kernel_size: 3", (4, 5), r"4-D bottom .* \(4, 5\)"),
    ("num_output: 1 kernel_size: 1", (1, 1, 0, 3), r"zero size"),
    ("num_output: 1 kernel_size: 3 kernel_h: 3 kernel_w: 3", (1, 1, 3, 3), r"either kernel_size or kernel_h/kernel_w"),
    ("num_output: 1 kernel_h: 3", (1, 1, 3, 3), r"kernel_h and kernel_w must be given together"),
    ("num_output: 1 kernel_size: 1 stride: 1 stride_h: 2 stride_w: 2", (1, 1, 3, 3), r"either stride or stride_h"),
    ("num_output: 1 kernel_size: 1 pad: 1 pad_h: 1", (1, 1, 3, 3), r"either pad or pad_h"),
    ("num_output: 1 kernel_size: 1 axis: 2", (1, 1, 3, 3), r"axis 2"),
])
def test_convolution_errors(body, shape, match):
    e = _err(f"name: 'conv9' type: 'Convolution' convolution_param {{ {body} }}", shape, match)
    assert "conv9" in str(e)


def test_channel_change_after_setup_is_an_error():
    layer, bottom, top, x = _build(CONFIGS[0])
    bottom[0].reshape(2, 4, 7, 9)
    with pytest.raises(netdef.ShapeError, match=r"4 channels; the weights \(4, 3, 3, 3\) were made for 3"):
        layer.reshape(bottom, top)


def test_grouped_layer_loads_dense_block_diagonal_weights():
    layer, bottom, top, x = _build(CONFIGS[5])  # 6 outputs, 4 channels, group 2
    dense = np.zeros((6, 4, 3, 3))
    blocks = np.random.default_rng(10).standard_normal((2, 3, 2, 3, 3))
    dense[:3, :2], dense[3:, 2:] = blocks[0], blocks[1]
    np.testing.assert_array_equal(layer.adapt_param(0, dense), blocks.reshape(6, 2, 3, 3))
    dense[0, 3, 0, 0] = 1.0  # a weight across groups cannot be represented
    assert layer.adapt_param(0, dense) is None
    assert layer.adapt_param(0, np.zeros((6, 4, 3, 2))) is None


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[4], CONFIGS[5], CONFIGS[7], CONFIGS[9]],
                         ids=["odd", "dil34", "group2", "1x1", "depthwise"])
def test_convolution_gpu_matches_cpu(cfg):
    N, C, H, Wd, m, k, s, p, d, g, bias = cfg
    x = np.random.default_rng(11).standard_normal((N, C, H, Wd))
    compare_devices(conv_param("Convolution", m, k, s, p, d, g, bias), [x], rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_convolution_gpu_float64_im2col_path(monkeypatch):
    monkeypatch.setattr(base_conv.BaseConvolutionLayer, "fast_paths", False)
    x = np.random.default_rng(12).standard_normal((3, 6, 17, 15))
    compare_devices(conv_param("Convolution", 9, (3, 5), (2, 1), (2, 3), (2, 1), 3, True), [x],
                    dtype=np.float64, rtol=1e-10, atol=1e-10)
