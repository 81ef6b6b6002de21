#!/usr/bin/env python3
"""FCN-8s's layers one by one, at the shapes FCN-8s gives them: netdef against PyTorch.

    python bench/layers.py                  # CPU, data 1x3x128x128 (conv1_1 pad 100)
    python bench/layers.py --size 500 --gpu
    python bench/layers.py --only conv1_2,upscore8 --iters 10

Every row is one layer of the train net: forward ms and backward ms (backward = the gradients
a train step needs: params with lr_mult != 0, bottoms that need one: conv1_1's data does not,
nor a label), and the same in PyTorch (a bench-only extra) on the same shapes and threads, and
the ratio netdef / PyTorch of forward + backward. Layer types not in netdef yet are skipped.
Also prints the Python dispatch cost of a layer call (a 1x1x1x1 ReLU and Convolution, where the
kernel itself is nothing), and how much of the machine other processes used meanwhile.
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import STATS, Load, table, timeit, try_torch  # noqa: E402


def _out(size, k, s, p, ceil=False):
    v = (size + 2 * p - k) / s
    return (math.ceil(v) if ceil else math.floor(v)) + 1


def fcn8s_layers(size, classes=21, fc=4096):
    """(name, type, prototxt body, bottom shapes, which bottoms need a gradient, torch spec)."""
    L = []
    s, cin = size, 3
    pools = {}
    for stage, (w, n) in enumerate(zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3)), 1):
        for k in range(1, n + 1):
            pad = 100 if (stage, k) == (1, 1) else 1
            name = f"conv{stage}_{k}"
            L.append((name, "Convolution", f"convolution_param {{ num_output: {w} kernel_size: 3 pad: {pad} "
                      "weight_filler { type: 'msra' } }", [(1, cin, s, s)], [name != "conv1_1"],
                      ("conv", 3, 1, pad, 1)))
            s, cin = _out(s, 3, 1, pad), w
        if stage == 1:
            L.append(("relu1_1 (in place)", "ReLU", "", [(1, 64, s, s)], [True], ("relu",)))
        L.append((f"pool{stage}", "Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }",
                  [(1, cin, s, s)], [True], ("maxpool", 2, 2)))
        s = _out(s, 2, 2, 0, ceil=True)
        pools[stage] = (cin, s)
    L.append(("fc6", "Convolution", f"convolution_param {{ num_output: {fc} kernel_size: 7 "
              "weight_filler { type: 'msra' } }", [(1, 512, s, s)], [True], ("conv", 7, 1, 0, 1)))
    s = _out(s, 7, 1, 0)
    L.append(("drop6 (in place)", "Dropout", "dropout_param { dropout_ratio: 0.5 }", [(1, fc, s, s)],
              [True], ("dropout",)))
    L.append(("fc7", "Convolution", f"convolution_param {{ num_output: {fc} kernel_size: 1 "
              "weight_filler { type: 'msra' } }", [(1, fc, s, s)], [True], ("conv", 1, 1, 0, 1)))
    L.append(("score_fr", "Convolution", f"convolution_param {{ num_output: {classes} kernel_size: 1 "
              "weight_filler { type: 'msra' } }", [(1, fc, s, s)], [True], ("conv", 1, 1, 0, 1)))

    def up(name, s, f):
        L.append((name, "Deconvolution", f"convolution_param {{ num_output: {classes} group: {classes} "
                  f"kernel_size: {2 * f} stride: {f} bias_term: false weight_filler {{ type: 'bilinear' }} }} "
                  "param { lr_mult: 0 }", [(1, classes, s, s)], [True], ("deconv", 2 * f, f, 0, classes)))
        return (s - 1) * f + 2 * f

    u2 = up("upscore2", s, 2)
    c4, s4 = pools[4]
    L.append(("score_pool4", "Convolution", f"convolution_param {{ num_output: {classes} kernel_size: 1 "
              "weight_filler { type: 'msra' } }", [(1, c4, s4, s4)], [True], ("conv", 1, 1, 0, 1)))
    L.append(("score_pool4c", "Crop", "crop_param { axis: 2 offset: 5 }",
              [(1, classes, s4, s4), (1, classes, u2, u2)], [True, False], ("crop", 5)))
    L.append(("fuse_pool4", "Eltwise", "eltwise_param { operation: SUM }",
              [(1, classes, u2, u2), (1, classes, u2, u2)], [True, True], ("sum",)))
    u4 = up("upscore_pool4", u2, 2)
    c3, s3 = pools[3]
    L.append(("score_pool3", "Convolution", f"convolution_param {{ num_output: {classes} kernel_size: 1 "
              "weight_filler { type: 'msra' } }", [(1, c3, s3, s3)], [True], ("conv", 1, 1, 0, 1)))
    L.append(("score_pool3c", "Crop", "crop_param { axis: 2 offset: 9 }",
              [(1, classes, s3, s3), (1, classes, u4, u4)], [True, False], ("crop", 9)))
    u8 = up("upscore8", u4, 8)
    L.append(("score", "Crop", "crop_param { axis: 2 offset: 31 }",
              [(1, classes, u8, u8), (1, 3, size, size)], [True, False], ("crop", 31)))
    L.append(("loss", "SoftmaxWithLoss", "loss_param { ignore_label: 255 normalization: VALID }",
              [(1, classes, size, size), (1, 1, size, size)], [True, False], ("softmax_loss", classes)))
    return L


def build(spec, backend, dtype, rng):
    from google.protobuf import text_format

    from netdef.core import netdef_pb2 as pb
    from netdef.core.blob import Blob
    from netdef.layers import create_layer

    name, kind, body, shapes, prop, tspec = spec
    lp = text_format.Parse(f"name: '{name.split()[0]}' type: '{kind}' {body}", pb.LayerParameter())
    layer = create_layer(lp, pb.TRAIN, backend, dtype)
    bottoms = []
    for i, shp in enumerate(shapes):
        b = Blob(shp, dtype=dtype, backend=backend)
        if tspec[0] == "softmax_loss" and i == 1:
            vals = rng.integers(0, tspec[1], shp).astype(dtype)
        else:
            vals = rng.standard_normal(shp).astype(dtype)
        b.data[...] = backend.asarray(vals)
        bottoms.append(b)
    in_place = "(in place)" in name
    tops = [bottoms[0]] if in_place else [Blob((), dtype=dtype, backend=backend)]
    layer.setup(bottoms, tops)
    lrs = [0.0 if "lr_mult: 0" in body else 1.0] * len(layer.blobs)
    layer.param_propagate_down = [lr != 0 for lr in lrs]
    layer.loss_weights = [1.0 if layer.is_loss else 0.0] * len(tops)
    layer.reshape(bottoms, tops)
    for t in tops:
        t.diff[...] = backend.asarray(rng.standard_normal(t.shape).astype(dtype)) if not layer.is_loss \
            else 1.0
    for blob in layer.blobs:
        blob.diff[...] = 0
    return layer, bottoms, tops


def torch_fns(torch, spec, device, rng):
    """(forward, backward) closures for PyTorch on the spec's shapes."""
    F = torch.nn.functional
    name, kind, body, shapes, prop, tspec = spec
    tdt = torch.float32
    xs = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)).to(device) for s in shapes]
    x = xs[0].requires_grad_(prop[0])
    what = tspec[0]
    if what == "conv":
        _, k, st, pad, group = tspec
        cout = int(body.split("num_output:")[1].split()[0])
        w = torch.randn(cout, shapes[0][1] // group, k, k, device=device, dtype=tdt, requires_grad=True)
        b = torch.randn(cout, device=device, dtype=tdt, requires_grad=True)
        fn = lambda: F.conv2d(x, w, b, st, pad, 1, group)  # noqa: E731
    elif what == "deconv":
        _, k, st, pad, group = tspec
        w = torch.randn(shapes[0][1], 1, k, k, device=device, dtype=tdt)
        fn = lambda: F.conv_transpose2d(x, w, None, st, pad, 0, group)  # noqa: E731
    elif what == "relu":
        fn = lambda: F.relu(x.clone() if x.requires_grad else x, inplace=True)  # noqa: E731
    elif what == "dropout":
        fn = lambda: F.dropout(x, 0.5, True)  # noqa: E731
    elif what == "maxpool":
        fn = lambda: F.max_pool2d(x, tspec[1], tspec[2], ceil_mode=True)  # noqa: E731
    elif what == "crop":
        o, h, w_ = tspec[1], shapes[1][2], shapes[1][3]
        fn = lambda: x[:, :, o:o + h, o:o + w_]  # noqa: E731
    elif what == "sum":
        y2 = xs[1].requires_grad_(True)
        fn = lambda: x + y2  # noqa: E731
    elif what == "softmax_loss":
        lab = torch.from_numpy(rng.integers(0, tspec[1], shapes[1][2:]).astype(np.int64)).to(device)[None]
        fn = lambda: F.cross_entropy(x, lab, ignore_index=255)  # noqa: E731
    else:
        raise ValueError(what)
    y = fn()
    g = torch.ones_like(y) if y.dim() == 0 else torch.randn_like(y)
    state = {}

    def forward():
        with torch.no_grad():
            fn()

    def forward_for_backward():
        state["y"] = fn()

    def backward():
        state["y"].backward(g)

    return forward, forward_for_backward, backward


def dispatch_cost(backend, dtype, iters=2000):
    """Microseconds per layer.forward / backward call on a 1x2x1x1 blob (all overhead)."""
    import time

    from google.protobuf import text_format

    from netdef.core import netdef_pb2 as pb
    from netdef.core.blob import Blob
    from netdef.layers import create_layer

    out = []
    for kind, body in (("ReLU", ""), ("Convolution", "convolution_param { num_output: 2 kernel_size: 1 }"),
                       ("Convolution", "convolution_param { num_output: 2 kernel_size: 3 pad: 1 }")):
        lp = text_format.Parse(f"name: 'x' type: '{kind}' {body}", pb.LayerParameter())
        layer = create_layer(lp, pb.TRAIN, backend, dtype)
        x = Blob((1, 2, 1, 1), dtype=dtype, backend=backend)
        y = Blob((), dtype=dtype, backend=backend)
        layer.setup([x], [y])
        layer.param_propagate_down = [True] * len(layer.blobs)
        layer.reshape([x], [y])
        y.diff[...] = 1
        res = []
        for fn in (lambda: layer.forward([x], [y]), lambda: layer.backward([y], [True], [x])):
            fn()
            backend.synchronize()
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            backend.synchronize()
            res.append((time.perf_counter() - t0) / iters * 1e6)
        label = kind if kind == "ReLU" else f"Convolution {body.split('kernel_size: ')[1].split()[0]}x.."
        out.append((label, getattr(layer, "path", "-"), *res))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--only", default=None, help="comma-separated layer names")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--wait-quiet", action="store_true", help="wait until other processes are idle")
    args = ap.parse_args()

    import netdef
    from netdef.layers import known_types

    backend = netdef.get_backend("gpu" if args.gpu else "cpu")
    dtype = np.float32
    torch = None if args.no_torch else try_torch()
    device = "cuda" if args.gpu else "cpu"
    types = set(known_types())
    only = set(args.only.split(",")) if args.only else None
    load = Load()
    if args.wait_quiet:
        load.wait_quiet()
    rows, skipped = [], []
    tot = np.zeros(4)
    for spec in fcn8s_layers(args.size):
        name, kind = spec[0], spec[1]
        if only and name.split()[0] not in only:
            continue
        if kind not in types:
            skipped.append(f"{name} ({kind})")
            continue
        rng = np.random.default_rng(0)
        layer, bottoms, tops = build(spec, backend, dtype, rng)
        prop = spec[4]
        fwd = timeit(lambda: layer.forward(bottoms, tops), backend.synchronize, args.warmup, args.iters)
        bwd = timeit(lambda: layer.backward(tops, prop, bottoms), backend.synchronize, args.warmup, args.iters)
        tf = tb = None
        if torch is not None:
            f, ffb, b = torch_fns(torch, spec, device, np.random.default_rng(0))
            sync = torch.cuda.synchronize if args.gpu else (lambda: None)
            tf = timeit(f, sync, args.warmup, args.iters)
            tfb = timeit(lambda: (ffb(), b()), sync, args.warmup, args.iters)
            tb = max(tfb - tf, 0.0)
        shape = "x".join(str(d) for d in bottoms[0].shape[1:])
        rows.append([name, kind, shape, getattr(layer, "path", ""), f"{fwd * 1e3:.2f}", f"{bwd * 1e3:.2f}",
                     f"{tf * 1e3:.2f}" if tf is not None else "-", f"{tb * 1e3:.2f}" if tb is not None else "-",
                     f"{(fwd + bwd) / (tf + tb):.2f}x" if tf else "-"])
        tot += [fwd, bwd, tf or 0, tb or 0]
        del layer, bottoms, tops
    rows.append(["total", "", "", "", f"{tot[0] * 1e3:.1f}", f"{tot[1] * 1e3:.1f}",
                 f"{tot[2] * 1e3:.1f}" if torch else "-", f"{tot[3] * 1e3:.1f}" if torch else "-",
                 f"{tot[:2].sum() / tot[2:].sum():.2f}x" if torch and tot[2:].sum() else "-"])
    note = load.note()
    dev = "GPU" if args.gpu else f"CPU ({os.cpu_count()} cores)"
    print(f"FCN-8s layers at data 1x3x{args.size}x{args.size}, {dev}, float32; medians of {args.iters} "
          f"after {args.warmup} warm-up; torch = PyTorch {torch.__version__ if torch else '(not installed)'}"
          f" (bwd = fwd+bwd - fwd)")
    print(table(rows, ["layer", "type", "bottom CxHxW", "path", "fwd ms", "bwd ms", "torch fwd", "torch bwd",
                       "f+b ratio"]))
    if skipped:
        print("skipped (not in netdef yet): " + ", ".join(skipped))
    if note:
        print(f"{note}; iterations repeated because of it: {STATS['dropped']}, "
              f"kept anyway: {STATS['kept_dirty']}")
    print("\nPython dispatch per call, 1x2x1x1 blobs (µs)")
    print(table([[k, p, f"{f:.1f}", f"{b:.1f}"] for k, p, f, b in dispatch_cost(backend, dtype)],
                ["layer", "path", "forward", "backward"]))


if __name__ == "__main__":
    main()
