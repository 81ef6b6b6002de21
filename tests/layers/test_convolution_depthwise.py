"""The direct depthwise kernels (kernels/depthwise_conv.cu: group == input channels, with a
channel multiplier Co = mult Ci too) against the im2col + GEMM reference path and by finite
differences, in the CPU's form (whole rows per iteration, border/interior split, 3x3 taps in
registers) and the GPU's (one element per iteration, weight gradient in strided parts), for
Convolution and Deconvolution, float64 and float32."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward

from test_convolution import conv_param

# (N, C, H, W, num_output, (kh, kw), (sh, sw), (ph, pw), (dh, dw), group, bias); group == C
CONFIGS = [
    (1, 4, 9, 11, 4, (3, 3), (1, 1), (1, 1), (1, 1), 4, True),     # MobileNet's 3x3 s1
    (2, 3, 10, 9, 3, (3, 3), (2, 2), (1, 1), (1, 1), 3, False),    # 3x3 s2, odd width, batch 2
    (1, 8, 13, 35, 8, (3, 3), (1, 1), (1, 1), (1, 1), 8, True),    # rows of several vectors
    (2, 4, 14, 37, 4, (3, 3), (2, 2), (1, 1), (1, 1), 4, False),   # s2, rows of several vectors
    (2, 3, 7, 8, 6, (3, 3), (1, 1), (1, 1), (1, 1), 3, True),      # channel multiplier 2
    (1, 2, 11, 10, 6, (3, 3), (2, 2), (1, 1), (1, 1), 2, True),    # multiplier 3, stride 2
    (2, 2, 9, 10, 2, (3, 3), (3, 3), (1, 1), (1, 1), 2, True),     # stride 3
    (1, 3, 8, 9, 3, (2, 2), (3, 3), (0, 0), (1, 1), 3, True),      # stride > kernel
    (2, 2, 7, 6, 4, (3, 3), (1, 2), (2, 2), (2, 2), 2, False),     # dilation 2, multiplier 2
    (1, 3, 5, 6, 3, (3, 3), (1, 1), (3, 4), (1, 1), 3, True),      # pad >= kernel, stride 1
    (1, 2, 6, 7, 2, (3, 2), (2, 1), (3, 2), (1, 3), 2, True),      # pad >= kernel, dilation 3
    (1, 2, 6, 9, 2, (1, 5), (1, 1), (0, 2), (1, 1), 2, True),      # 1x5
    (2, 2, 9, 5, 4, (5, 1), (2, 1), (2, 0), (1, 1), 2, True),      # 5x1, multiplier 2
    (1, 2, 1, 7, 2, (1, 3), (1, 1), (0, 1), (1, 1), 2, True),      # a single row
    (1, 2, 6, 6, 2, (5, 5), (1, 1), (2, 2), (1, 1), 2, True),      # 5x5
    (3, 1, 6, 7, 1, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),      # one channel, group 1, batch 3
]
IDS = ["3x3s1", "3x3s2", "wide-s1", "wide-s2", "mult2", "mult3-s2", "s3", "s>k", "dil2-mult2",
       "pad>=k", "pad>=k-dil3", "1x5", "5x1-mult2", "one-row", "5x5", "one-channel"]

# Deconvolution: image side num_output channels (= group), column side C = mult group
DECONV = [
    (2, 3, 5, 6, 3, (4, 4), (2, 2), (1, 1), (1, 1), 3, True),      # FCN's bilinear upsampling
    (1, 2, 4, 5, 2, (3, 3), (1, 1), (1, 1), (1, 1), 2, False),     # stride 1: flipped forward
    (1, 4, 4, 3, 2, (3, 3), (1, 1), (0, 2), (2, 1), 2, True),      # multiplier 2, dilation
    (2, 6, 3, 4, 2, (5, 3), (3, 2), (1, 0), (1, 2), 2, True),      # multiplier 3, stride 3 / 2
]
DECONV_IDS = ["bilinear", "s1", "mult2-dil", "mult3-s3"]

# how a backend runs the kernels: the CPU's default (whole rows), row segments, and the GPU's
# one element per iteration with the weight gradient in strided parts
FORMS = {"cpu": (None, None), "segments": (5, None), "gpu": (1, 3)}


def _run(kind, cfg, fast, dtype=np.float64, form="cpu", monkeypatch=None):
    N, C, H, W, m, k, s, p, d, g, bias = cfg
    x = np.random.default_rng(0).standard_normal((N, C, H, W))
    layer, bottom, top = build_layer(conv_param(kind, m, k, s, p, d, g, bias), [x], dtype=dtype)
    tile, parts = FORMS[form]
    layer.tile = tile
    if parts is not None:
        monkeypatch.setattr(layer.backend, "reduce_parts", lambda rows, inner: parts)
    if not fast:
        layer.fast_paths = False
        layer.reshape(bottom, top)
    assert layer.path == ("depthwise" if fast else "im2col")
    (y,) = forward(layer, bottom, top)
    top[0].diff[...] = np.random.default_rng(1).standard_normal(top[0].shape)
    for b in layer.blobs:
        b.diff[...] = 0.5  # parameter gradients are added to what is there
    layer.backward(top, [True], bottom)
    return [y, bottom[0].diff.copy()] + [b.diff.copy() for b in layer.blobs]


def _compare(kind, cfg, form, monkeypatch, dtype, tol):
    got = _run(kind, cfg, True, dtype, form, monkeypatch)
    want = _run(kind, cfg, False)
    for name, a, b in zip(["top", "bottom diff", "weight diff", "bias diff"], got, want):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"{name} {cfg}")


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_depthwise_convolution_matches_im2col_path(cfg, form, monkeypatch):
    _compare("Convolution", cfg, form, monkeypatch, np.float64, 1e-10)


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("cfg", DECONV, ids=DECONV_IDS)
def test_depthwise_deconvolution_matches_im2col_path(cfg, form, monkeypatch):
    _compare("Deconvolution", cfg, form, monkeypatch, np.float64, 1e-10)


@pytest.mark.parametrize("cfg", CONFIGS[:6] + CONFIGS[9:10], ids=IDS[:6] + IDS[9:10])
def test_depthwise_float32_matches_float64_im2col_path(cfg, monkeypatch):
    _compare("Convolution", cfg, "cpu", monkeypatch, np.float32, 2e-4)


@pytest.mark.parametrize("kind,cfg", [("Convolution", c) for c in CONFIGS] +
                         [("Deconvolution", c) for c in DECONV], ids=IDS + DECONV_IDS)
def test_depthwise_gradients(kind, cfg):
    N, C, H, W, m, k, s, p, d, g, bias = cfg
    x = np.random.default_rng(3).standard_normal((N, C, H, W))
    check_gradients(conv_param(kind, m, k, s, p, d, g, bias), [x], max_checks=60)


def test_dispatch_by_shape():
    def path(cfg, kind="Convolution"):
        N, C, H, W, m, k, s, p, d, g, bias = cfg
        layer, _, _ = build_layer(conv_param(kind, m, k, s, p, d, g, bias), [np.zeros((N, C, H, W))])
        return layer.path

    assert path(CONFIGS[0]) == path(CONFIGS[4]) == path(CONFIGS[15]) == "depthwise"
    assert path(DECONV[2], "Deconvolution") == "depthwise"
    # an ordinary convolution of one input channel (LeNet's conv1) keeps its GEMM
    assert path((1, 1, 6, 7, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, True)) == "im2col"
    # grouped, not depthwise (AlexNet's group 2; two input channels per group)
    assert path((1, 4, 6, 7, 4, (3, 3), (1, 1), (1, 1), (1, 1), 2, True)) == "im2col"
    # group == output channels < input channels: a grouped reduction, not depthwise
    assert path((1, 4, 6, 7, 2, (3, 3), (1, 1), (1, 1), (1, 1), 2, True)) == "im2col"


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[5], CONFIGS[9]], ids=["3x3s2", "mult3-s2", "pad>=k"])
def test_depthwise_gpu_matches_cpu(cfg):
    N, C, H, W, m, k, s, p, d, g, bias = cfg
    x = np.random.default_rng(11).standard_normal((N, C, H, W))
    compare_devices(conv_param("Convolution", m, k, s, p, d, g, bias), [x], rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_depthwise_deconvolution_gpu_matches_cpu():
    N, C, H, W, m, k, s, p, d, g, bias = DECONV[3]
    x = np.random.default_rng(12).standard_normal((N, C, H, W))
    compare_devices(conv_param("Deconvolution", m, k, s, p, d, g, bias), [x], rtol=1e-4, atol=1e-4)
