"""Deconvolution: forward against a direct scatter reference, the adjoint identity with
Convolution, gradients, FCN's frozen bilinear upsampling (group = channels), dense FCN weights
loaded into the grouped layer, errors, GPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.layers import base_conv
from test_convolution import conv_param

# (N, C, H, W, num_output, (kh, kw), (sh, sw), (ph, pw), (dh, dw), group, bias)
CONFIGS = [
    (2, 3, 5, 7, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),     # odd sizes
    (1, 2, 4, 5, 3, (4, 4), (2, 2), (1, 1), (1, 1), 1, True),     # 2x upsampling
    (2, 2, 3, 4, 2, (2, 2), (3, 3), (0, 0), (1, 1), 1, True),     # stride > kernel: gaps
    (1, 2, 5, 4, 3, (3, 3), (2, 3), (3, 3), (1, 1), 1, False),    # pad >= kernel
    (2, 3, 4, 5, 2, (3, 3), (1, 2), (2, 1), (2, 2), 1, True),     # dilation 2
    (1, 2, 5, 6, 3, (3, 2), (2, 1), (1, 0), (3, 4), 1, True),     # dilation 3 / 4, non-square
    (2, 4, 3, 4, 6, (3, 3), (2, 1), (1, 1), (1, 1), 2, True),     # group 2
    (1, 6, 4, 3, 9, (2, 3), (1, 2), (0, 1), (1, 1), 3, False),    # group 3, non-square
    (3, 5, 4, 3, 7, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),     # 1x1 (plain GEMM), batch 3
    (2, 4, 3, 3, 4, (1, 1), (2, 2), (0, 1), (1, 1), 2, True),     # 1x1 with stride
    (2, 3, 4, 5, 3, (4, 4), (2, 2), (1, 1), (1, 1), 3, True),     # depthwise (bilinear shape)
    (1, 2, 3, 2, 2, (5, 3), (3, 2), (1, 0), (2, 3), 2, False),    # depthwise, stride 3 dilated
    (2, 2, 2, 3, 2, (64, 64), (32, 32), (16, 0), (1, 1), 2, True),  # FCN-32s: stride 32, kernel 64
]
IDS = ["odd", "up2", "gaps", "pad>=k", "dil2", "dil34", "group2", "group3", "1x1", "1x1s2",
       "depthwise", "dw-dil", "fcn32"]


def reference_deconv(x, W, b, s, p, d, g):
    """Direct definition: every input pixel adds its weight-scaled kernel into the full output,
    which is then cropped by the pad on each side."""
    N, C, H, Wd = x.shape
    _, mg, kh, kw = W.shape
    cg = C // g
    FH, FW = s[0] * (H - 1) + d[0] * (kh - 1) + 1, s[1] * (Wd - 1) + d[1] * (kw - 1) + 1
    full = np.zeros((N, mg * g, FH, FW))
    for gi in range(g):
        for ki in range(kh):
            for kj in range(kw):
                h0, w0 = ki * d[0], kj * d[1]
                full[:, gi * mg:(gi + 1) * mg, h0:h0 + s[0] * (H - 1) + 1:s[0], w0:w0 + s[1] * (Wd - 1) + 1:s[1]] += \
                    np.einsum("nchw,cm->nmhw", x[:, gi * cg:(gi + 1) * cg], W[gi * cg:(gi + 1) * cg, :, ki, kj])
    y = full[:, :, p[0]:FH - p[0], p[1]:FW - p[1]]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y


def _build(cfg, fast=True, dtype=np.float64, seed=0):
    N, C, H, Wd, m, k, s, p, d, g, bias = cfg
    x = np.random.default_rng(seed).standard_normal((N, C, H, Wd))
    layer, bottom, top = build_layer(conv_param("Deconvolution", m, k, s, p, d, g, bias), [x], dtype=dtype)
    if not fast:
        layer.fast_paths = False
        layer.reshape(bottom, top)
    return layer, bottom, top, x


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
@pytest.mark.parametrize("fast,tile", [(True, None), (True, 1), (False, None), (False, 1)],
                         ids=["fast", "fast-tile1", "im2col", "im2col-tile1"])
@pytest.mark.parametrize("budget", ["whole", "rows"])
def test_deconvolution_forward_matches_reference(cfg, fast, tile, budget, monkeypatch):
    """tile 1 is how the GPU runs the kernels: one element per iteration."""
    if budget == "rows":
        monkeypatch.setattr(netdef.get_backend("cpu"), "col_budget", 1)
    layer, bottom, top, x = _build(cfg, fast=fast)
    layer.tile = tile
    (y,) = forward(layer, bottom, top)
    N, C, H, Wd, m, k, s, p, d, g, bias = cfg
    W = layer.blobs[0].data
    assert W.shape == (C, m // g) + k
    expected = reference_deconv(x, W, layer.blobs[1].data if bias else None, s, p, d, g)
    assert y.shape == expected.shape == (N, m, s[0] * (H - 1) + d[0] * (k[0] - 1) + 1 - 2 * p[0],
                                         s[1] * (Wd - 1) + d[1] * (k[1] - 1) + 1 - 2 * p[1])
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_deconvolution_gradients(cfg):
    N, C, H, Wd, m, k, s, p, d, g, bias = cfg
    x = np.random.default_rng(3).standard_normal((N, C, H, Wd))
    check_gradients(conv_param("Deconvolution", m, k, s, p, d, g, bias), [x], max_checks=120)


@pytest.mark.parametrize("cfg", [CONFIGS[5], CONFIGS[6], CONFIGS[10]], ids=["dil34", "group2", "depthwise"])
def test_deconvolution_gradients_im2col_path_in_row_bands(cfg, monkeypatch):
    monkeypatch.setattr(netdef.get_backend("cpu"), "col_budget", 1)
    monkeypatch.setattr(base_conv.BaseConvolutionLayer, "fast_paths", False)
    N, C, H, Wd, m, k, s, p, d, g, bias = cfg
    x = np.random.default_rng(4).standard_normal((N, C, H, Wd))
    check_gradients(conv_param("Deconvolution", m, k, s, p, d, g, bias), [x], max_checks=80)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_deconvolution_is_the_transpose_of_convolution(cfg):
    """<conv(u), v> == <u, deconv(v)> with the same weight array and no bias."""
    N, C, H, Wd, m, k, s, p, d, g, _ = cfg
    dec, db, dt, v = _build(cfg[:-1] + (False,))
    (up,) = forward(dec, db, dt)
    conv, cb, ct = build_layer(conv_param("Convolution", C, k, s, p, d, g, False), [np.zeros(up.shape)])
    conv.blobs[0].data[...] = dec.blobs[0].data
    u = np.random.default_rng(13).standard_normal(up.shape)
    cb[0].data[...] = u
    (down,) = forward(conv, cb, ct)
    assert down.shape == v.shape
    np.testing.assert_allclose(np.vdot(down, v), np.vdot(u, up), rtol=1e-10)


def _interp_matrix(in_size, u):
    """Linear interpolation of in_size samples at positions u (np.interp on unit vectors)."""
    eye = np.eye(in_size)
    return np.stack([np.interp(u, np.arange(in_size), eye[i]) for i in range(in_size)], axis=1)


@pytest.mark.parametrize("f", [2, 3, 32])
def test_frozen_bilinear_deconvolution_upsamples_as_bilinear_interpolation(f):
    C, H, W = 3, 4, 5
    k = 2 * f - f % 2
    net = netdef.Net(f"""
      force_backward: true
      layer {{ name: 'in' type: 'Input' top: 'x' input_param {{ shape {{ dim: 1 dim: {C} dim: {H} dim: {W} }} }} }}
      layer {{ name: 'up' type: 'Deconvolution' bottom: 'x' top: 'y' param {{ lr_mult: 0 }}
              convolution_param {{ num_output: {C} group: {C} kernel_size: {k} stride: {f} bias_term: false
                                   weight_filler {{ type: 'bilinear' }} }} }}
    """, netdef.TRAIN, dtype=np.float64)
    layer = net.layer_dict["up"]
    assert layer.path == "depthwise"
    yy, xx = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, W), indexing="ij")
    x = np.stack([np.sin(3 * yy + c) * np.cos(2 * xx - c) + c for c in range(C)])[None]
    net.blobs["x"].data[...] = x
    y = net.forward()["y"]
    OH, OW = f * (H - 1) + k, f * (W - 1) + k
    assert y.shape == (1, C, OH, OW)
    # output pixel Y samples the input at u = (Y + 1/2) / f - 1 (even f), (Y + 1) / f - 1 (odd f)
    shift = 0.5 if f % 2 == 0 else 1.0
    uh, uw = (np.arange(OH) + shift) / f - 1, (np.arange(OW) + shift) / f - 1
    ih, iw = (uh >= 0) & (uh <= H - 1), (uw >= 0) & (uw <= W - 1)
    Ah, Aw = _interp_matrix(H, uh), _interp_matrix(W, uw)
    expected = np.einsum("yh,chw,xw->cyx", Ah, x[0], Aw)
    assert ih.sum() == f * (H - 1) + f % 2 and iw.sum() == f * (W - 1) + f % 2
    np.testing.assert_allclose(y[0][:, ih][:, :, iw], expected[:, ih][:, :, iw], rtol=1e-12, atol=1e-12)
    # frozen: backward reaches the bottom (the adjoint of the upsampling), never the weights
    dy = np.random.default_rng(14).standard_normal(y.shape)
    net.clear_param_diffs()
    dx = net.backward(y=dy)["x"]
    assert not layer.param_needs_grad(0)
    assert not net.params["up"][0].diff.any()
    np.testing.assert_allclose(np.vdot(dx, x), np.vdot(dy, y), rtol=1e-10)


def test_grouped_deconvolution_loads_fcn_dense_bilinear_weights():
    """FCN's published caffemodels store the upsampling as an ungrouped (C, C, k, k) array with
    the bilinear kernel on the diagonal; the grouped layer takes its diagonal."""
    C, k = 4, 4
    text = f"""
      layer {{ name: 'in' type: 'Input' top: 'x' input_param {{ shape {{ dim: 1 dim: {C} dim: 3 dim: 3 }} }} }}
      layer {{ name: 'up' type: 'Deconvolution' bottom: 'x' top: 'y'
              convolution_param {{ num_output: {C} kernel_size: {k} stride: 2 bias_term: false GROUP }} }}"""
    dense_net = netdef.Net(text.replace("GROUP", ""), dtype=np.float64)
    from netdef.surgery import bilinear
    bilinear(dense_net)
    grouped = netdef.Net(text.replace("GROUP", f"group: {C}"), dtype=np.float64)
    grouped.copy_from(dense_net.to_proto())
    assert grouped.params["up"][0].data.shape == (C, 1, k, k)
    x = np.random.default_rng(15).standard_normal((1, C, 3, 3))
    dense_net.blobs["x"].data[...] = grouped.blobs["x"].data[...] = x
    np.testing.assert_allclose(grouped.forward()["y"], dense_net.forward()["y"], rtol=1e-12)
    # a dense array with weights across channels is refused with both shapes
    model = dense_net.to_proto()
    blob = model.layer[1].blobs[0]
    (blob.double_data if len(blob.double_data) else blob.data)[k * k] = 0.5  # W[0, 1, 0, 0]
    with pytest.raises(netdef.ShapeError, match=r"\(4, 1, 4, 4\).*\(4, 4, 4, 4\)"):
        grouped.copy_from(model)


@pytest.mark.parametrize("body,shape,match", [
    ("num_output: 2 kernel_size: 2 pad: 1", (1, 1, 1, 3), r"output size 0x2 is not positive .* \(1, 1, 3\)"),
    ("num_output: 2 kernel_size: 3 stride: 2 pad: 5", (1, 1, 2, 2), r"output size -5x-5"),
    ("num_output: 3 kernel_size: 2 group: 2", (1, 4, 3, 3), r"num_output 3 is not divisible by group 2"),
    ("num_output: 4 kernel_size: 2 group: 4", (1, 6, 3, 3), r"channels 6 is not divisible by group 4"),
    ("num_output: 1 kernel_size: 2 kernel_size: 2 kernel_size: 2", (1, 1, 2, 2), r"N-D convolution is not supported"),
    ("num_output: 1 kernel_size: 2", (1, 1, 2, 2, 2), r"N-D convolution"),
    ("num_output: 1 kernel_size: 0", (1, 1, 2, 2), r"kernel size must be > 0"),
    ("num_output: 1 kernel_size: 2 stride: 0", (1, 1, 2, 2), r"stride must be > 0"),
])
def test_deconvolution_errors(body, shape, match):
    with pytest.raises(netdef.NetdefError, match=match) as e:
        build_layer(f"name: 'up9' type: 'Deconvolution' convolution_param {{ {body} }}", [np.zeros(shape)])
    assert "up9" in str(e.value)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[5], CONFIGS[6], CONFIGS[8], CONFIGS[10], CONFIGS[11]],
                         ids=["up2", "dil34", "group2", "1x1", "depthwise", "dw-dil"])
def test_deconvolution_gpu_matches_cpu(cfg):
    N, C, H, Wd, m, k, s, p, d, g, bias = cfg
    x = np.random.default_rng(16).standard_normal((N, C, H, Wd))
    compare_devices(conv_param("Deconvolution", m, k, s, p, d, g, bias), [x], rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_fcn_upsampling_gpu_matches_cpu():
    """FCN-32s's last layer: 21 classes, group 21, kernel 64, stride 32, learned here (lr_mult 1)
    so that the weight gradient is compared too."""
    x = np.random.default_rng(17).standard_normal((2, 21, 6, 7))
    compare_devices("type: 'Deconvolution' convolution_param { num_output: 21 group: 21 kernel_size: 64 "
                    "stride: 32 bias_term: false weight_filler { type: 'bilinear' } }", [x],
                    rtol=1e-4, atol=1e-3)


@pytest.mark.gpu
def test_deconvolution_gpu_row_bands_im2col_path(monkeypatch):
    for device in ("cpu", "gpu"):
        monkeypatch.setattr(netdef.get_backend(device), "col_budget", 1)
    monkeypatch.setattr(base_conv.BaseConvolutionLayer, "fast_paths", False)
    x = np.random.default_rng(18).standard_normal((2, 4, 5, 6))
    compare_devices(conv_param("Deconvolution", 6, (4, 3), (2, 3), (1, 2), (2, 1), 2, True), [x],
                    dtype=np.float64, rtol=1e-10, atol=1e-10)
