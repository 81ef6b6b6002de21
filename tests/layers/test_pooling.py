"""Pooling: Caffe's output-size rule (ceil, the padded-last-window clip, FLOOR, global), MAX with
its mask, AVE with Caffe's padded divisor, STOCHASTIC (TRAIN draws, TEST weighted average)
against numpy loop references written here; gradient checks, errors, FCN's VGG16 pool sizes,
GPU against CPU."""
import math
import os

import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from google.protobuf import text_format

from netdef import coord_map, proto
from netdef import netdef_pb2 as pb
from netdef.errors import NetdefError
from netdef.layers.pooling import pooled_size

FLT_MIN = float(np.finfo(np.float32).tiny)


def caffe_out(size, k, s, p, ceil=True, any_pad=None):
    """Caffe's rule, written from its description (float division then ceil/floor)."""
    q = (size + 2 * p - k) / s
    out = int(math.ceil(q) if ceil else math.floor(q)) + 1
    if (p > 0 if any_pad is None else any_pad) and (out - 1) * s >= size + p:
        out -= 1
    return out


def windows(H, W, PH, PW, k, s, p):
    """For every output (a, b): the clipped row/col ranges in the image and the padded-plane size."""
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    for a in range(PH):
        for b in range(PW):
            h0, w0 = a * sh - ph, b * sw - pw
            size = (min(h0 + kh, H + ph) - h0) * (min(w0 + kw, W + pw) - w0)
            yield a, b, range(max(h0, 0), min(h0 + kh, H)), range(max(w0, 0), min(w0 + kw, W)), size


def pool_ref(x, k, s, p, out_hw, method):
    N, C, H, W = x.shape
    PH, PW = out_hw
    y = np.zeros((N, C, PH, PW))
    mask = np.full((N, C, PH, PW), -1.0)
    for n in range(N):
        for c in range(C):
            for a, b, rows, cols, size in windows(H, W, PH, PW, k, s, p):
                if not rows or not cols:
                    continue
                if method == "MAX":
                    best = None
                    for h in rows:
                        for w in cols:
                            if best is None or x[n, c, h, w] > best:
                                best, mask[n, c, a, b] = x[n, c, h, w], h * W + w
                    y[n, c, a, b] = best
                elif method == "AVE":
                    y[n, c, a, b] = sum(x[n, c, h, w] for h in rows for w in cols) / size
                else:  # STOCHASTIC, TEST
                    v = np.array([x[n, c, h, w] for h in rows for w in cols])
                    y[n, c, a, b] = (v * v).sum() / (FLT_MIN + v.sum())
    return y, mask


def sto_train_ref(x, k, s, out_hw, u):
    N, C, H, W = x.shape
    PH, PW = out_hw
    y = np.zeros((N, C, PH, PW))
    mask = np.full((N, C, PH, PW), -1)
    for n in range(N):
        for c in range(C):
            for a, b, rows, cols, _ in windows(H, W, PH, PW, k, s, (0, 0)):
                pos = [(h, w) for h in rows for w in cols]
                if not pos:
                    continue
                thr = u[n, c, a, b] * sum(x[n, c, h, w] for h, w in pos)
                run = 0.0
                for h, w in pos:
                    run += x[n, c, h, w]
                    if run >= thr:
                        break
                y[n, c, a, b], mask[n, c, a, b] = x[n, c, h, w], h * W + w
    return y, mask


def proto_text(method="MAX", k=None, s=None, p=None, extra=""):
    def field(name, v):
        if v is None:
            return ""
        if isinstance(v, tuple):
            return f"{name}_h: {v[0]} {name}_w: {v[1]} "
        return f"{name}: {v} " if name != "kernel" else f"kernel_size: {v} "
    return (f"type: 'Pooling' pooling_param {{ pool: {method} {field('kernel', k)}{field('stride', s)}"
            f"{field('pad', p)}{extra} }}")


def pair(v, default):
    return default if v is None else (v if isinstance(v, tuple) else (v, v))


