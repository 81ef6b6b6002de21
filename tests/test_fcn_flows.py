"""FCN's Python workflow (net.py -> solve.py with surgery and score -> infer.py), as small
scripts written here in FCN's style, run unchanged through `netdef run` (import caffe = netdef)
on the synthetic segmentation set. Checked: crop offsets against netdef's own coordinate maps,
the bilinear interpolation weights by hand, transplanted weights, score.py's seg_tests against
netdef's own evaluation, and infer's preprocessing by hand against caffe.io.Transformer."""
import json
import sys

import numpy as np
import pytest
from PIL import Image

import netdef
from netdef import caffe_compat, coord_map, proto
from netdef.cli import main
from netdef.solver.evaluation import evaluate

NET_PY = '''
import caffe
from caffe import layers as L, params as P
from caffe.coord_map import crop

MEAN = (104.00699, 116.66877, 122.67892)


def conv_relu(bottom, nout, ks=3, pad=1):
    conv = L.Convolution(bottom, kernel_size=ks, num_output=nout, pad=pad,
                         param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)],
                         weight_filler=dict(type="msra"))
    return conv, L.ReLU(conv, in_place=True)


def upsample(bottom, classes):
    return L.Deconvolution(bottom, param=[dict(lr_mult=0)], convolution_param=dict(
        num_output=classes, kernel_size=4, stride=2, bias_term=False))


def fcn(split, classes=3, size=32):
    n = caffe.NetSpec()
    if split == "deploy":
        n.data = L.Input(shape=dict(dim=[1, 3, size, size]))
    else:
        n.data, n.label = L.SegData(
            ntop=2, image_data_param=dict(source="synthetic", batch_size=1, shuffle=split == "train"),
            transform_param=dict(mean_value=list(MEAN)),
            python_param=dict(param_str=repr(dict(split=split, size=size, classes=classes, count=20))))
    n.conv1, n.relu1 = conv_relu(n.data, 8, pad=10)
    n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2, n.relu2 = conv_relu(n.pool1, 8)
    n.pool2 = L.Pooling(n.relu2, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.fc, n.relu_fc = conv_relu(n.pool2, 16, ks=3, pad=0)
    n.score_fr = L.Convolution(n.relu_fc, num_output=classes, kernel_size=1)
    n.upscore2 = upsample(n.score_fr, classes)
    n.score_pool1 = L.Convolution(n.pool1, num_output=classes, kernel_size=1)
    n.score_pool1c = crop(n.score_pool1, n.upscore2)
    n.fuse = L.Eltwise(n.upscore2, n.score_pool1c, operation=P.Eltwise.SUM)
    n.upscore = upsample(n.fuse, classes)
    n.score = crop(n.upscore, n.data)
    if split != "deploy":
        n.loss = L.SoftmaxWithLoss(n.score, n.label, loss_param=dict(ignore_label=255))
    return n.to_proto()


if __name__ == "__main__":
    for split in ("train", "val", "deploy"):
        with open(split + ".prototxt", "w") as f:
            f.write(str(fcn(split)))
'''

SURGERY_PY = '''
import numpy as np


def bilinear_filter(size):
    """A size x size bilinear interpolation kernel (upsampling by (size + 1) // 2)."""
    f = (size + 1) // 2
    c = f - 1 if size % 2 else f - 0.5
    ramp = 1 - np.abs(np.arange(size) - c) / f
    return np.outer(ramp, ramp)


def interp(net, layers):
    for name in layers:
        w = net.params[name][0].data
        m, k, h, ww = w.shape
        assert m == k and h == ww, (name, w.shape)
        w[...] = 0
        w[np.arange(m), np.arange(k)] = bilinear_filter(h)


def transplant(new_net, net):
    for name in net.params:
        if name not in new_net.params:
            continue
        for src, dst in zip(net.params[name], new_net.params[name]):
            dst.data.flat = src.data.flat
'''

SCORE_PY = '''
import numpy as np


def fast_hist(a, b, n):
    k = (a >= 0) & (a < n)  # drops the ignore label 255
    return np.bincount(n * a[k].astype(int) + b[k], minlength=n ** 2).reshape(n, n)


def compute_hist(net, batches, layer="score", gt="label"):
    n_cl = net.blobs[layer].channels
    hist = np.zeros((n_cl, n_cl))
    loss = 0
    for _ in range(batches):
        net.forward()
        hist += fast_hist(net.blobs[gt].data[0, 0].flatten(),
                          net.blobs[layer].data[0].argmax(0).flatten(), n_cl)
        loss += net.blobs["loss"].data.flat[0]
    return hist, loss / batches


def seg_tests(solver, batches, layer="score", gt="label"):
    solver.test_nets[0].share_with(solver.net)
    hist, loss = compute_hist(solver.test_nets[0], batches, layer, gt)
    iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    return {"iter": solver.iter, "loss": float(loss),
            "overall_acc": float(np.diag(hist).sum() / hist.sum()), "mean_iu": float(np.nanmean(iu))}
'''

SOLVE_PY = '''
import json
import sys

import numpy as np

import caffe
import score
import surgery

caffe.set_mode_cpu()
solver = caffe.SGDSolver("solver.prototxt")
surgery.interp(solver.net, [k for k in solver.net.params.keys() if k.startswith("upscore")])
losses = []
for _ in range(int(sys.argv[1])):
    solver.step(1)
    losses.append(float(solver.net.blobs["loss"].data))
deploy = caffe.Net("deploy.prototxt", caffe.TEST)
surgery.transplant(deploy, solver.net)
deploy.save("trained.caffemodel")
solver.net.save("solver_net.caffemodel")
json.dump({"losses": losses, "score": score.seg_tests(solver, 4)}, open("solve.json", "w"))
'''

