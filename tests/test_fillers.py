"""Fillers: every FillerParameter type against its definition (values, ranges, statistics),
variance_norm modes of xavier and msra, sparse gaussian, the bilinear kernel against hand
values, seeding, errors."""
import numpy as np
import pytest

import netdef
from netdef import netdef_pb2 as pb
from netdef.blob import Blob
from netdef.fillers import fill, filler_values

FP = pb.FillerParameter


def values(shape, seed=0, **kw):
    return filler_values(FP(**kw), shape, np.random.default_rng(seed), layer="L")


def test_constant():
    np.testing.assert_array_equal(values((2, 3), type="constant", value=2.5), np.full((2, 3), 2.5))
    assert not values((4,), type="constant").any()  # value defaults to 0
    assert FP().type == "constant"


def test_uniform_range_and_moments():
    v = values((200, 100), type="uniform", min=-2.0, max=3.0)
    assert v.min() >= -2.0 and v.max() <= 3.0
    assert abs(v.mean() - 0.5) < 0.03
    assert abs(v.std() - 5 / np.sqrt(12)) < 0.02
    assert v.min() < -1.99 and v.max() > 2.99


def test_uniform_max_below_min_is_an_error():
    with pytest.raises(netdef.LayerSetupError, match="max -1.0 < min 1.0"):
        values((3,), type="uniform", min=1.0, max=-1.0)


def test_gaussian_moments():
    v = values((300, 100), type="gaussian", mean=1.5, std=0.25)
    assert abs(v.mean() - 1.5) < 0.005
    assert abs(v.std() - 0.25) < 0.005
    assert np.count_nonzero(v) == v.size  # not sparse by default (sparse = -1)


@pytest.mark.parametrize("sparse", [1, 5, 20])
def test_sparse_gaussian_keeps_sparse_over_num_outputs(sparse):
    shape = (40, 500)  # keep probability sparse / shape[0]
    v = values(shape, type="gaussian", std=1.0, sparse=sparse)
    frac = np.count_nonzero(v) / v.size
    p = sparse / shape[0]
    assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / v.size) + 1e-9
    kept = v[v != 0]
    assert abs(kept.std() - 1.0) < 0.1  # the kept weights are still N(0, std^2)


def test_sparse_gaussian_edge_cases():
    assert not values((10, 10), type="gaussian", sparse=0).any()
    assert np.count_nonzero(values((10, 10), type="gaussian", sparse=10)) == 100
    with pytest.raises(netdef.LayerSetupError, match="sparse gaussian filler needs a blob of >= 2 axes"):
        values((10,), type="gaussian", sparse=2)


def test_positive_unitball_rows_sum_to_one():
    v = values((7, 3, 2, 2), type="positive_unitball")
    assert v.min() >= 0 and v.max() <= 1
    np.testing.assert_allclose(v.reshape(7, -1).sum(axis=1), 1.0, rtol=1e-12)


SHAPE = (64, 32, 3, 3)  # fan_in = 288, fan_out = 576, average = 432
NORMS = [(None, 288), (FP.FAN_IN, 288), (FP.FAN_OUT, 576), (FP.AVERAGE, 432)]


def _norm_kw(norm):
    return {} if norm is None else {"variance_norm": norm}


@pytest.mark.parametrize("norm,n", NORMS, ids=["default", "FAN_IN", "FAN_OUT", "AVERAGE"])
def test_xavier_is_uniform_with_variance_one_over_n(norm, n):
    v = values(SHAPE, type="xavier", **_norm_kw(norm))
    a = np.sqrt(3.0 / n)
    assert np.abs(v).max() <= a and np.abs(v).max() > 0.99 * a
    assert abs(v.std() / np.sqrt(1.0 / n) - 1) < 0.03
    assert abs(v.mean()) < 0.05 * a


@pytest.mark.parametrize("norm,n", NORMS, ids=["default", "FAN_IN", "FAN_OUT", "AVERAGE"])
def test_msra_is_gaussian_with_variance_two_over_n(norm, n):
    v = values(SHAPE, type="msra", **_norm_kw(norm))
    assert abs(v.std() / np.sqrt(2.0 / n) - 1) < 0.03
    assert abs(v.mean()) < 0.05 * np.sqrt(2.0 / n)
    assert np.abs(v).max() > 2.5 * np.sqrt(2.0 / n)  # unbounded, unlike xavier


def test_fans_of_a_two_axis_blob():
    # InnerProduct weights (num_output, inputs): fan_in = inputs, fan_out = num_output
    v = values((100, 400), type="xavier", variance_norm=FP.FAN_OUT)
    assert np.abs(v).max() <= np.sqrt(3.0 / 100)
    assert np.abs(v).max() > np.sqrt(3.0 / 400)