# (bottom shape, kernel, stride, pad): odd sizes, pad > 0, stride > kernel, ceil-mode edge windows
CONFIGS = [
    ((2, 3, 7, 7), 3, 2, None),          # all windows full
    ((1, 2, 8, 9), 3, 2, None),          # ceil: the last window hangs over the edge
    ((2, 2, 6, 7), 3, 2, 1),             # pad 1: AVE divisor counts padding, not beyond it
    ((1, 3, 5, 5), 2, 2, 1),             # pad: the last ceil window would start in the padding
    ((1, 2, 8, 10), 2, 3, None),         # stride > kernel
    ((2, 1, 9, 7), (3, 2), (2, 1), (1, 0)),  # _h/_w forms
    ((1, 2, 4, 5), 5, 1, 2),             # kernel larger than the image
    ((1, 1, 11, 13), 4, 3, 2),
]


def _out_hw(shape, k, s, p):
    k, s, p = pair(k, None), pair(s, (1, 1)), pair(p, (0, 0))
    any_pad = p[0] > 0 or p[1] > 0
    return (caffe_out(shape[2], k[0], s[0], p[0], any_pad=any_pad),
            caffe_out(shape[3], k[1], s[1], p[1], any_pad=any_pad)), k, s, p


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("shape, k, s, p", CONFIGS)
def test_forward_against_loops(method, shape, k, s, p):
    x = np.random.default_rng(0).standard_normal(shape)
    out_hw, kk, ss, pp = _out_hw(shape, k, s, p)
    layer, b, t = build_layer(proto_text(method, k, s, p), [x], num_tops=2 if method == "MAX" else 1)
    outs = forward(layer, b, t)
    y_ref, mask_ref = pool_ref(x, kk, ss, pp, out_hw, method)
    assert outs[0].shape == (shape[0], shape[1]) + out_hw
    np.testing.assert_allclose(outs[0], y_ref, rtol=1e-13, atol=1e-15)
    if method == "MAX":
        np.testing.assert_array_equal(outs[1], mask_ref)  # the mask top: h * W + w as floats


def test_output_size_rule():
    # ceil, then (with any padding) drop a last window that would start in the far padding
    assert pooled_size(7, 3, 2, 0) == 3
    assert pooled_size(8, 3, 2, 0) == 4            # ceil keeps the partial edge window
    assert pooled_size(8, 3, 2, 0, ceil_mode=False) == 3
    assert pooled_size(5, 2, 2, 1) == 3            # ceil gives 4, (4-1)*2 >= 5+1 drops one
    assert pooled_size(6, 3, 2, 1) == 4
    assert pooled_size(6, 1, 2, 0) == 4            # no padding: Caffe keeps a window past the edge
    assert pooled_size(6, 1, 2, 0, any_pad=True) == 3  # ... unless the *other* axis is padded
    rng = np.random.default_rng(1)
    for _ in range(300):
        k = int(rng.integers(1, 6))
        s, p, size = int(rng.integers(1, 5)), int(rng.integers(0, k)), int(rng.integers(k, 40))
        for ceil in (True, False):
            assert pooled_size(size, k, s, p, ceil) == caffe_out(size, k, s, p, ceil), (size, k, s, p, ceil)


def test_pad_on_one_axis_clips_both_as_caffe_does():
    # pad_w > 0 switches on the clip for the height too (Caffe tests pad_h || pad_w)
    layer, b, t = build_layer(proto_text("MAX", (1, 2), (2, 2), (0, 1)), [np.zeros((1, 1, 6, 5))])
    assert t[0].shape == (1, 1, 3, 3)
    layer, b, t = build_layer(proto_text("MAX", (1, 2), (2, 2), (0, 0)), [np.zeros((1, 1, 6, 5))])
    assert t[0].shape == (1, 1, 4, 3)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_window_past_the_edge_gives_zero(method):
    # kernel 1, stride 2, no pad on an even size: Caffe's ceil rule adds a window at row 6 of 6,
    # which holds no pixel; netdef makes it 0 (Caffe leaves -FLT_MAX) and sends it no gradient.
    x = np.random.default_rng(2).standard_normal((1, 2, 6, 6)) + 5
    layer, b, t = build_layer(proto_text(method, 1, 2), [x])
    (y,) = forward(layer, b, t)
    assert y.shape == (1, 2, 4, 4)
    np.testing.assert_array_equal(y[:, :, :3, :3], x[:, :, ::2, ::2])
    assert not y[:, :, 3, :].any() and not y[:, :, :, 3].any()
    check_gradients(proto_text(method, 1, 2), [x], step=1e-6)


