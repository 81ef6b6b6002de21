"""Blob's shape arithmetic shared by the layers: canonical axis indices (Caffe's
CanonicalAxisIndex) and products of ranges of axes (Caffe's count(start, end))."""
import numpy as np
import pytest

import netdef
from netdef.blob import Blob, canonical_axis, count_range
from netdef.errors import NetdefError, ShapeError


def test_canonical_axis_wraps_negatives():
    b = Blob((2, 3, 4, 5), name="scores")
    assert [b.canonical_axis(a) for a in (0, 1, 3, -1, -4)] == [0, 1, 3, 3, 0]


@pytest.mark.parametrize("axis", [4, -5, 100])
def test_canonical_axis_out_of_range_names_the_blob_and_shape(axis):
    b = Blob((2, 3, 4, 5), name="scores")
    with pytest.raises(ShapeError, match=rf"blob 'scores': axis {axis} is out of range for a blob "
                                         r"of 4 axes \(shape \(2, 3, 4, 5\)\)"):
        b.canonical_axis(axis)


def test_a_scalar_blob_has_no_axis():
    with pytest.raises(ShapeError, match=r"axis 0 is out of range for a blob of 0 axes \(shape \(\)\)"):
        Blob((), name="s").canonical_axis(0)
    assert canonical_axis(-1, (7,)) == 0


def test_count_range():
    b = Blob((2, 3, 4, 5))
    assert b.count == 120
    assert b.count_range() == 120
    assert b.count_range(1) == 60 and b.count_range(2) == 20 and b.count_range(4) == 1
    assert b.count_range(0, 2) == 6 and b.count_range(1, 3) == 12 and b.count_range(2, 2) == 1
    assert count_range((0, 3), 1) == 3 and count_range((0, 3)) == 0 and count_range(()) == 1


@pytest.mark.parametrize("start, end", [(-1, None), (3, 2), (0, 5), (5, None)])
def test_count_range_outside_the_axes_is_an_error(start, end):
    with pytest.raises(ShapeError, match=r"axis range .* is not within the 4 axes of shape \(2, 3, 4, 5\)"):
        Blob((2, 3, 4, 5), name="b").count_range(start, end)


@pytest.mark.parametrize("layer, match", [
    ("type: 'Softmax' softmax_param { axis: -4 }", "axis -4 is out of range for a blob of 3 axes"),
    ("type: 'Concat' concat_param { axis: 3 }", "axis 3 is out of range for a blob of 3 axes"),
    ("type: 'Flatten' flatten_param { end_axis: 5 }", "axis 5 is out of range"),
    ("type: 'ArgMax' argmax_param { axis: -9 }", "axis -9 is out of range"),
])
def test_layers_report_a_bad_axis_with_the_layer_and_the_shape(layer, match):
    text = ("input: 'x' input_shape { dim: 2 dim: 3 dim: 4 } "
            f"layer {{ name: 'l' {layer} bottom: 'x' top: 'y' }}")
    with pytest.raises(NetdefError, match=match) as e:
        netdef.Net(text)
    assert "layer 'l'" in str(e.value) and "(2, 3, 4)" in str(e.value)


def test_layers_use_negative_axes():
    text = ("input: 'x' input_shape { dim: 2 dim: 3 dim: 4 } "
            "layer { name: 'f' type: 'Flatten' bottom: 'x' top: 'f' flatten_param { axis: -2 } } "
            "layer { name: 'a' type: 'ArgMax' bottom: 'x' top: 'a' argmax_param { axis: -2 } }")
    net = netdef.Net(text)
    assert net.blobs["f"].shape == (2, 12) and net.blobs["a"].shape == (2, 1, 4)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    net.forward(x=x)
    np.testing.assert_array_equal(net.blobs["a"].data[:, 0], x.argmax(axis=1))