INFER_PY = '''
import numpy as np
from PIL import Image

import caffe

im = Image.open("image.png")
in_ = np.array(im, dtype=np.float32)
in_ = in_[:, :, ::-1]
in_ -= np.array((104.00699, 116.66877, 122.67892))
in_ = in_.transpose((2, 0, 1))

net = caffe.Net("deploy.prototxt", "trained.caffemodel", caffe.TEST)
net.blobs["data"].reshape(1, *in_.shape)
net.blobs["data"].data[...] = in_
net.forward()
out = net.blobs["score"].data[0].argmax(axis=0)
np.save("out.npy", out)
np.save("score.npy", net.blobs["score"].data)

t = caffe.io.Transformer({"data": net.blobs["data"].data.shape})
t.set_transpose("data", (2, 0, 1))
t.set_channel_swap("data", (2, 1, 0))
t.set_raw_scale("data", 255)
t.set_mean("data", np.array((104.00699, 116.66877, 122.67892)))
np.save("transformer.npy", t.preprocess("data", caffe.io.load_image("image.png")))
np.save("by_hand.npy", in_)
'''

SOLVER = '''train_net: "train.prototxt"
test_net: "val.prototxt"
test_iter: 4
test_interval: 1000000
test_initialization: false
base_lr: 0.001
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.0005
max_iter: 100
display: 0
random_seed: 3
solver_mode: CPU
'''


@pytest.fixture
def fcn_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    caffe_compat.uninstall()
    for name, text in (("net.py", NET_PY), ("surgery.py", SURGERY_PY), ("solve.py", SOLVE_PY), ("score.py", SCORE_PY),
                       ("infer.py", INFER_PY), ("solver.prototxt", SOLVER)):
        (tmp_path / name).write_text(text)
    yield tmp_path
    caffe_compat.uninstall()
    sys.modules.pop("surgery", None)
    sys.modules.pop("score", None)


def test_fcn_net_solve_infer_flow(fcn_dir):
    assert main(["run", "net.py"]) == 0
    train, _ = proto.read_net_text(str(fcn_dir / "train.prototxt"))
    crops = [l for l in train.layer if l.type == "Crop"]
    made = [list(l.crop_param.offset) for l in crops]
    for l in crops:  # netdef's own coordinate maps (exact fractions) agree with caffe.coord_map.crop
        del l.crop_param.offset[:]
    coord_map.fill_crop_offsets(train)
    assert made == [list(l.crop_param.offset) for l in crops]
    assert all(l.crop_param.axis == 2 for l in crops)

    assert main(["run", "solve.py", "5"]) == 0
    solved = json.loads((fcn_dir / "solve.json").read_text())
    losses = solved["losses"]
    assert len(losses) == 5 and all(np.isfinite(losses))
    solver_net = netdef.Net(str(fcn_dir / "train.prototxt"), netdef.TEST,
                            weights=str(fcn_dir / "solver_net.caffemodel"))
    # score.py's seg_tests (share_with, its own confusion matrix) against netdef's evaluation of
    # the same four validation images with the trained weights
    val = netdef.Net(str(fcn_dir / "val.prototxt"), netdef.TEST,
                     weights=str(fcn_dir / "solver_net.caffemodel"))
    ours = evaluate(val, 4)
    assert solved["score"]["iter"] == 5
    np.testing.assert_allclose(solved["score"]["mean_iu"], ours.segmentation["mean_iu"], rtol=1e-6)
    np.testing.assert_allclose(solved["score"]["overall_acc"], ours.segmentation["pixel_accuracy"], rtol=1e-6)
    np.testing.assert_allclose(solved["score"]["loss"], ours.loss, rtol=1e-5)
    # interp: a 4x4 bilinear kernel is the outer product of (1, 3, 3, 1) / 4, on the diagonal only
    k = np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25])
    for name in ("upscore2", "upscore"):
        w = solver_net.params[name][0].data
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                np.testing.assert_allclose(w[i, j], k if i == j else 0, atol=1e-7)
    # transplant: the deploy weights are the trained ones
    deploy = netdef.Net(str(fcn_dir / "deploy.prototxt"), netdef.TEST,
                        weights=str(fcn_dir / "trained.caffemodel"))
    assert set(deploy.params) == set(solver_net.params)
    for name in deploy.params:
        for a, b in zip(deploy.params[name], solver_net.params[name]):
            np.testing.assert_array_equal(a.data, b.data)

    # Not the deploy net's 32x32: infer.py's data.reshape() + forward() must reshape the whole
    # net, so the score map has the image's size.
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(fcn_dir / "image.png")
    assert main(["run", "infer.py"]) == 0
    out = np.load(fcn_dir / "out.npy")
    score = np.load(fcn_dir / "score.npy")
    assert out.shape == (40, 48) and score.shape == (1, 3, 40, 48)
    np.testing.assert_array_equal(out, score[0].argmax(0))
    by_hand = (rgb[:, :, ::-1].astype(np.float64) - [104.00699, 116.66877, 122.67892]).transpose(2, 0, 1)
    np.testing.assert_allclose(np.load(fcn_dir / "by_hand.npy"), by_hand, atol=1e-3)
    np.testing.assert_allclose(np.load(fcn_dir / "transformer.npy"), by_hand, atol=1e-3)