def test_floor_round_mode():
    x = np.random.default_rng(3).standard_normal((1, 2, 8, 9))
    for method in ("MAX", "AVE"):
        layer, b, t = build_layer(proto_text(method, 3, 2, extra="round_mode: FLOOR"), [x])
        (y,) = forward(layer, b, t)
        assert y.shape == (1, 2, 3, 4)
        np.testing.assert_allclose(y, pool_ref(x, (3, 3), (2, 2), (0, 0), (3, 4), method)[0], rtol=1e-13)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_global_pooling(method):
    x = np.random.default_rng(4).standard_normal((2, 3, 5, 7))
    layer, b, t = build_layer(f"type: 'Pooling' pooling_param {{ pool: {method} global_pooling: true }}", [x])
    (y,) = forward(layer, b, t)
    ref = x.max(axis=(2, 3)) if method == "MAX" else x.mean(axis=(2, 3))
    np.testing.assert_allclose(y, ref[:, :, None, None], rtol=1e-13)
    # the kernel follows the bottom on reshape
    x2 = np.random.default_rng(5).standard_normal((1, 3, 4, 2))
    b[0].reshape(x2.shape)
    b[0].data[...] = x2
    layer.reshape(b, t)
    (y,) = forward(layer, b, t)
    ref = x2.max(axis=(2, 3)) if method == "MAX" else x2.mean(axis=(2, 3))
    np.testing.assert_allclose(y, ref[:, :, None, None], rtol=1e-13)


def test_max_ties_take_the_first_in_row_major_order():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = 3.0   # both in window (0, 0)
    layer, b, t = build_layer(proto_text("MAX", 2, 2), [x], num_tops=2)
    y, mask = forward(layer, b, t)
    assert mask[0, 0, 0, 0] == 1 and y[0, 0, 0, 0] == 3.0
    assert mask[0, 0, 1, 1] == 2 * 4 + 2  # all zeros: the window's first position


def scan_ref(x, k, s, p, out_hw):
    """MAX as Caffe's loop scans a window: row-major, a value replaces the maximum only when
    greater, so ties keep the first, a NaN first keeps its place and later NaNs are passed over."""
    N, C, H, W = x.shape
    y = np.zeros((N, C) + out_hw)
    mask = np.full((N, C) + out_hw, -1)
    for n, c in np.ndindex(N, C):
        for a, b, rows, cols, _ in windows(H, W, *out_hw, k, s, p):
            if not len(rows) or not len(cols):
                continue
            best = rows[0] * W + cols[0]
            m = x[n, c, rows[0], cols[0]]
            for h in rows:
                for w in cols:
                    if x[n, c, h, w] > m:
                        m, best = x[n, c, h, w], h * W + w
            y[n, c, a, b], mask[n, c, a, b] = m, best
    return y, mask


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, s, p", [(3, 1, 1), (3, 2, 0), (2, 2, 0), (3, 3, 1), (5, 2, 2)])
def test_max_ties_nans_and_signed_zeros_in_long_rows(k, s, p, dtype):
    """The CPU scans blocks of neighbouring windows at once (vector max, then the first position
    holding it): on rows of many windows, with values from {-1, -0, +0, 1} and NaNs, y (sign of
    zero included) and the mask are the row-major scan's."""
    rng = np.random.default_rng(21)
    x = rng.choice(np.array([-1.0, -0.0, 0.0, 1.0, np.nan]), size=(2, 2, 6, 161),
                   p=[0.3, 0.2, 0.2, 0.25, 0.05])
    out_hw, kk, ss, pp = _out_hw(x.shape, k, s, p)
    y_ref, mask_ref = scan_ref(x, kk, ss, pp, out_hw)
    for phase in (netdef.TRAIN, netdef.TEST):  # with and without the mask
        layer, b, t = build_layer(proto_text("MAX", k, s, p), [x], phase=phase, dtype=dtype,
                                  num_tops=2 if phase == netdef.TRAIN else 1)
        tops = forward(layer, b, t)
        np.testing.assert_array_equal(tops[0], y_ref)
        np.testing.assert_array_equal(np.signbit(tops[0]), np.signbit(y_ref))
        if phase == netdef.TRAIN:
            np.testing.assert_array_equal(tops[1], mask_ref)


