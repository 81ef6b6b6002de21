"""Im2col: forward against a numpy loop over the patches, gradients (col2im), the product with
a weight matrix equal to Convolution, row tiles, errors, GPU vs CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError


def _proto(k, s=(1, 1), p=(0, 0), d=1):
    return (f"type: 'Im2col' convolution_param {{ kernel_h: {k[0]} kernel_w: {k[1]} stride_h: {s[0]} "
            f"stride_w: {s[1]} pad_h: {p[0]} pad_w: {p[1]} dilation: {d} }}")


def _reference(x, k, s, p, d):
    N, C, H, W = x.shape
    OH = (H + 2 * p[0] - (d * (k[0] - 1) + 1)) // s[0] + 1
    OW = (W + 2 * p[1] - (d * (k[1] - 1) + 1)) // s[1] + 1
    y = np.zeros((N, C, k[0], k[1], OH, OW))
    for n, c, i, j, a, b in np.ndindex(*y.shape):
        h, w = a * s[0] - p[0] + i * d, b * s[1] - p[1] + j * d
        if 0 <= h < H and 0 <= w < W:
            y[n, c, i, j, a, b] = x[n, c, h, w]
    return y.reshape(N, C * k[0] * k[1], OH, OW)


CASES = [  # (shape, kernel, stride, pad, dilation)
    ((2, 3, 5, 6), (3, 3), (1, 1), (1, 1), 1),
    ((1, 2, 7, 5), (2, 3), (2, 1), (0, 1), 1),
    ((2, 1, 9, 8), (3, 2), (3, 2), (2, 1), 2),
    ((3, 2, 4, 4), (1, 1), (1, 1), (0, 0), 1),
    ((1, 1, 6, 7), (4, 4), (5, 3), (3, 2), 1),   # stride > kernel, pad almost the kernel
]


@pytest.mark.parametrize("shape, k, s, p, d", CASES, ids=str)
def test_forward_matches_reference(shape, k, s, p, d):
    x = np.random.default_rng(0).standard_normal(shape)
    layer, b, t = build_layer(_proto(k, s, p, d), [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_array_equal(y, _reference(x, k, s, p, d))


@pytest.mark.parametrize("shape, k, s, p, d", CASES, ids=str)
def test_gradient(shape, k, s, p, d):
    check_gradients(_proto(k, s, p, d), [np.random.default_rng(1).standard_normal(shape)])


@pytest.mark.parametrize("case", [2, 4])
@pytest.mark.parametrize("tile", [1, 2, 5, 7, 11, None])
def test_row_tiles_agree(tile, case):
    """Iterations take `tile` positions of a column row (1 on the GPU), segments that may start
    and end inside an output row and span several (OW is 4 and 3 here)."""
    shape, k, s, p, d = CASES[case]
    x = np.random.default_rng(2).standard_normal(shape)
    layer, b, t = build_layer(_proto(k, s, p, d), [x])
    layer.tile = tile
    (y,) = forward(layer, b, t)
    np.testing.assert_array_equal(y, _reference(x, k, s, p, d))
    dy = np.random.default_rng(3).standard_normal(y.shape)
    t[0].diff[...] = dy
    layer.backward(t, [True], b)
    ref, rb, rt = build_layer(_proto(k, s, p, d), [x])
    ref.tile = 1
    forward(ref, rb, rt)
    rt[0].diff[...] = dy
    ref.backward(rt, [True], rb)
    np.testing.assert_allclose(b[0].diff, rb[0].diff, rtol=1e-14)


def test_times_weights_is_a_convolution():
    x = np.random.default_rng(4).standard_normal((2, 3, 6, 5))
    conv, cb, ct = build_layer("type: 'Convolution' convolution_param { num_output: 4 kernel_size: 3 "
                               "stride: 2 pad: 1 bias_term: false weight_filler { type: 'gaussian' } }", [x])
    (want,) = forward(conv, cb, ct)
    layer, b, t = build_layer("type: 'Im2col' convolution_param { num_output: 4 kernel_size: 3 "
                              "stride: 2 pad: 1 }", [x])
    (cols,) = forward(layer, b, t)
    Wm = conv.blobs[0].data.reshape(4, -1)
    got = np.einsum("ok,nkhw->nohw", Wm, cols)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("proto, shape, match", [
    ("type: 'Im2col'", (1, 1, 4, 4), "needs kernel_size"),
    ("type: 'Im2col' convolution_param { kernel_size: 5 }", (1, 1, 4, 4), r"does not fit the bottom \(1, 1, 4, 4\)"),
    ("type: 'Im2col' convolution_param { kernel_size: 2 }", (1, 4, 4), "needs a 4-D bottom"),
    ("type: 'Im2col' convolution_param { kernel_size: 2 axis: 2 }", (1, 1, 4, 4), "only the channel axis"),
    ("type: 'Im2col' convolution_param { kernel_size: 2 kernel_size: 2 kernel_size: 2 }", (1, 1, 4, 4),
     "N-D convolution is not supported"),
])
def test_errors(proto, shape, match):
    with pytest.raises(NetdefError, match=match):
        build_layer(proto, [np.ones(shape)])


@pytest.mark.gpu
@pytest.mark.parametrize("shape, k, s, p, d", CASES, ids=str)
def test_gpu_matches_cpu(shape, k, s, p, d):
    compare_devices(_proto(k, s, p, d), [np.random.default_rng(5).standard_normal(shape)],
                    rtol=1e-5, atol=1e-6)