def _bilinear_1d(k):
    """The FCN formula written out: f = ceil(k / 2), c = (2f - 1 - f % 2) / (2f),
    w(i) = 1 - |i / f - c|."""
    f = -(-k // 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    return np.array([1 - abs(i / f - c) for i in range(k)])


@pytest.mark.parametrize("k,hand", [
    (2, [1.0, 0.0]),                            # f = 1, c = 0
    (3, [0.25, 0.75, 0.75]),                    # f = 2, c = 3/4
    (4, [0.25, 0.75, 0.75, 0.25]),              # f = 2, c = 3/4
    (5, [1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3]),     # f = 3, c = 2/3
    (6, [1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3, 0.0]),  # f = 3, c = 2/3
])
def test_bilinear_against_hand_values(k, hand):
    v = values((3, 2, k, k), type="bilinear")
    expected = np.outer(hand, hand)
    for c in range(3):
        for g in range(2):
            np.testing.assert_allclose(v[c, g], expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("f", [2, 3, 8, 32])
def test_bilinear_is_a_partition_of_unity_at_its_stride(f):
    """FCN's kernel 2f - f % 2 with stride f: the taps one output pixel sees sum to one, so a
    constant image upsamples to the same constant."""
    k = 2 * f - f % 2
    w = values((1, 1, k, k), type="bilinear")[0, 0]
    np.testing.assert_allclose(w, np.outer(_bilinear_1d(k), _bilinear_1d(k)), rtol=1e-12)
    w1 = _bilinear_1d(k)
    for r in range(f):
        assert abs(w1[r::f].sum() - 1.0) < 1e-12


def test_bilinear_needs_square_4d_blobs():
    with pytest.raises(netdef.LayerSetupError, match="square kernels, got \\(1, 1, 3, 4\\)"):
        values((1, 1, 3, 4), type="bilinear")
    with pytest.raises(netdef.LayerSetupError, match="4-D blob"):
        values((4, 4), type="bilinear")


def test_unknown_filler_names_the_layer_and_the_known_types():
    with pytest.raises(netdef.LayerSetupError, match="unknown filler type 'gauss'.*bilinear") as e:
        values((2,), type="gauss")
    assert "L" in str(e.value)


ALL = [dict(type="constant", value=1.0), dict(type="uniform"), dict(type="gaussian"),
       dict(type="gaussian", sparse=3), dict(type="positive_unitball"), dict(type="xavier"),
       dict(type="msra"), dict(type="bilinear")]


@pytest.mark.parametrize("kw", ALL, ids=lambda kw: kw["type"] + ("-sparse" if "sparse" in kw else ""))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fill_writes_the_blob_from_the_backend_generator(kw, dtype):
    backend = netdef.get_backend("cpu")
    blobs = []
    for seed in (5, 5, 6):
        backend.seed(seed)
        b = Blob((6, 4, 4, 4), dtype=dtype, backend=backend)
        fill(b, FP(**kw), "L")
        assert b.data.dtype == dtype
        blobs.append(b.data.copy())
    np.testing.assert_array_equal(blobs[0], blobs[1])  # same seed, same values
    if kw["type"] not in ("constant", "bilinear"):
        assert not np.array_equal(blobs[0], blobs[2])
    expected = values((6, 4, 4, 4), seed=5, **kw) if kw["type"] in ("constant", "bilinear") else None
    if expected is not None:
        np.testing.assert_allclose(blobs[0], expected.astype(dtype))


def test_nets_built_after_the_same_seed_start_identical():
    text = """
      layer { name: 'in' type: 'Input' top: 'x' input_param { shape { dim: 1 dim: 3 dim: 5 dim: 5 } } }
      layer { name: 'c' type: 'Convolution' bottom: 'x' top: 'y' convolution_param { num_output: 4
              kernel_size: 3 weight_filler { type: 'msra' } bias_filler { type: 'uniform' min: -1 max: 1 } } }
    """
    backend = netdef.get_backend("cpu")
    params = []
    for seed in (11, 11, 12):
        backend.seed(seed)
        net = netdef.Net(text, backend=backend)
        params.append([p.data.copy() for p in net.params["c"]])
    for a, b in zip(params[0], params[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(params[0][0], params[2][0])


@pytest.mark.parametrize("kw", [dict(type="uniform", min=-1, max=2), dict(type="gaussian", std=0.3),
                                dict(type="xavier", variance_norm=FP.AVERAGE), dict(type="msra"),
                                dict(type="gaussian", std=1.0, sparse=3), dict(type="constant", value=1.5)])
def test_big_blobs_are_filled_slice_by_slice_with_the_same_values(monkeypatch, kw):
    """fill() draws big blobs in slices along axis 0 (no float64 copy of a 100M-weight fc6);
    the values, including msra/xavier's scale from the whole shape, are those of one draw."""
    import netdef.fillers as fillers

    monkeypatch.setattr(fillers, "_SLICE_ELEMENTS", 40)
    shape = (23, 3, 2, 5)  # 30 elements per row: one row per slice, then a short last one
    backend = netdef.get_backend("cpu")
    backend.seed(11)
    blob = Blob(shape, dtype=np.float32, backend=backend)
    fill(blob, FP(**kw))
    ref = filler_values(FP(**kw), shape, np.random.default_rng(11))
    np.testing.assert_array_equal(blob.data, ref.astype(np.float32))