@pytest.mark.parametrize("seed", range(6))
def test_max_whole_small_planes(seed):
    """TEST-phase MAX on planes that fit a padded copy (at stride 1 the CPU's whole-plane
    scan, kernels/pooling.cu's max_pool_plane_s1; the rows' scans otherwise): random sizes,
    kernels, strides 1-3 (also above the kernel, with Caffe's ceil rule leaving windows partly
    or wholly past the image), pads (windows that start in the padding), one-row and one-column
    planes, more planes than threads; values with ties, signed zeros and NaNs. y is the
    row-major scan's, sign of zero included."""
    rng = np.random.default_rng(100 + seed)
    for _ in range(12):
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        st = int(rng.integers(1, 4))
        ph, pw = int(rng.integers(0, kh)), int(rng.integers(0, kw))
        H, W = int(rng.integers(max(1, kh - 2 * ph), 14)), int(rng.integers(max(1, kw - 2 * pw), 14))
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 9)), H, W)
        x = rng.choice(np.array([-2.0, -1.0, -0.0, 0.0, 1.0, np.nan]), size=shape,
                       p=[0.15, 0.2, 0.2, 0.2, 0.2, 0.05])
        k, pad = (kh, kw), (ph, pw)
        out_hw, kk, ss, pp = _out_hw(x.shape, k, st, pad)
        layer, b, t = build_layer(proto_text("MAX", k, st, pad), [x], phase=netdef.TEST)
        y_ref, _ = scan_ref(x, kk, ss, pp, out_hw)
        layer.need_backward = False  # as in a TEST net: no mask, the whole-plane scan
        y = forward(layer, b, t)[0]
        assert layer.mask is None
        np.testing.assert_array_equal(y, y_ref, err_msg=f"{shape} k {k} stride {st} pad {pad}")
        np.testing.assert_array_equal(np.signbit(y), np.signbit(y_ref))


