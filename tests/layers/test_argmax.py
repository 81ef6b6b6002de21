"""ArgMax: indices / values of the top_k along an axis or over each item, Caffe's output
shapes and its tie order (larger index first), against a sorting reference; GPU against CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, compare_devices, forward
from netdef.errors import NetdefError


def ranked(v, k):
    """Indices of the k largest values, larger value first, ties: larger index first."""
    order = sorted(range(len(v)), key=lambda j: (v[j], j), reverse=True)
    return order[:k]


def argmax_ref(x, top_k, out_max_val, axis):
    if axis is not None:
        xm = np.moveaxis(x, axis, -1)
        out = np.empty(xm.shape[:-1] + (top_k,))
        for idx in np.ndindex(*xm.shape[:-1]):
            r = ranked(xm[idx], top_k)
            out[idx] = xm[idx][r] if out_max_val else r
        return np.moveaxis(out, -1, axis)
    N = x.shape[0]
    flat = x.reshape(N, -1)
    shape = [N, 2 if out_max_val else 1, top_k] + [1] * (x.ndim - 3)
    out = np.empty((N, 2 if out_max_val else 1, top_k))
    for n in range(N):
        r = ranked(flat[n], top_k)
        out[n, 0] = r
        if out_max_val:
            out[n, 1] = flat[n][r]
    return out.reshape(shape)


def proto(top_k=None, out_max_val=None, axis=None):
    f = "".join(f"{k}: {v} " for k, v in (("top_k", top_k), ("axis", axis),
                                          ("out_max_val", None if out_max_val is None else str(out_max_val).lower()))
                if v is not None)
    return f"name: 'am' type: 'ArgMax' argmax_param {{ {f}}}"


@pytest.mark.parametrize("shape", [(3, 10), (2, 4, 3, 5), (2, 6, 1)])
@pytest.mark.parametrize("top_k", [1, 3])
@pytest.mark.parametrize("out_max_val", [False, True])
@pytest.mark.parametrize("axis", [None, 1, -1, 0])
def test_against_sorting(shape, top_k, out_max_val, axis):
    x = np.random.default_rng(0).standard_normal(shape)
    if axis is not None and shape[axis] < top_k:
        pytest.skip("top_k larger than the axis")
    layer, b, t = build_layer(proto(top_k, out_max_val, axis), [x])
    (y,) = forward(layer, b, t)
    ref = argmax_ref(x, top_k, out_max_val, axis)
    assert y.shape == ref.shape
    np.testing.assert_array_equal(y, ref)


def test_caffe_output_shapes():
    x = np.zeros((2, 21, 5, 7))
    assert build_layer(proto(), [x])[2][0].shape == (2, 1, 1, 1)
    assert build_layer(proto(top_k=4, out_max_val=True), [x])[2][0].shape == (2, 2, 4, 1)
    assert build_layer(proto(axis=1), [x])[2][0].shape == (2, 1, 5, 7)          # FCN's per-pixel labels
    assert build_layer(proto(top_k=2, axis=1, out_max_val=True), [x])[2][0].shape == (2, 2, 5, 7)
    assert build_layer(proto(top_k=3), [np.zeros((4, 10))])[2][0].shape == (4, 1, 3)


def test_ties_put_the_larger_index_first():
    x = np.array([[1.0, 3.0, 3.0, 0.0, 3.0]])
    layer, b, t = build_layer(proto(top_k=4, out_max_val=True), [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_array_equal(y[0, 0], [4, 2, 1, 0])
    np.testing.assert_array_equal(y[0, 1], [3, 3, 3, 1])


def test_per_pixel_labels_from_scores():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 21, 9, 8))
    layer, b, t = build_layer(proto(axis=1), [x])
    np.testing.assert_array_equal(forward(layer, b, t)[0][:, 0], x.argmax(axis=1))


def test_errors():
    with pytest.raises(NetdefError, match=r"top_k 4 is larger than axis 1 of the bottom \(2, 3, 5\)"):
        build_layer(proto(top_k=4, axis=1), [np.zeros((2, 3, 5))])
    with pytest.raises(NetdefError, match="top_k 16 is larger than the 15 values per item"):
        build_layer(proto(top_k=16), [np.zeros((2, 3, 5))])
    with pytest.raises(NetdefError, match="top_k must be >= 1"):
        build_layer(proto(top_k=0), [np.zeros((2, 3, 5))])


@pytest.mark.gpu
@pytest.mark.parametrize("top_k, out_max_val, axis", [(1, False, 1), (3, True, 1), (5, True, None), (2, False, None)])
def test_gpu_matches_cpu(top_k, out_max_val, axis):
    x = np.random.default_rng(2).standard_normal((2, 21, 13, 11))
    compare_devices(proto(top_k, out_max_val, axis), [x], rtol=0, atol=0)
