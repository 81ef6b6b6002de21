"""Accuracy: top_k with Caffe's tie rule, axis, ignore_label, the per-class second top, against
a loop reference; all-ignored batches; label errors; no backward; GPU against CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, compare_devices, forward
from netdef.errors import NetdefError


def accuracy_ref(x, labels, axis=1, top_k=1, ignore=None):
    xm = np.moveaxis(x, axis, -1)
    C = x.shape[axis]
    scores = xm.reshape(-1, C)  # (outer, inner) positions in order
    lab = labels.reshape(-1)
    hits = count = 0
    per_hits, per_count = np.zeros(C), np.zeros(C)
    for s, l in zip(scores, lab):
        l = int(l)
        if ignore is not None and l == ignore:
            continue
        better = sum(1 for c in range(C) if s[c] >= s[l]) - 1
        hit = better < top_k
        hits += hit
        count += 1
        per_hits[l] += hit
        per_count[l] += 1
    per = np.where(per_count > 0, per_hits / np.maximum(per_count, 1), 0)
    return (hits / count if count else 0.0), per


def proto(top_k=None, axis=None, ignore=None, tops=1):
    f = "".join(f"{k}: {v} " for k, v in (("top_k", top_k), ("axis", axis), ("ignore_label", ignore))
                if v is not None)
    t = " top: 'acc' top: 'per_class'" if tops == 2 else ""
    return f"name: 'acc' type: 'Accuracy' accuracy_param {{ {f}}}{t}"


def data(shape, axis, seed, ignore=None, frac=0.3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    lshape = shape[:axis] + shape[axis + 1:]
    lab = rng.integers(0, shape[axis], lshape).astype(float)
    if ignore is not None:
        lab[rng.random(lshape) < frac] = ignore
    return x, lab


@pytest.mark.parametrize("shape, axis", [((3, 5, 4, 3), 1), ((20, 7), 1), ((2, 3, 6), 2), ((4, 6, 2), -2)])
@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("ignore", [None, 1])
def test_forward_against_loops(shape, axis, top_k, ignore):
    x, lab = data(shape, axis % len(shape), 0, ignore)
    layer, b, t = build_layer(proto(top_k, axis if axis != 1 else None, ignore, tops=2), [x, lab])
    acc, per = forward(layer, b, t)
    ref, per_ref = accuracy_ref(x, lab, axis % len(shape), top_k, ignore)
    assert acc.shape == () and per.shape == (shape[axis],)
    np.testing.assert_allclose(acc, ref, rtol=1e-13)
    np.testing.assert_allclose(per, per_ref, rtol=1e-13)


def test_ties_count_against_the_true_class():
    x = np.array([[1.0, 1.0, 0.0], [2.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    lab = np.array([0.0, 0.0, 1.0])
    layer, b, t = build_layer(proto(), [x, lab])
    # sample 0: class 1 ties with the true class -> miss; 1: clear hit; 2: tie -> miss
    np.testing.assert_allclose(forward(layer, b, t)[0], 1 / 3)
    layer, b, t = build_layer(proto(top_k=2), [x, lab])
    np.testing.assert_allclose(forward(layer, b, t)[0], 1.0)


def test_all_ignored_and_absent_classes_give_zero():
    x, lab = data((2, 4, 3, 3), 1, 1)
    lab[...] = 255
    layer, b, t = build_layer(proto(ignore=255, tops=2), [x, lab])
    acc, per = forward(layer, b, t)
    assert acc == 0 and not per.any()


def test_many_pixels_per_class_chunks():
    # more pixels than one per-class chunk holds (4096), so partial sums are added up
    x, lab = data((2, 5, 60, 50), 1, 2, ignore=255, frac=0.2)
    layer, b, t = build_layer(proto(ignore=255, tops=2), [x, lab], dtype=np.float32)
    acc, per = forward(layer, b, t)
    ref, per_ref = accuracy_ref(x.astype(np.float32), lab, 1, 1, 255)
    np.testing.assert_allclose(acc, ref, rtol=1e-6)
    np.testing.assert_allclose(per, per_ref, rtol=1e-6)


def test_perfect_and_fcn_style_scores():
    lab = np.random.default_rng(3).integers(0, 21, (2, 1, 7, 9)).astype(float)
    x = np.eye(21)[lab[:, 0].astype(int)].transpose(0, 3, 1, 2) * 5
    layer, b, t = build_layer(proto(), [x, lab])
    assert forward(layer, b, t)[0] == 1.0


@pytest.mark.parametrize("bad", [5, -1, np.nan])
def test_invalid_labels_are_an_error(bad):
    x, lab = data((2, 5, 3, 3), 1, 4)
    lab[0, 2, 2] = bad
    layer, b, t = build_layer(proto(), [x, lab])
    with pytest.raises(NetdefError, match=r"layer 'acc'.*outside \[0, 5\).*index \(0, 2, 2\)"):
        forward(layer, b, t)


def test_shape_and_parameter_errors():
    with pytest.raises(NetdefError, match=r"label shape \(2, 3, 4\).*score shape \(2, 5, 3, 3\)"):
        build_layer(proto(), [np.zeros((2, 5, 3, 3)), np.zeros((2, 3, 4))])
    with pytest.raises(NetdefError, match="top_k 6 must be between 1 and the number of classes 5"):
        build_layer(proto(top_k=6), [np.zeros((2, 5, 3, 3)), np.zeros((2, 3, 3))])


def test_no_backward_in_a_net():
    net = netdef.Net("""force_backward: true
        input: 'x' input_shape { dim: 2 dim: 3 }
        input: 'label' input_shape { dim: 2 }
        layer { name: 'acc' type: 'Accuracy' bottom: 'x' bottom: 'label' top: 'acc' }""")
    out = net.forward(x=np.array([[1, 2, 3], [3, 2, 1]], np.float32), label=np.array([2, 1], np.float32))
    assert out["acc"] == 0.5
    layer = net.layer_dict["acc"]
    assert not layer.allow_backward(0) and not layer.allow_backward(1)
    net.backward()  # nothing to do, nothing raised


@pytest.mark.gpu
def test_gpu_matches_cpu():
    x, lab = data((2, 21, 70, 90), 1, 5, ignore=255)
    compare_devices(proto(top_k=3, ignore=255, tops=2), [x, lab], rtol=1e-6, atol=1e-7)