def _distinct(shape, seed):
    """Values at least 0.01 apart, so a small step never changes which one is the maximum."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))).reshape(shape) - np.prod(shape) / 2) * 0.01


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("shape, k, s, p", [CONFIGS[1], CONFIGS[2], CONFIGS[4], CONFIGS[5], CONFIGS[6]])
def test_gradient(method, shape, k, s, p):
    x = _distinct(shape, 6)
    check_gradients(proto_text(method, k, s, p), [x], max_checks=80)


def test_max_gradient_with_mask_top_and_overlapping_windows():
    # stride 1, kernel 3: one input can be the maximum of several windows; gradients add up
    x = _distinct((2, 2, 5, 6), 7)
    check_gradients(proto_text("MAX", 3, 1, 1), [x], num_tops=2, max_checks=80)


def test_max_backward_routes_to_the_argmax():
    x = np.random.default_rng(8).standard_normal((2, 3, 7, 6))
    layer, b, t = build_layer(proto_text("MAX", 3, 2, 1), [x])
    forward(layer, b, t)
    dy = np.random.default_rng(9).standard_normal(t[0].shape)
    t[0].diff[...] = dy
    layer.backward(t, [True], b)
    _, mask = pool_ref(x, (3, 3), (2, 2), (1, 1), t[0].shape[2:], "MAX")
    ref = np.zeros_like(x)
    for idx in np.ndindex(*dy.shape):
        m = int(mask[idx])
        ref[idx[0], idx[1], m // 6, m % 6] += dy[idx]
    np.testing.assert_allclose(b[0].diff, ref, rtol=1e-13)


def backward_ref(dy, x_shape, k, s, p, method, mask):
    """dx as a scatter over the windows (the kernels gather): MAX sends dy to the argmax, AVE
    spreads dy / size over the window clipped to the image."""
    N, C, H, W = x_shape
    dx = np.zeros(x_shape)
    for n in range(N):
        for c in range(C):
            for a, b, rows, cols, size in windows(H, W, dy.shape[2], dy.shape[3], k, s, p):
                if method == "MAX":
                    m = int(mask[n, c, a, b])
                    if m >= 0:
                        dx[n, c, m // W, m % W] += dy[n, c, a, b]
                else:
                    for h in rows:
                        for w in cols:
                            dx[n, c, h, w] += dy[n, c, a, b] / size
    return dx


@pytest.mark.parametrize("tile", [1, 2, 3, None], ids=["tile1-gpu", "tile2", "tile3", "cpu"])
@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("shape, k, s, p", CONFIGS + [((1, 2, 3, 70), 3, 1, 1), ((1, 1, 2, 200), (1, 3), 3, 0)])
def test_row_tiles_against_loops(method, shape, k, s, p, tile):
    """MAX/AVE kernels take `tile` elements of a row per iteration (1 on the GPU): every tiling,
    including segments that end inside a window and rows longer than the CPU's tile, gives the
    loop references' forward and backward."""
    rng = np.random.default_rng(17)
    x = _distinct(shape, 18)
    out_hw, kk, ss, pp = _out_hw(shape, k, s, p)
    layer, b, t = build_layer(proto_text(method, k, s, p), [x])
    layer.tile = tile
    (y,) = forward(layer, b, t)
    y_ref, mask_ref = pool_ref(x, kk, ss, pp, out_hw, method)
    np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=1e-15)
    dy = rng.standard_normal(t[0].shape)
    t[0].diff[...] = dy
    b[0].diff[...] = np.nan  # every element must be written
    layer.backward(t, [True], b)
    np.testing.assert_allclose(b[0].diff, backward_ref(dy, shape, kk, ss, pp, method, mask_ref),
                               rtol=1e-12, atol=1e-14)


STO_CONFIGS = [((2, 2, 7, 7), 3, 2), ((1, 3, 8, 9), 3, 2), ((1, 2, 6, 8), 2, 3), ((2, 1, 5, 6), (2, 3), (1, 2))]


@pytest.mark.parametrize("shape, k, s", STO_CONFIGS)
def test_stochastic_train_forward_uses_the_backend_draws(shape, k, s):
    x = np.random.default_rng(10).random(shape) + 0.05
    out_hw, kk, ss, _ = _out_hw(shape, k, s, None)
    layer, b, t = build_layer(proto_text("STOCHASTIC", k, s), [x], phase=netdef.TRAIN)
    (y,) = forward(layer, b, t, seed=123)
    u = np.random.default_rng(123).random((shape[0], shape[1]) + out_hw)  # what the CPU backend draws
    y_ref, mask_ref = sto_train_ref(x, kk, ss, out_hw, u)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(layer.mask, mask_ref)


def test_stochastic_train_samples_in_proportion_to_the_values():
    # one 2x2 window per plane, 4000 planes with the same values: pick frequencies ~ x / sum x
    vals = np.array([[0.1, 0.2], [0.3, 0.4]])
    x = np.broadcast_to(vals, (1, 4000, 2, 2)).copy()
    layer, b, t = build_layer(proto_text("STOCHASTIC", 2, 2), [x], phase=netdef.TRAIN, dtype=np.float32)
    (y,) = forward(layer, b, t, seed=5)
    freq = np.array([(np.isclose(y, v)).mean() for v in vals.ravel()])
    np.testing.assert_allclose(freq, vals.ravel() / vals.sum(), atol=0.03)
    # a zero is never drawn while the window has positive values
    x[:, :, 0, 0] = 0
    b[0].data[...] = x
    (y,) = forward(layer, b, t, seed=6)
    assert (y > 0).all()


@pytest.mark.parametrize("shape, k, s", STO_CONFIGS)
def test_stochastic_test_is_the_probability_weighted_average(shape, k, s):
    x = np.random.default_rng(11).random(shape)
    out_hw, kk, ss, _ = _out_hw(shape, k, s, None)
    layer, b, t = build_layer(proto_text("STOCHASTIC", k, s), [x], phase=netdef.TEST)
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, pool_ref(x, kk, ss, (0, 0), out_hw, "STO")[0], rtol=1e-13)
    # all-zero windows give 0, not a division by zero
    b[0].data[...] = 0
    (y,) = forward(layer, b, t)
    assert np.all(y == 0)


