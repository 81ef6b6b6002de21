"""InfogainLoss (Caffe's current layer: softmax over `axis` inside) against a numpy loop, with H
from a third bottom and from a .binaryproto source, ignore_label and normalization, H = I
against SoftmaxWithLoss, the finite-difference gradient, errors, GPU against CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef import proto as nproto
from netdef.errors import LayerSetupError, NetdefError, ShapeError


def reference(x, lab, H, axis=1, ignore=None, mode="VALID"):
    xm = np.moveaxis(x, axis, -1)
    C = x.shape[axis]
    outer = int(np.prod(x.shape[:axis]))
    flat = xm.reshape(outer, -1, C)
    labs = lab.reshape(outer, -1)
    grad = np.zeros_like(flat)
    loss, valid = 0.0, 0
    for o in range(outer):
        for t in range(flat.shape[1]):
            l = int(labs[o, t])
            if ignore is not None and l == ignore:
                continue
            e = np.exp(flat[o, t] - flat[o, t].max())
            p = e / e.sum()
            loss -= sum(H[l, c] * np.log(max(p[c], 1e-20)) for c in range(C))
            grad[o, t] = p * H[l].sum() - H[l]
            valid += 1
    norm = max({"FULL": labs.size, "VALID": valid, "BATCH_SIZE": outer, "NONE": 1}[mode], 1)
    return loss / norm, np.moveaxis(grad.reshape(xm.shape), -1, axis) / norm


def proto(mode=None, ignore=None, axis=None, source=None, extra=""):
    lp = "" if mode is None else f"normalization: {mode} "
    lp += "" if ignore is None else f"ignore_label: {ignore} "
    ip = "" if axis is None else f"axis: {axis} "
    ip += "" if source is None else f"source: '{source}' "
    return f"name: 'ig' type: 'InfogainLoss' loss_param {{ {lp}{extra}}} infogain_loss_param {{ {ip}}}"


def data(seed, shape=(2, 4, 3, 2), ignore=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    C = shape[1]
    lab = rng.integers(0, C, (shape[0],) + shape[2:]).astype(float)
    if ignore is not None:
        lab[rng.random(lab.shape) < 0.3] = ignore
    H = rng.random((C, C)) + np.eye(C)
    return x, lab, H


@pytest.mark.parametrize("mode", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
def test_third_bottom_against_reference(mode):
    x, lab, H = data(0, ignore=7)
    layer, b, top = build_layer(proto(mode, 7) + " top: 'l' top: 'p'", [x, lab, H])
    loss, prob = forward(layer, b, top)
    ref, g = reference(x, lab, H, 1, 7, mode)
    np.testing.assert_allclose(loss, ref, rtol=1e-12)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(prob, e / e.sum(axis=1, keepdims=True), rtol=1e-12)
    top[0].diff[...] = 1.3
    layer.backward(top, [True, False, False], b)
    np.testing.assert_allclose(b[0].diff, 1.3 * g, rtol=1e-11, atol=1e-15)


def test_source_file_and_axis(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 5))  # classes on the last axis
    lab = rng.integers(0, 5, (3, 2)).astype(float)
    H = rng.random((5, 5))
    path = tmp_path / "H.binaryproto"
    path.write_bytes(nproto.blob_to_proto(H.astype(np.float32).reshape(1, 1, 5, 5)).SerializeToString())
    layer, b, top = build_layer(proto(axis=-1, source=str(path)), [x, lab])
    (loss,) = forward(layer, b, top)
    np.testing.assert_allclose(loss, reference(x, lab, H.astype(np.float32), 2)[0], rtol=1e-6)
    check_gradients(proto("FULL", axis=2, source=str(path)), [x, lab])


def test_relative_source_next_to_the_prototxt_first(tmp_path, monkeypatch):
    """A relative source resolves as the data layers' do (data/transform.resolve_path): beside
    the prototxt when it is there, even if the working directory holds a file of that name."""
    import netdef

    def write_H(where, value):
        where.mkdir(exist_ok=True)
        H = np.full((1, 1, 3, 3), value, np.float32)
        (where / "H.binaryproto").write_bytes(nproto.blob_to_proto(H).SerializeToString())

    write_H(tmp_path / "net", 2.0)
    write_H(tmp_path / "cwd", 5.0)
    (tmp_path / "net" / "loss.prototxt").write_text(
        "input: 'x' input_shape { dim: 2 dim: 3 } input: 'y' input_shape { dim: 2 }\n"
        "layer { name: 'loss' type: 'InfogainLoss' bottom: 'x' bottom: 'y' top: 'loss'\n"
        "        infogain_loss_param { source: 'H.binaryproto' } }\n")
    monkeypatch.chdir(tmp_path / "cwd")
    net = netdef.Net(str(tmp_path / "net" / "loss.prototxt"), netdef.TEST)
    net.blobs["x"].data[...] = 0.0
    net.blobs["y"].data[...] = 1
    # uniform scores: p = 1/3 each, L = -sum_c H[l, c] log(1/3) per position, averaged
    np.testing.assert_allclose(float(net.forward()["loss"]), 3 * 2.0 * np.log(3), rtol=1e-5)
    (tmp_path / "net" / "H.binaryproto").unlink()  # then the working directory's
    net = netdef.Net(str(tmp_path / "net" / "loss.prototxt"), netdef.TEST)
    net.blobs["x"].data[...] = 0.0
    net.blobs["y"].data[...] = 1
    np.testing.assert_allclose(float(net.forward()["loss"]), 3 * 5.0 * np.log(3), rtol=1e-5)


def test_identity_H_is_softmax_with_loss():
    x, lab, _ = data(2, ignore=255)
    ig, b, top = build_layer(proto(ignore=255), [x, lab, np.eye(4)])
    sm, b2, top2 = build_layer("type: 'SoftmaxWithLoss' loss_param { ignore_label: 255 }", [x, lab])
    np.testing.assert_allclose(forward(ig, b, top)[0], forward(sm, b2, top2)[0], rtol=1e-12)


@pytest.mark.parametrize("ignore", [None, 2])
def test_gradient(ignore):
    x, lab, H = data(3, (2, 3, 2, 3), ignore)
    check_gradients(proto("VALID", ignore), [x, lab, H])


def test_errors(tmp_path):
    x, lab, H = data(4)
    with pytest.raises(LayerSetupError, match="source"):
        build_layer(proto(), [x, lab])
    with pytest.raises(LayerSetupError, match="cannot read the H matrix"):
        build_layer(proto(source=str(tmp_path / "missing.binaryproto")), [x, lab])
    with pytest.raises(ShapeError, match="4 x 4"):
        build_layer(proto(), [x, lab, H[:3, :3]])
    with pytest.raises(LayerSetupError, match="normalize is deprecated"):
        build_layer(proto(extra="normalize: true "), [x, lab, H])
    bad = lab.copy()
    bad[1, 0, 1] = 9
    layer, b, top = build_layer(proto(), [x, bad, H])
    with pytest.raises(NetdefError, match=r"outside \[0, 4\)"):
        forward(layer, b, top)
    layer, b, top = build_layer(proto(), [x, lab, H])
    forward(layer, b, top)
    with pytest.raises(NetdefError, match="infogain matrix"):
        layer.backward(top, [True, False, True], b)


@pytest.mark.gpu
def test_gpu_matches_cpu():
    x, lab, H = data(5, (3, 5, 2, 3), 1)
    compare_devices(proto("VALID", 1), [x, lab, H])
