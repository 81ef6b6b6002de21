#!/usr/bin/env python3
"""Writes the FCN model prototxts (train, val, deploy) with netdef's NetSpec.

    python models/fcn.py                      # regenerate every model directory
    python models/fcn.py --classes 4 --only fcn8s

FCN-32s/16s/8s are the paper's VGG16 nets, with the layer names, parameter shapes and crop
offsets of the published prototxts (conv1_1 pad 100; fc6 a 7x7 conv, fc7 1x1; score_fr; fixed
bilinear Deconvolution upsampling; score_pool4/score_pool3 skips aligned by Crop and fused by
Eltwise SUM; SoftmaxWithLoss ignoring 255). fcn32s-mini, fcn16s-mini and fcn8s-mini are the
three at 1/8 width for CPUs (the paper's comparison of skips on a CPU budget). colour-only is
the baseline without spatial context: three 1x1 convolutions, each pixel classified by its own
colour alone. The crop offsets are not typed in: netdef.coord_map computes them from the layer
geometry.
"""
import argparse
import os

HERE = os.path.dirname(os.path.abspath(__file__))

#: The models trained from scratch here (the minis and colour-only) scale their mean-subtracted
#: input by this, in a Power layer `data_scale` of every phase (so deploy nets take the same
#: input, and the data blob stays as given): MSRA-initialised convolutions on raw +-128 pixels start with scores in the hundreds
#: (initial loss ~70), and fcn8s-mini reached val mean IU 0.30 in 400 iterations; scaled, 0.48.
#: The paper's nets keep the published topology.
INPUT_SCALE = 1 / 128

# skips: pooling stages fused into the score; width: channel divisor; fc: fc6/fc7 width;
# input_scale: see INPUT_SCALE; cpu_solver: solver.prototxt written with CPU_SCHEDULE
VARIANTS = {
    "fcn32s": dict(skips=(), width=1, fc=4096),
    "fcn16s": dict(skips=("pool4",), width=1, fc=4096),
    "fcn8s": dict(skips=("pool4", "pool3"), width=1, fc=4096),
    "fcn32s-mini": dict(skips=(), width=8, fc=256, input_scale=INPUT_SCALE, cpu_solver=True),
    "fcn16s-mini": dict(skips=("pool4",), width=8, fc=256, input_scale=INPUT_SCALE, cpu_solver=True),
    "fcn8s-mini": dict(skips=("pool4", "pool3"), width=8, fc=256, input_scale=INPUT_SCALE, cpu_solver=True),
    "colour-only": dict(pixelwise=(64, 64), input_scale=INPUT_SCALE, cpu_solver=True),
}
VGG16 = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]

#: The one training schedule of the models trained from scratch on CPUs (the minis and
#: colour-only), written into their solver.prototxt so the skip comparison runs each on the
#: same budget (bench/fcn_variants.py): Adam at 1e-3, divided by 10 for the last 500 of 2500
#: iterations, no weight decay. Chosen by the runs in models/README.md (2e-3 with poly decay
#: did worse; weight decay 5e-4 and 400 training images ended ~0.1 mean IU lower).
CPU_SCHEDULE = [("type", '"Adam"'), ("base_lr", 0.001), ("momentum", 0.9), ("momentum2", 0.999),
                ("lr_policy", '"multistep"'), ("gamma", 0.1), ("stepvalue", 2000), ("weight_decay", 0),
                ("max_iter", 2500)]
#: Images of the synthetic set the models train and validate on: 2500 iterations of batch 4 see
#: each of 2000 training images five times (400 images, seen 25 times, let the nets overfit
#: them: val loss 0.18 against train loss 0.13); the 100 val images are ids 2000-2099.
TRAIN_COUNT, VAL_COUNT = 2000, 100
CPU_TEST_INTERVAL = 500


def _conv(L, bottom, nout, ks=3, pad=1, fill="msra"):
    return L.Convolution(bottom, num_output=nout, kernel_size=ks, pad=pad,
                         param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)],
                         weight_filler=dict(type=fill), bias_filler=dict(type="constant"))