@pytest.mark.parametrize("shape, k, s", STO_CONFIGS[1:])
def test_stochastic_gradients(shape, k, s):
    x = np.random.default_rng(12).random(shape) + 0.1
    # TRAIN is piecewise linear in x (y is the drawn x): a tiny step stays on one piece
    check_gradients(proto_text("STOCHASTIC", k, s), [x], phase=netdef.TRAIN, step=1e-7, max_checks=60)
    check_gradients(proto_text("STOCHASTIC", k, s), [x], phase=netdef.TEST, max_checks=60)


def test_float32_matches_float64():
    x = np.random.default_rng(13).standard_normal((2, 4, 9, 11))
    for method in ("MAX", "AVE"):
        outs = [forward(*build_layer(proto_text(method, 3, 2, 1), [x], dtype=dt))[0]
                for dt in (np.float32, np.float64)]
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6, atol=1e-6)


def _vgg_pool_sizes(path, size):
    """Walk the published prototxt from the data layer: every Convolution by its geometry, every
    Pooling through the Pooling layer itself; return the sizes after each pool."""
    net, _ = proto.read_net_text(path)
    h, sizes = size, []
    for lp in net.layer:
        if lp.type == "Convolution":
            cp = lp.convolution_param
            k, s = cp.kernel_size[0], (cp.stride[0] if cp.stride else 1)
            p = cp.pad[0] if cp.pad else 0
            h = (h + 2 * p - k) // s + 1
        elif lp.type == "Pooling":
            layer, b, t = build_layer(lp, [np.zeros((1, 1, h, h))], phase=netdef.TEST)
            h = t[0].shape[2]
            assert t[0].shape[3] == h
            sizes.append(h)
            if lp.name == "pool5":
                return sizes
    return sizes


def test_fcn32s_pool_sizes_on_500x500(fcn_reference):
    # conv1_1 pad 100: 500 + 200 - 2 = 698; then 2x2/2 ceil pools 349, 175, 88, 44, 22
    sizes = _vgg_pool_sizes(os.path.join(fcn_reference, "voc-fcn32s", "val.prototxt"), 500)
    assert sizes == [349, 175, 88, 44, 22]
    # fc6 (7x7 valid) on pool5 gives 16, as in the FCN paper's 500x500 example
    assert sizes[-1] - 7 + 1 == 16


def test_pool_sizes_match_the_ceil_formula_on_odd_inputs():
    h, sizes = 333 + 198, []
    for _ in range(5):
        h = pooled_size(h, 2, 2, 0)
        sizes.append(h)
    assert sizes == [266, 133, 67, 34, 17]


ERRORS = [
    ("pool: MAX", "give kernel_size, or both kernel_h and kernel_w"),
    ("pool: MAX kernel_h: 3", "give kernel_size, or both kernel_h and kernel_w"),
    ("pool: MAX kernel_size: 3 kernel_h: 3 kernel_w: 3", "not both"),
    ("pool: MAX global_pooling: true kernel_size: 2", "global_pooling the kernel size cannot be given"),
    ("pool: MAX global_pooling: true stride: 2", "only pad 0 and stride 1"),
    ("pool: MAX kernel_size: 3 pad: 3", r"pad 3 x 3 must be smaller than the kernel 3 x 3"),
    ("pool: MAX kernel_size: 3 pad_h: 1", "give pad, or both pad_h and pad_w"),
    ("pool: MAX kernel_size: 3 stride: 1 stride_h: 1 stride_w: 2", "give stride, or both"),
    ("pool: STOCHASTIC kernel_size: 3 pad: 1", "padding is implemented only for MAX and AVE"),
    ("pool: AVE kernel_size: 0", "kernel size must be > 0"),
    ("pool: AVE kernel_size: 2 stride: 0", "stride must be > 0"),
]


