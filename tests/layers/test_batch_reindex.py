"""BatchReindex: forward against a numpy loop, gradients with duplicates (they sum), items never
picked get 0, empty index lists, errors naming the bad index, GPU vs CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError

PROTO = "type: 'BatchReindex'"

CASES = {
    "permutation": ((4, 3, 2), [2.0, 0, 3, 1]),
    "duplicates": ((5, 3), [4.0, 4, 0, 4, 2, 0, 1]),
    "edges": ((3, 2, 1, 3), [0.0, 2]),
    "one": ((1, 5), [0.0, 0, 0]),
    "vector": ((6,), [5.0, 1, 1]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_and_backward_match_reference(case):
    shape, idx = CASES[case]
    x = np.random.default_rng(0).standard_normal(shape)
    layer, b, t = build_layer(PROTO, [x, np.array(idx)])
    (y,) = forward(layer, b, t)
    np.testing.assert_array_equal(y, np.array([x[int(i)] for i in idx]))
    dy = np.random.default_rng(1).standard_normal(y.shape)
    t[0].diff[...] = dy
    b[0].diff[...] = np.nan
    layer.backward(t, [True, False], b)
    want = np.zeros(shape)
    for m, i in enumerate(idx):
        want[int(i)] += dy[m]
    np.testing.assert_allclose(b[0].diff, want, rtol=1e-15, atol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient(case):
    shape, idx = CASES[case]
    check_gradients(PROTO, [np.random.default_rng(2).standard_normal(shape), np.array(idx)])


def test_no_indices_gives_an_empty_top_and_zero_gradient():
    layer, b, t = build_layer(PROTO, [np.ones((3, 2)), np.zeros(0)])
    (y,) = forward(layer, b, t)
    assert y.shape == (0, 2)
    b[0].diff[...] = np.nan
    layer.backward(t, [True, False], b)
    np.testing.assert_array_equal(b[0].diff, 0)


@pytest.mark.parametrize("idx, match", [
    ([0.0, 3.0], r"index 3\.0 at position 1 of bottom\[1\] is not an item of bottom\[0\] \(3, 2\)"),
    ([-1.0], r"index -1\.0 at position 0"),
    ([1.5], r"index 1\.5"),
])
def test_bad_index_is_an_error(idx, match):
    layer, b, t = build_layer("name: 'reidx' " + PROTO, [np.ones((3, 2)), np.array(idx)])
    with pytest.raises(NetdefError, match=match) as e:
        forward(layer, b, t)
    assert "reidx" in str(e.value)


def test_shape_error():
    with pytest.raises(NetdefError, match=r"bottom\[1\] \(the indices\) has shape \(2, 1\)"):
        build_layer(PROTO, [np.ones((3, 2)), np.zeros((2, 1))])


@pytest.mark.gpu
@pytest.mark.parametrize("case", sorted(CASES))
def test_gpu_matches_cpu(case):
    shape, idx = CASES[case]
    compare_devices(PROTO, [np.random.default_rng(3).standard_normal(shape), np.array(idx)],
                    rtol=1e-6, atol=1e-7)
