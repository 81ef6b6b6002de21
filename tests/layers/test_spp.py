"""SPP: forward against a numpy loop over Caffe's per-level Pooling geometry, gradients, the
pyramid_height 1 shape, errors, emulated GPU against CPU."""
import math

import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError


def _pool_ref(x, k, s, p, method):
    """Caffe's Pooling (ceil mode, clipped last window) written as loops."""
    N, C, H, W = x.shape
    out = []
    for size, kk, ss, pp in ((H, k[0], s[0], p[0]), (W, k[1], s[1], p[1])):
        n = int(math.ceil((size + 2 * pp - kk) / ss)) + 1
        if (p[0] or p[1]) and (n - 1) * ss >= size + pp:
            n -= 1
        out.append(n)
    PH, PW = out
    y = np.zeros((N, C, PH, PW))
    for n_, c, a, b in np.ndindex(N, C, PH, PW):
        h0, w0 = a * s[0] - p[0], b * s[1] - p[1]
        h1, w1 = min(h0 + k[0], H + p[0]), min(w0 + k[1], W + p[1])
        area = (h1 - h0) * (w1 - w0)
        win = x[n_, c, max(h0, 0):min(h1, H), max(w0, 0):min(w1, W)]
        y[n_, c, a, b] = win.max() if method == "MAX" else win.sum() / area
    return y


def _spp_ref(x, height, method):
    H, W = x.shape[2:]
    parts = []
    for level in range(height):
        bins = 2 ** level
        kh, kw = math.ceil(H / bins), math.ceil(W / bins)
        ph, pw = (kh * bins - H + 1) // 2, (kw * bins - W + 1) // 2
        parts.append(_pool_ref(x, (kh, kw), (kh, kw), (ph, pw), method))
    if height == 1:
        return parts[0]
    return np.concatenate([q.reshape(x.shape[0], -1) for q in parts], axis=1)


CASES = [((2, 3, 8, 8), 3), ((1, 2, 7, 9), 2), ((2, 1, 6, 11), 3), ((3, 2, 4, 5), 1),
         ((1, 1, 13, 7), 3)]


def _proto(height, method):
    return f"type: 'SPP' spp_param {{ pyramid_height: {height} pool: {method} }}"


@pytest.mark.parametrize("shape, height", CASES, ids=str)
@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_forward_matches_reference(shape, height, method):
    x = np.random.default_rng(0).standard_normal(shape)
    layer, b, t = build_layer(_proto(height, method), [x])
    (y,) = forward(layer, b, t)
    want = _spp_ref(x, height, method)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


def test_top_length_is_fixed_across_image_sizes():
    lengths = set()
    for hw in ((8, 8), (12, 10), (16, 9)):
        layer, b, t = build_layer(_proto(3, "MAX"), [np.ones((2, 4) + hw)])
        lengths.add(t[0].shape)
    assert lengths == {(2, 4 * (1 + 4 + 16))}


@pytest.mark.parametrize("shape, height", CASES[:3] + CASES[4:], ids=str)
@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_gradient(shape, height, method):
    rng = np.random.default_rng(1)
    # distinct values a step apart, so no finite difference crosses a tie of the maximum
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01
    check_gradients(_proto(height, method), [x], step=1e-4)


def test_gradient_height_one():
    check_gradients(_proto(1, "AVE"), [np.random.default_rng(2).standard_normal((3, 2, 4, 5))])


@pytest.mark.parametrize("proto, shape, match", [
    ("type: 'SPP'", (1, 1, 4, 4), "pyramid_height must be given"),
    ("type: 'SPP' spp_param { pyramid_height: 0 }", (1, 1, 4, 4), "pyramid_height must be given and >= 1"),
    (_proto(2, "STOCHASTIC"), (1, 1, 4, 4), "STOCHASTIC is not supported"),
    (_proto(3, "MAX"), (1, 1, 5, 8), r"level 2 \(4 bins\) of a 5 x 8 bottom.*pad 2 x 0"),
    (_proto(2, "MAX"), (2, 3, 4), "not 4-D"),
])
def test_errors(proto, shape, match):
    with pytest.raises(NetdefError, match=match):
        build_layer(proto, [np.ones(shape)])


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("shape, height", CASES, ids=str)
def test_gpu_matches_cpu(shape, height, method):
    x = np.random.default_rng(3).permutation(np.prod(shape)).reshape(shape) * 0.01
    compare_devices(_proto(height, method), [x], rtol=1e-5, atol=1e-6)
