"""SoftmaxWithLoss: per-pixel loss and gradient against a numpy reference under every
normalization (FULL, VALID, BATCH_SIZE, NONE) with and without ignore_label, the legacy
`normalize` mapping, loss_weight through the Net, the probability top, FLT_MIN clamping,
all-ignored batches, label errors (found in the kernel), GPU against CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef import netdef_pb2 as pb
from netdef.errors import NetdefError

FLT_MIN = float(np.finfo(np.float32).tiny)
MODES = ["FULL", "VALID", "BATCH_SIZE", "NONE"]


def loss_ref(x, labels, axis=1, ignore=None, mode="VALID"):
    """(loss, dloss/dx) by loops over every (outer, inner) position."""
    xm = np.moveaxis(x, axis, -1)
    outer = int(np.prod(x.shape[:axis]))
    C = x.shape[axis]
    flat = xm.reshape(outer, -1, C)  # (outer, inner, C)
    lab = labels.reshape(outer, -1)
    grad = np.zeros_like(flat)
    total, valid = 0.0, 0
    for o in range(outer):
        for t in range(flat.shape[1]):
            l = int(lab[o, t])
            if ignore is not None and l == ignore:
                continue
            e = np.exp(flat[o, t] - flat[o, t].max())
            p = e / e.sum()
            total -= np.log(max(p[l], FLT_MIN))
            valid += 1
            grad[o, t] = p
            grad[o, t, l] -= 1
    norm = {"FULL": lab.size, "VALID": valid, "BATCH_SIZE": outer, "NONE": 1}[mode]
    norm = max(norm, 1)
    g = np.moveaxis(grad.reshape(xm.shape), -1, axis) / norm
    return total / norm, g


def proto(mode=None, ignore=None, axis=None, normalize=None):
    lp = ""
    if mode is not None:
        lp += f"normalization: {mode} "
    if ignore is not None:
        lp += f"ignore_label: {ignore} "
    if normalize is not None:
        lp += f"normalize: {'true' if normalize else 'false'} "
    sp = f"softmax_param {{ axis: {axis} }}" if axis is not None else ""
    return f"name: 'loss' type: 'SoftmaxWithLoss' loss_param {{ {lp}}} {sp}"


def data(shape, C, seed, ignore=None, frac=0.3, label_shape=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2
    N, H, W = shape[0], shape[2], shape[3]
    lab = rng.integers(0, C, (N, 1, H, W)).astype(float)
    if ignore is not None:
        lab[rng.random(lab.shape) < frac] = ignore
    return x, lab.reshape(label_shape) if label_shape else lab


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ignore", [None, 255, -1])
def test_forward_and_backward_against_reference(mode, ignore):
    x, lab = data((3, 5, 4, 3), 5, 0, ignore)
    layer, b, t = build_layer(proto(mode, ignore), [x, lab])
    (loss,) = forward(layer, b, t)
    ref, g = loss_ref(x, lab, 1, ignore, mode)
    assert loss.shape == ()
    np.testing.assert_allclose(loss, ref, rtol=1e-12)
    t[0].diff[...] = 1.7  # the loss weight, as the Net writes it
    layer.backward(t, [True, False], b)
    np.testing.assert_allclose(b[0].diff, 1.7 * g, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ignore", [None, 3])
def test_gradient(mode, ignore):
    x, lab = data((2, 4, 3, 2), 4, 1, ignore, frac=0.4)
    check_gradients(proto(mode, ignore), [x, lab])


def test_label_shapes_n_h_w_and_other_axes():
    x, lab = data((2, 3, 4, 5), 3, 2, label_shape=(2, 4, 5))
    layer, b, t = build_layer(proto(), [x, lab])
    np.testing.assert_allclose(forward(layer, b, t)[0], loss_ref(x, lab)[0], rtol=1e-12)
    # classes on the last axis: scores (N, H, C), labels (N, H)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 6))
    lab = rng.integers(0, 6, (3, 4)).astype(float)
    for axis in (2, -1):
        layer, b, t = build_layer(proto("FULL", axis=axis), [x, lab])
        np.testing.assert_allclose(forward(layer, b, t)[0], loss_ref(x, lab, 2, None, "FULL")[0], rtol=1e-12)
    check_gradients(proto("BATCH_SIZE", axis=2), [x, lab])


@pytest.mark.parametrize("mode", MODES)
def test_all_ignored_gives_zero_loss_and_gradient(mode):
    x, lab = data((2, 3, 3, 3), 3, 4)
    lab[...] = 255
    layer, b, t = build_layer(proto(mode, 255), [x, lab])
    (loss,) = forward(layer, b, t)
    assert loss == 0
    t[0].diff[...] = 1
    layer.backward(t, [True, False], b)
    np.testing.assert_array_equal(b[0].diff, 0)


def test_legacy_normalize_mapping():
    def mode_of(text):
        layer, _, _ = build_layer(text, list(data((1, 2, 2, 2), 2, 5)))
        return layer.normalization

    N = pb.LossParameter
    assert mode_of(proto()) == N.VALID                          # the default
    assert mode_of(proto(normalize=True)) == N.VALID
    assert mode_of(proto(normalize=False)) == N.BATCH_SIZE      # FCN's `normalize: false`
    assert mode_of(proto("FULL", normalize=False)) == N.FULL    # normalization wins when set
    assert mode_of(proto("NONE", normalize=True)) == N.NONE
    # FCN: ignore_label 255, normalize false => loss summed over pixels, divided by N
    x, lab = data((2, 21, 4, 4), 21, 6, 255)
    layer, b, t = build_layer(proto(ignore=255, normalize=False), [x, lab])
    np.testing.assert_allclose(forward(layer, b, t)[0], loss_ref(x, lab, 1, 255, "BATCH_SIZE")[0], rtol=1e-12)


def test_probability_top_and_flt_min_clamp():
    x = np.zeros((1, 3, 1, 2))
    x[0, :, 0, 0] = [0.0, -200.0, 1.0]   # p[1] = e^-201 / ... underflows FLT_MIN
    x[0, :, 0, 1] = [2.0, 1.0, 0.0]
    lab = np.array([1.0, 0.0]).reshape(1, 1, 1, 2)
    layer, b, t = build_layer(proto("NONE") + " top: 'loss' top: 'prob'", [x, lab])
    loss, prob = forward(layer, b, t)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(prob, e / e.sum(axis=1, keepdims=True), rtol=1e-13)
    p01 = prob[0, 0, 0, 1]
    np.testing.assert_allclose(loss, -np.log(FLT_MIN) - np.log(p01), rtol=1e-12)
    assert abs(-np.log(FLT_MIN) - 87.33654475) < 1e-6


def test_labels_are_truncated_as_caffe_casts_them():
    x, lab = data((1, 4, 2, 3), 4, 7)
    layer, b, t = build_layer(proto(), [x, lab + 0.7])
    np.testing.assert_allclose(forward(layer, b, t)[0], loss_ref(x, lab)[0], rtol=1e-12)


def test_loss_weight_through_the_net():
    x, lab = data((2, 3, 2, 2), 3, 8, 255)
    text = """force_backward: true
        input: 'x' input_shape { dim: 2 dim: 3 dim: 2 dim: 2 }
        input: 'label' input_shape { dim: 2 dim: 1 dim: 2 dim: 2 }
        layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'x' bottom: 'label' top: 'loss'
                loss_weight: 2.5 loss_param { ignore_label: 255 normalize: false } }"""
    net = netdef.Net(text, dtype=np.float64)
    out = net.forward(x=x, label=lab)
    ref, g = loss_ref(x, lab, 1, 255, "BATCH_SIZE")
    np.testing.assert_allclose(out["loss"], ref, rtol=1e-12)
    np.testing.assert_allclose(net.last_loss, 2.5 * ref, rtol=1e-12)
    diffs = net.backward()
    np.testing.assert_allclose(diffs["x"], 2.5 * g, rtol=1e-12, atol=1e-15)
    # the default loss weight is 1 on the loss top
    net = netdef.Net(text.replace("loss_weight: 2.5", ""), dtype=np.float64)
    net.forward(x=x, label=lab)
    np.testing.assert_allclose(net.backward()["x"], g, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("bad, ignore", [(4, None), (-1, None), (255, None), (254, 255), (np.nan, 255),
                                         (1e30, None)])
def test_invalid_labels_are_an_error(bad, ignore):
    x, lab = data((2, 4, 3, 3), 4, 9)
    lab[1, 0, 2, 1] = bad
    layer, b, t = build_layer(proto(ignore=ignore), [x, lab])
    with pytest.raises(NetdefError, match=r"layer 'loss'.*1 label\(s\) outside \[0, 4\).*at index "
                                          r"\(1, 0, 2, 1\) of the label blob \(2, 1, 3, 3\)"):
        forward(layer, b, t)


def test_label_count_mismatch_names_both_shapes():
    with pytest.raises(NetdefError, match=r"label shape \(2, 1, 3, 4\).*score shape \(2, 5, 4, 4\)"):
        build_layer(proto(), [np.zeros((2, 5, 4, 4)), np.zeros((2, 1, 3, 4))])


def test_label_batch_mismatch_is_an_error_even_with_the_right_count():
    # Caffe's LossLayer checks the first dimension before SoftmaxWithLoss checks the count
    with pytest.raises(NetdefError, match=r"label shape \(4, 1, 2, 4\) and score shape \(2, 3, 4, 4\) "
                                          r"must have the same first"):
        build_layer(proto(), [np.zeros((2, 3, 4, 4)), np.zeros((4, 1, 2, 4))])


def test_no_gradient_to_labels():
    x, lab = data((1, 3, 2, 2), 3, 10)
    layer, b, t = build_layer(proto(), [x, lab])
    forward(layer, b, t)
    assert not layer.allow_backward(1)
    with pytest.raises(NetdefError, match="cannot backpropagate to the label"):
        layer.backward(t, [True, True], b)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_gpu_matches_cpu(mode):
    x, lab = data((2, 21, 13, 17), 21, 11, 255)
    compare_devices(proto(mode, 255) + " top: 'loss' top: 'prob'", [x, lab], rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
def test_gpu_invalid_label_is_an_error():
    x, lab = data((2, 4, 3, 3), 4, 12)
    lab[0, 0, 1, 1] = 7
    layer, b, t = build_layer(proto(), [x, lab], backend=netdef.get_backend("gpu"))
    with pytest.raises(NetdefError, match=r"outside \[0, 4\).*index \(0, 0, 1, 1\)"):
        forward(layer, b, t)
