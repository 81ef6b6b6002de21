"""Caffe's example nets build and train: prototxts with the layer lists of Caffe's CIFAR-10 quick
and full, CaffeNet and GoogLeNet train_val files (tests/data/caffe_nets/, narrower and with
smaller batches; see each file's header), with Caffe's own LMDB and mean_file paths, read in a
directory laid out like Caffe's root whose databases `netdef convert-imageset` builds from random
images (and whose mean `netdef compute-image-mean` computes), as Caffe's create_*.sh scripts do.

Each net: the solver (the published hyper-parameters of Caffe's solver for it) builds the TRAIN
and TEST nets, the blobs get the shapes Caffe's nets have, one solver step tests (TEST phase)
and trains (TRAIN phase) and moves every learned parameter, and a forward / backward in both
phases gives finite losses and gradients."""
import os

import numpy as np
import pytest
from PIL import Image

import netdef
from netdef import netdef_pb2 as pb
from netdef.cli import main

pytest.importorskip("lmdb")

NETS = os.path.join(os.path.dirname(__file__), "data", "caffe_nets")
CLASSES = 10


def write_images(directory, count, size_range, seed):
    """`count` random RGB PNGs of random sizes in `directory`, and a list file of
    '<name> <label>' lines (labels cycling through the classes)."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory)
    lines = []
    for i in range(count):
        h, w = (int(rng.integers(*size_range)) for _ in range(2))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(os.path.join(directory, f"{i}.png"))
        lines.append(f"{i}.png {i % CLASSES}")
    with open(directory + ".txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    return directory + ".txt"


@pytest.fixture(scope="module")
def caffe_root(tmp_path_factory):
    """A directory with Caffe's paths: examples/cifar10/{cifar10_train_lmdb, cifar10_test_lmdb,
    mean.binaryproto}, examples/imagenet/{ilsvrc12_train_lmdb, ilsvrc12_val_lmdb} and
    data/ilsvrc12/imagenet_mean.binaryproto."""
    root = str(tmp_path_factory.mktemp("caffe_root"))
    raw = os.path.join(root, "raw")
    os.makedirs(os.path.join(root, "examples", "cifar10"))
    os.makedirs(os.path.join(root, "examples", "imagenet"))
    os.makedirs(os.path.join(root, "data", "ilsvrc12"))
    convert = ["convert-imageset", "--no-progress"]
    for split, count, seed in (("train", 12, 0), ("test", 6, 1)):
        listfile = write_images(os.path.join(raw, f"cifar_{split}"), count, (32, 33), seed)
        db = os.path.join(root, "examples", "cifar10", f"cifar10_{split}_lmdb")
        assert main(convert + [os.path.join(raw, f"cifar_{split}") + "/", listfile, db]) == 0
    for split, count, seed in (("train", 6, 2), ("val", 4, 3)):
        # create_imagenet.sh: --resize_height=256 --resize_width=256 --shuffle
        listfile = write_images(os.path.join(raw, f"imagenet_{split}"), count, (40, 90), seed)
        db = os.path.join(root, "examples", "imagenet", f"ilsvrc12_{split}_lmdb")
        assert main(convert + ["--resize_height=256", "--resize_width=256", "--shuffle", "--seed=1",
                               os.path.join(raw, f"imagenet_{split}") + "/", listfile, db]) == 0
    assert main(["compute-image-mean", "--no-progress", os.path.join(root, "examples/cifar10/cifar10_train_lmdb"),
                 os.path.join(root, "examples/cifar10/mean.binaryproto")]) == 0
    assert main(["compute-image-mean", "--no-progress", os.path.join(root, "examples/imagenet/ilsvrc12_train_lmdb"),
                 os.path.join(root, "data/ilsvrc12/imagenet_mean.binaryproto")]) == 0
    return root


# prototxt, the hyper-parameters of Caffe's solver for it, (TRAIN, TEST) batch sizes, and blob
# shapes (without the batch axis) as Caffe's nets have them at this width.
CASES = {
    "cifar10_quick": ("cifar10_quick_train_test.prototxt",
                      dict(base_lr=0.001, momentum=0.9, weight_decay=0.004, lr_policy="fixed"), (8, 4),
                      {"data": (3, 32, 32), "conv1": (32, 32, 32), "pool1": (32, 16, 16), "pool2": (32, 8, 8),
                       "pool3": (64, 4, 4), "ip1": (64,), "ip2": (10,)}),
    "cifar10_full": ("cifar10_full_train_test.prototxt",
                     dict(base_lr=0.001, momentum=0.9, weight_decay=0.004, lr_policy="fixed"), (8, 4),
                     {"norm1": (32, 16, 16), "norm2": (32, 8, 8), "pool3": (64, 4, 4), "ip1": (10,)}),
    "caffenet": ("caffenet_train_val.prototxt",
                 dict(base_lr=0.01, lr_policy="step", gamma=0.1, stepsize=100000, momentum=0.9,
                      weight_decay=0.0005), (4, 2),
                 {"data": (3, 227, 227), "conv1": (12, 55, 55), "pool1": (12, 27, 27), "conv2": (32, 27, 27),
                  "pool2": (32, 13, 13), "conv5": (32, 13, 13), "pool5": (32, 6, 6), "fc7": (512,), "fc8": (10,)}),
    "googlenet": ("googlenet_train_val.prototxt",
                  dict(base_lr=0.01, lr_policy="poly", power=0.5, max_iter=2400000, momentum=0.9,
                       weight_decay=0.0002), (4, 2),
                  {"data": (3, 224, 224), "conv1/7x7_s2": (8, 112, 112), "pool1/3x3_s2": (8, 56, 56),
                   "pool2/3x3_s2": (24, 28, 28), "inception_3a/output": (32, 28, 28),
                   "inception_3b/output": (60, 28, 28), "inception_4a/output": (64, 14, 14),
                   "loss1/ave_pool": (64, 4, 4), "loss1/fc": (128,), "inception_4e/output": (104, 14, 14),
                   "inception_5b/output": (128, 7, 7), "pool5/7x7_s1": (128, 1, 1), "loss3/classifier": (10,)}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_caffe_example_net_builds_and_trains(caffe_root, monkeypatch, case):
    prototxt, hyper, (train_batch, test_batch), shapes = CASES[case]
    monkeypatch.chdir(caffe_root)  # Caffe's paths are relative to its root, as `caffe train` runs there
    param = pb.SolverParameter(net=os.path.join(NETS, prototxt), test_iter=[1], test_interval=1, display=0,
                               random_seed=3, **hyper)
    solver = netdef.get_solver(param)
    train, test = solver.net, solver.test_nets[0]
    try:
        for name, shape in shapes.items():
            assert train.blobs[name].shape == (train_batch,) + shape, name
            assert test.blobs[name].shape == (test_batch,) + shape, name
        learned = {(layer, k): p.data.copy() for layer, ps in train.params.items()
                   for k, p in enumerate(ps)}
        solver.step(1)  # tests first (TEST phase, iteration 0), then one TRAIN forward/backward and update
        assert solver.iter == 1 and np.isfinite(solver.losses[0]) and solver.losses[0] > 0
        unchanged = [key for key, before in learned.items()
                     if np.array_equal(train.params[key[0]][key[1]].data, before)]
        assert not unchanged, f"parameters the step did not move: {unchanged}"
        accuracies = [n for n in test.outputs if "top-1" in n or n == "accuracy"]
        assert accuracies and all(0 <= test.blobs[n].data <= 1 for n in accuracies)
        first_conv = next(layer for layer in train.params if layer.startswith("conv1"))
        for net in (train, test):
            net.clear_param_diffs()
            outputs = net.forward()
            net.backward()
            losses = [n for n in net.outputs if net.blob_loss_weights.get(n)]
            assert losses and all(np.isfinite(outputs[n]).all() and outputs[n] > 0 for n in losses)
            grad = net.params[first_conv][0].diff
            assert np.isfinite(grad).all() and np.abs(grad).max() > 0
    finally:
        for net in [train] + solver.test_nets:
            net.close()