@pytest.mark.parametrize("params, message", ERRORS)
def test_parameter_errors(params, message):
    with pytest.raises(NetdefError, match=message):
        build_layer(f"name: 'p' type: 'Pooling' pooling_param {{ {params} }}", [np.zeros((1, 1, 6, 6))])


def test_shape_errors():
    with pytest.raises(NetdefError, match=r"\(2, 3, 4\) is not 4-D"):
        build_layer(proto_text("MAX", 2, 2), [np.zeros((2, 3, 4))])
    with pytest.raises(NetdefError, match=r"kernel 5 x 5 .* does not fit the bottom \(1, 1, 3, 3\)"):
        build_layer(proto_text("MAX", 5, 1), [np.zeros((1, 1, 3, 3))])
    with pytest.raises(NetdefError, match="only MAX pooling has a second top"):
        build_layer(proto_text("AVE", 2, 2), [np.zeros((1, 1, 4, 4))], num_tops=2)


def test_in_a_net_with_mask_top():
    net = netdef.Net("""input: 'x' input_shape { dim: 1 dim: 2 dim: 5 dim: 5 }
        layer { name: 'p' type: 'Pooling' bottom: 'x' top: 'y' top: 'm'
                pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }""")
    x = np.random.default_rng(14).standard_normal((1, 2, 5, 5)).astype(np.float32)
    out = net.forward(x=x)
    y_ref, m_ref = pool_ref(x.astype(np.float64), (3, 3), (2, 2), (1, 1), (3, 3), "MAX")
    np.testing.assert_allclose(out["y"], y_ref, rtol=1e-6)
    np.testing.assert_array_equal(out["m"], m_ref)


@pytest.mark.gpu
@pytest.mark.parametrize("method, k, s, p", [("MAX", 3, 2, 1), ("AVE", 3, 2, 1), ("MAX", 2, 3, 0),
                                             ("AVE", (3, 2), (1, 2), (1, 1)), ("MAX", 1, 2, 0)])
def test_gpu_matches_cpu(method, k, s, p):
    x = _distinct((2, 5, 17, 14), 15).astype(np.float32)
    compare_devices(proto_text(method, k, s, p), [x], num_tops=2 if method == "MAX" else 1)


@pytest.mark.gpu
def test_gpu_stochastic():
    x = np.random.default_rng(16).random((2, 3, 15, 16)).astype(np.float32)
    compare_devices(proto_text("STOCHASTIC", 3, 2), [x], phase=netdef.TEST)
    # TRAIN draws differ between devices; check the GPU's picks are window members with the
    # sampled value, and that backward sends dy to exactly those positions
    backend = netdef.get_backend("gpu")
    layer, b, t = build_layer(proto_text("STOCHASTIC", 3, 2), [x], phase=netdef.TRAIN,
                              dtype=np.float32, backend=backend)
    (y,) = forward(layer, b, t)
    mask = backend.to_numpy(layer.mask)
    planes = x.reshape(6, -1)
    np.testing.assert_array_equal(y.reshape(6, -1), np.take_along_axis(planes, mask.reshape(6, -1), 1))


def _pool_param(text):
    lp = pb.LayerParameter()
    text_format.Parse(text, lp)
    return lp


def test_coord_map_uses_the_layers_parser():
    lp = _pool_param("name: 'p' type: 'Pooling' pooling_param { pool: AVE kernel_h: 3 kernel_w: 2 "
                     "stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 }")
    assert coord_map.pool_geometry(lp.pooling_param, "p") == ((3, 2), (2, 1), (1, 0))
    layer, b, t = build_layer(lp, [np.zeros((1, 1, 7, 6))])
    assert (layer.kernel, layer.stride, layer.pad) == ((3, 2), (2, 1), (1, 0))
    lp = _pool_param("pooling_param { global_pooling: true }")
    assert coord_map.pool_geometry(lp.pooling_param) == (None, (1, 1), (0, 0))
    for params, message in ERRORS:  # the same checks, the same messages
        lp = _pool_param(f"pooling_param {{ {params} }}")
        with pytest.raises(NetdefError, match=message):
            coord_map.pool_geometry(lp.pooling_param, "p")