def _upscore(L, bottom, classes, factor):
    """Fixed bilinear upsampling by `factor`: kernel 2f, stride f, one group per class (the
    depthwise layout the bilinear filler fills correctly; see models/README.md)."""
    return L.Deconvolution(bottom, param=[dict(lr_mult=0)], convolution_param=dict(
        num_output=classes, group=classes, bias_term=False, kernel_size=2 * factor, stride=factor,
        weight_filler=dict(type="bilinear")))


def fcn(variant, classes, data_layer, phase):
    """NetSpec of one FCN; `data_layer(n)` sets n.data (and n.label unless deploy)."""
    from netdef.pycaffe.net_spec import L, NetSpec, P

    cfg = VARIANTS[variant]
    n = NetSpec()
    data_layer(n)
    bottom = n.data
    if "input_scale" in cfg:  # a top of its own: in place it would rescale an Input's data at every forward
        n.data_scale = L.Power(n.data, power_param=dict(scale=cfg["input_scale"]))
        bottom = n.data_scale
    if "pixelwise" in cfg:
        return _pixelwise(n, bottom, cfg["pixelwise"], classes, phase)
    for stage, (width, convs) in enumerate(VGG16, 1):
        for k in range(1, convs + 1):
            pad = 100 if (stage, k) == (1, 1) else 1
            setattr(n, f"conv{stage}_{k}", _conv(L, bottom, width // cfg["width"], pad=pad))
            bottom = getattr(n, f"conv{stage}_{k}")
            setattr(n, f"relu{stage}_{k}", L.ReLU(bottom, in_place=True))
        setattr(n, f"pool{stage}", L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=2, stride=2))
        bottom = getattr(n, f"pool{stage}")
    n.fc6 = _conv(L, n.pool5, cfg["fc"], ks=7, pad=0)
    n.relu6 = L.ReLU(n.fc6, in_place=True)
    if phase != "deploy":  # as in the published deploy net, which has no Dropout
        n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7 = _conv(L, n.relu6, cfg["fc"], ks=1, pad=0)
    n.relu7 = L.ReLU(n.fc7, in_place=True)
    if phase != "deploy":
        n.drop7 = L.Dropout(n.relu7, dropout_ratio=0.5, in_place=True)
    n.score_fr = _conv(L, n.relu7, classes, ks=1, pad=0)
    skips = cfg["skips"]
    if not skips:
        n.upscore = _upscore(L, n.score_fr, classes, 32)
        n.score = L.Crop(n.upscore, n.data, axis=2)
    else:
        n.upscore2 = _upscore(L, n.score_fr, classes, 2)
        n.score_pool4 = _conv(L, n.pool4, classes, ks=1, pad=0)
        n.score_pool4c = L.Crop(n.score_pool4, n.upscore2, axis=2)
        n.fuse_pool4 = L.Eltwise(n.upscore2, n.score_pool4c, operation=P.Eltwise.SUM)
        if len(skips) == 1:
            n.upscore16 = _upscore(L, n.fuse_pool4, classes, 16)
            n.score = L.Crop(n.upscore16, n.data, axis=2)
        else:
            n.upscore_pool4 = _upscore(L, n.fuse_pool4, classes, 2)
            n.score_pool3 = _conv(L, n.pool3, classes, ks=1, pad=0)
            n.score_pool3c = L.Crop(n.score_pool3, n.upscore_pool4, axis=2)
            n.fuse_pool3 = L.Eltwise(n.upscore_pool4, n.score_pool3c, operation=P.Eltwise.SUM)
            n.upscore8 = _upscore(L, n.fuse_pool3, classes, 8)
            n.score = L.Crop(n.upscore8, n.data, axis=2)
    if phase != "deploy":
        n.loss = L.SoftmaxWithLoss(n.score, n.label, loss_param=dict(ignore_label=255, normalization=P.Loss.VALID))
    return n


def _pixelwise(n, bottom, widths, classes, phase):
    """1x1 convolutions only: the score of a pixel sees that pixel's colour and nothing else."""
    from netdef.pycaffe.net_spec import L, P

    for i, width in enumerate(widths, 1):
        setattr(n, f"conv{i}", _conv(L, bottom, width, ks=1, pad=0))
        bottom = getattr(n, f"conv{i}")
        setattr(n, f"relu{i}", L.ReLU(bottom, in_place=True))
    n.score = _conv(L, bottom, classes, ks=1, pad=0)
    if phase != "deploy":
        n.loss = L.SoftmaxWithLoss(n.score, n.label, loss_param=dict(ignore_label=255, normalization=P.Loss.VALID))
    return n


def write_model(variant, classes, out_dir, size, batch, count=TRAIN_COUNT, val_count=VAL_COUNT):
    from google.protobuf import text_format

    from netdef.pycaffe.coord_map import fill_crop_offsets
    from netdef.pycaffe.net_spec import L

    def deploy_data(n):
        n.data = L.Input(shape=dict(dim=[1, 3, size, size]))

    os.makedirs(out_dir, exist_ok=True)
    nets = {"deploy": fcn(variant, classes, deploy_data, "deploy")}
    for phase, split in (("train", "train"), ("val", "val")):
        def seg_data(n, split=split, phase=phase):
            n.data, n.label = _segmentation_data(L, split, phase, classes, size, batch, count, val_count)
        nets[phase] = fcn(variant, classes, seg_data, phase)
    for phase, spec in nets.items():
        proto = fill_crop_offsets(spec.to_proto(variant))
        header = (f"# {variant} ({phase}), {classes} classes: written by models/fcn.py "
                  "(edit that, not this file)\n")
        with open(os.path.join(out_dir, f"{phase}.prototxt"), "w") as f:
            f.write(header + text_format.MessageToString(proto))


def write_solver(variant, out_dir):
    """solver.prototxt with CPU_SCHEDULE, validating (and snapshotting) every CPU_TEST_INTERVAL."""
    lines = [f"# {variant} on the built-in synthetic segmentation set, for CPUs (see models/README.md):",
             "# written by models/fcn.py (edit CPU_SCHEDULE there, not this file)",
             'train_net: "train.prototxt"', 'test_net: "val.prototxt"', "test_iter: 100",
             f"test_interval: {CPU_TEST_INTERVAL}", "test_initialization: false", "display: 20",
             "average_loss: 20"]
    lines += [f"{key}: {value}" for key, value in CPU_SCHEDULE]
    max_iter = dict(CPU_SCHEDULE)["max_iter"]
    lines += [f"snapshot: {max_iter // 2}", f'snapshot_prefix: "{variant}"', "solver_mode: CPU",
              "random_seed: 1701"]
    with open(os.path.join(out_dir, "solver.prototxt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _segmentation_data(L, split, phase, classes, size, batch, count, val_count):
    """SegData on the built-in synthetic set; point image_data_param.source at a PASCAL VOC
    directory (and drop the synthetic keys of param_str) to train on VOC instead."""
    train = phase == "train"
    return L.SegData(
        ntop=2,
        image_data_param=dict(source="synthetic", batch_size=batch if train else 1, shuffle=train),
        transform_param=dict(mean_value=[104.00699, 116.66877, 122.67892], mirror=train),
        python_param=dict(param_str=f"{{'split': '{split}', 'size': {size}, 'classes': {classes}, "
                                    f"'count': {count}, 'val_count': {val_count}}}"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=None, help="number of classes (default per model)")
    ap.add_argument("--only", choices=sorted(VARIANTS), help="write one model")
    ap.add_argument("--size", type=int, default=128, help="synthetic image size (and the deploy input)")
    ap.add_argument("--batch", type=int, default=4, help="training batch size")
    ap.add_argument("--count", type=int, default=TRAIN_COUNT, help="synthetic training images")
    ap.add_argument("--val-count", type=int, default=VAL_COUNT, help="synthetic validation images")
    args = ap.parse_args()
    if args.count < 1 or args.val_count < 1:
        ap.error(f"--count and --val-count must be at least 1, got {args.count} and {args.val_count}")
    for variant in [args.only] if args.only else VARIANTS:
        classes = args.classes or 4
        out_dir = os.path.join(HERE, variant)
        write_model(variant, classes, out_dir, args.size, args.batch, args.count, args.val_count)
        files = "train,val,deploy"
        if VARIANTS[variant].get("cpu_solver"):
            write_solver(variant, out_dir)
            files += ",solver"
        print(f"wrote models/{variant}/{{{files}}}.prototxt")


if __name__ == "__main__":
    main()
