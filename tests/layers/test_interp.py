"""Interp (DeepLab) against a numpy bilinear reference with aligned corners, every way of
giving the size (zoom, shrink, both, height/width, a second bottom), cropping pads,
non-integer ratios, the finite-difference gradient, errors, GPU against CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import LayerSetupError, ShapeError


def reference(x, Ho, Wo, pad_beg=0, pad_end=0):
    N, C, H, W = x.shape
    win = x[:, :, -pad_beg:H + pad_end if pad_end else H, -pad_beg:W + pad_end if pad_end else W]
    Hi, Wi = win.shape[2:]
    y = np.zeros((N, C, Ho, Wo))
    rh = np.float32(Hi - 1) / np.float32(Ho - 1) if Ho > 1 else np.float32(0)
    rw = np.float32(Wi - 1) / np.float32(Wo - 1) if Wo > 1 else np.float32(0)
    for h in range(Ho):
        ph = np.float32(rh * np.float32(h))
        h0 = int(ph)
        lh = float(ph - np.float32(h0))
        h1 = min(h0 + 1, Hi - 1)
        for w in range(Wo):
            pw = np.float32(rw * np.float32(w))
            w0 = int(pw)
            lw = float(pw - np.float32(w0))
            w1 = min(w0 + 1, Wi - 1)
            y[:, :, h, w] = ((1 - lh) * ((1 - lw) * win[:, :, h0, w0] + lw * win[:, :, h0, w1])
                             + lh * ((1 - lw) * win[:, :, h1, w0] + lw * win[:, :, h1, w1]))
    return y


def proto(**kw):
    fields = " ".join(f"{k}: {v}" for k, v in kw.items())
    return f"name: 'interp' type: 'Interp' interp_param {{ {fields} }}"


X = np.random.default_rng(0).standard_normal((2, 3, 5, 7))


@pytest.mark.parametrize("params,size", [
    (dict(zoom_factor=3), (13, 19)),
    (dict(shrink_factor=2), (3, 4)),
    (dict(shrink_factor=2, zoom_factor=4), (9, 13)),
    (dict(height=8, width=10), (8, 10)),        # 5 -> 8, 7 -> 10: non-integer ratios
    (dict(height=3, width=4), (3, 4)),          # shrinking
    (dict(height=1, width=1), (1, 1)),
    (dict(zoom_factor=2, pad_beg=-1, pad_end=-1), (5, 9)),
])
def test_against_reference(params, size):
    layer, b, top = build_layer(proto(**params), [X])
    (y,) = forward(layer, b, top)
    assert y.shape == (2, 3) + size
    np.testing.assert_allclose(y, reference(X, *size, params.get("pad_beg", 0),
                                            params.get("pad_end", 0)), rtol=1e-12, atol=1e-14)
    if size[0] > 1:  # aligned corners
        np.testing.assert_allclose(y[..., 0, 0], X[..., -params.get("pad_beg", 0), -params.get("pad_beg", 0)])


def test_second_bottom_gives_size():
    ref = np.zeros((2, 1, 6, 11))
    layer, b, top = build_layer("type: 'Interp'", [X, ref])
    (y,) = forward(layer, b, top)
    np.testing.assert_allclose(y, reference(X, 6, 11), rtol=1e-12, atol=1e-14)
    check_gradients("type: 'Interp'", [X[:1, :2], ref[:1]], max_checks=30)


@pytest.mark.parametrize("params", [dict(height=8, width=10), dict(height=3, width=2),
                                    dict(zoom_factor=2, pad_beg=-1, pad_end=-2),
                                    dict(height=1, width=3)])
def test_gradient(params):
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 4))
    check_gradients(proto(**params), [x])


def test_errors():
    with pytest.raises(LayerSetupError, match="needs zoom_factor"):
        build_layer(proto(height=4), [X])
    with pytest.raises(LayerSetupError, match="<= 0"):
        build_layer(proto(zoom_factor=2, pad_beg=1), [X])
    with pytest.raises(LayerSetupError, match="ambiguous"):
        build_layer(proto(zoom_factor=2), [X, np.zeros((2, 1, 3, 3))])
    with pytest.raises(LayerSetupError, match="shrink_factor must be >= 1"):
        build_layer(proto(shrink_factor=0), [X])
    with pytest.raises(ShapeError, match="crop all"):
        build_layer(proto(zoom_factor=2, pad_beg=-3, pad_end=-3), [X])
    with pytest.raises(ShapeError, match="N x C x H x W"):
        build_layer(proto(zoom_factor=2), [X[0]])


@pytest.mark.gpu
def test_gpu_matches_cpu():
    compare_devices(proto(height=9, width=6, pad_beg=-1), [np.random.default_rng(2).standard_normal((2, 3, 6, 5))])


@pytest.mark.parametrize("params", [dict(zoom_factor=8), dict(shrink_factor=3), dict(height=61, width=2)])
def test_backward_is_the_adjoint(params):
    """<dy, A x> = <A^T dy, x> for DeepLab's 8x zoom and strong shrinks, where the gather's
    search range in the backward kernel is widest or narrowest."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 9, 11))
    layer, b, top = build_layer(proto(**params), [x])
    (y,) = forward(layer, b, top)
    dy = rng.standard_normal(y.shape)
    top[0].diff[...] = dy
    layer.backward(top, [True], b)
    np.testing.assert_allclose(np.sum(dy * y), np.sum(b[0].diff * x), rtol=1e-12)
