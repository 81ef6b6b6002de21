#!/usr/bin/env python3
"""The memory-bound layers (BatchNorm, Scale, Bias, ReLU, PReLU, Eltwise, Concat, Slice,
Softmax, Pooling, LRN) at the shapes of the zoo nets: ms and GB/s against the machine's bandwidth
and against PyTorch, in turns.

    flock /tmp/netdef-bench.lock .venv/bin/python bench/memory_bound.py
    ... bench/memory_bound.py --only BatchNorm,Scale --iters 20 --no-torch

Each case is a two-layer net (Input, then the layer) as a user's deploy or train net has it:
  TEST   phase TEST without force_backward: forward only (what inference runs); the layer
         knows no backward can follow and keeps nothing for one.
  TRAIN  phase TRAIN with force_backward: forward, and backward of the bottoms (and params).
GB/s counts the compulsory traffic: every input read once and every output written once
(float32; a layer in place reads and writes its blob once). It is set against a STREAM-like
triad a = a + s b on the same number of elements per array (PyTorch's, on all threads; numpy's
one-thread copy when PyTorch is absent): "bw %" is the layer's GB/s as a share of that ceiling.
A two-pass algorithm (BatchNorm's batch statistics) cannot pass ~67 % of it.
PyTorch (a bench-only install) runs the same operation on the same shapes and threads:
"torch ms" and "ratio" = netdef / torch (below 1: netdef is faster).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import STATS, Load, table, timeit, try_torch  # noqa: E402

F4 = 4  # bytes per float32


def _count(shape):
    return int(np.prod(shape))


def cases():
    """(label, layer type, layer body, bottom shapes, in place, top shapes fn, torch op name, extra).
    top shapes fn: bottom shapes -> the element counts of the tops (for the traffic)."""
    same = lambda s: [_count(s[0])]  # noqa: E731
    C = []
    for n in (1, 8):
        s = (n, 144, 112, 112)
        C.append(("BatchNorm", "BatchNorm", "", [s], True, same, "batch_norm", {}))
        C.append(("Scale+bias", "Scale", "scale_param { bias_term: true filler { type: 'uniform' } "
                  "bias_filler { type: 'uniform' } }", [s], True, same, "scale_bias", {}))
        C.append(("ReLU", "ReLU", "", [s], True, same, "relu", {}))
    s = (1, 144, 112, 112)
    C.append(("Bias", "Bias", "bias_param { filler { type: 'uniform' } }", [s], False, same, "bias", {}))
    C.append(("PReLU", "PReLU", "", [s], False, same, "prelu", {}))
    for n in (1, 8):
        r = (n, 256, 56, 56)
        C.append(("Eltwise SUM x2", "Eltwise", "", [r, r], False, same, "sum", {}))
    r = (1, 256, 56, 56)
    C.append(("Eltwise SUM x3 coeff", "Eltwise", "eltwise_param { operation: SUM coeff: 1 coeff: -0.5 "
              "coeff: 2 }", [r, r, r], False, same, "sum3", {"coeff": (1, -0.5, 2)}))
    C.append(("Eltwise PROD x2", "Eltwise", "eltwise_param { operation: PROD }", [r, r], False, same,
              "prod", {}))
    C.append(("Eltwise MAX x2", "Eltwise", "eltwise_param { operation: MAX }", [r, r], False, same,
              "max", {}))
    for n in (1, 8):  # GoogLeNet inception_3a/output: 64 + 128 + 32 + 32 channels at 28x28
        ins = [(n, c, 28, 28) for c in (64, 128, 32, 32)]
        C.append(("Concat inception_3a", "Concat", "", ins, False,
                  lambda s: [sum(_count(x) for x in s)], "concat", {}))
    C.append(("Slice 256 -> 128+128", "Slice", "slice_param { slice_point: 128 }", [r], False,
              lambda s: [_count(s[0]) // 2] * 2, "slice", {}))
    for shp, lab in (((1, 1000), "Softmax 1x1000"), ((8, 1000), "Softmax 8x1000"),
                     ((1, 21, 500, 500), "Softmax per pixel")):
        C.append((lab, "Softmax", "", [shp], False, same, "softmax", {}))
    p = (1, 64, 112, 112)
    out = lambda s: [s[0][0] * s[0][1] * 56 * 56]  # noqa: E731  (ceil((112 - 3) / 2) + 1 = 56)
    C.append(("Pooling MAX 3x3/2", "Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 }",
              [p], False, out, "maxpool", {}))
    C.append(("Pooling AVE 3x3/2", "Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 }",
              [p], False, out, "avepool", {}))
    # GoogLeNet's inception pools (3x3, stride 1, pad 1) and its two LRNs (CaffeNet's are alike)
    q = (1, 480, 28, 28)
    C.append(("Pooling MAX 3x3/1 pad 1", "Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 1 "
              "pad: 1 }", [q], False, same, "maxpool_s1", {}))
    for c in (64, 192):
        C.append((f"LRN across 5 ({c} ch)", "LRN", "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }",
                  [(1, c, 56, 56)], False, same, "lrn", {}))
    return C


def net_text(kind, body, shapes, in_place, phase, ntops):
    inputs = "".join(
        f"layer {{ name: 'in{i}' type: 'Input' top: 'x{i}' input_param {{ shape {{ "
        + " ".join(f"dim: {d}" for d in s) + " } } }\n" for i, s in enumerate(shapes))
    bottoms = " ".join(f"bottom: 'x{i}'" for i in range(len(shapes)))
    tops = "top: 'x0'" if in_place else " ".join(f"top: 'y{i}'" for i in range(ntops))
    force = "force_backward: true\n" if phase == "TRAIN" else ""
    return f"{force}{inputs}layer {{ name: 'L' type: '{kind}' {bottoms} {tops} {body} }}\n"


def build_net(netdef, case, phase, rng):
    label, kind, body, shapes, in_place, tops_fn, _, _ = case
    ntops = len(tops_fn(shapes))
    ph = netdef.TEST if phase == "TEST" else netdef.TRAIN
    net = netdef.Net(net_text(kind, body, shapes, in_place, phase, ntops), ph)
    for i, s in enumerate(shapes):
        net.blobs[f"x{i}"].data[...] = rng.standard_normal(s).astype(np.float32)
    layer = net.layers[-1]
    if kind == "BatchNorm":  # sensible statistics for use_global_stats
        C = shapes[0][1]
        layer.blobs[0].data[...] = rng.standard_normal(C).astype(np.float32)
        layer.blobs[1].data[...] = rng.random(C).astype(np.float32) + 0.5
        layer.blobs[2].data[...] = 1
    li = len(net.layers) - 1
    bottoms, tops = net._bottom_ids[li], net._top_ids[li]
    for t in tops:
        t.diff[...] = rng.standard_normal(t.shape).astype(np.float32)
    return net, layer, bottoms, tops, net._bottom_need_backward[li]


def torch_case(torch, case, rng):
    """(forward without autograd, forward + backward) closures on the case's shapes."""
    F = torch.nn.functional
    label, kind, body, shapes, in_place, tops_fn, op, extra = case
    xs = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    C = shapes[0][1]
    w = torch.rand(C)
    b = torch.rand(C)
    rm, rv = torch.randn(C), torch.rand(C) + 0.5

    def v(t):
        return t.view(1, -1, *([1] * (len(shapes[0]) - 2)))

    def make(train):
        x = [t.clone().requires_grad_(train) for t in xs]
        ww = w.clone().requires_grad_(train)
        bb = b.clone().requires_grad_(train)
        a = torch.full((C,), 0.25, requires_grad=train)
        ops = {
            "batch_norm": lambda: F.batch_norm(x[0], rm.clone(), rv.clone(), training=train),
            "scale_bias": lambda: (x[0] * v(ww) + v(bb)) if train else torch.addcmul(
                v(bb), x[0], v(ww), out=x[0]),
            "relu": lambda: F.relu(x[0]) if train else F.relu_(x[0]),
            "bias": lambda: x[0] + v(bb),
            "prelu": lambda: F.prelu(x[0], a),
            "sum": lambda: x[0] + x[1],
            "sum3": lambda: x[0] * extra["coeff"][0] + x[1] * extra["coeff"][1] + x[2] * extra["coeff"][2],
            "prod": lambda: x[0] * x[1],
            "max": lambda: torch.maximum(x[0], x[1]),
            "concat": lambda: torch.cat(x, 1),
            "slice": lambda: torch.split(x[0], 128, 1),
            "softmax": lambda: F.softmax(x[0], 1),
            "maxpool": lambda: F.max_pool2d(x[0], 3, 2, ceil_mode=True),
            "maxpool_s1": lambda: F.max_pool2d(x[0], 3, 1, 1),
            "lrn": lambda: F.local_response_norm(x[0], 5, 1e-4, 0.75, 1.0),
            "avepool": lambda: F.avg_pool2d(x[0], 3, 2, ceil_mode=True, count_include_pad=True),
        }
        return ops[op], x, ww, bb, a

    fwd_op = make(False)[0]

    def forward():
        with torch.no_grad():
            fwd_op()

    train_op = make(True)[0]
    out = train_op()
    grads = [torch.randn_like(o) for o in (out if isinstance(out, tuple) else (out,))]

    def train():
        y = train_op()
        torch.autograd.backward(list(y) if isinstance(y, tuple) else [y], grads)

    return forward, train


def ceiling(torch, count, cache, warmup, iters):
    """GB/s of a STREAM-like triad a = a + s b over `count` floats per array, counted as three
    arrays' traffic (two reads, one write into lines just read: no write-allocate, as a layer in
    place), on all threads (PyTorch); numpy's one-thread copy when PyTorch is absent."""
    if count in cache:
        return cache[count]
    if torch is not None:
        a, b_ = torch.rand(count), torch.rand(count)
        t = timeit(lambda: a.add_(b_, alpha=0.5), lambda: None, warmup, 3 * iters)
        gbs = 3 * count * F4 / t / 1e9
    else:
        a, b_ = np.random.rand(count).astype(np.float32), np.random.rand(count).astype(np.float32)
        t = timeit(lambda: np.copyto(a, b_), lambda: None, warmup, 3 * iters)
        gbs = 2 * count * F4 / t / 1e9
    cache[count] = gbs
    return gbs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--only", default=None, help="comma-separated layer types (BatchNorm,Scale,...)")
    ap.add_argument("--phase", default="TEST,TRAIN")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--wait-quiet", action="store_true", help="wait until other processes are idle")
    args = ap.parse_args()

    import netdef

    netdef.set_mode_cpu()
    torch = None if args.no_torch else try_torch()
    threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
    if torch is not None:
        torch.set_num_threads(threads)
    only = set(args.only.split(",")) if args.only else None
    phases = args.phase.split(",")
    load = Load()
    if args.wait_quiet:
        load.wait_quiet()
    sync = lambda: None  # noqa: E731
    rows, cache = [], {}
    copy_n = 144 * 112 * 112
    a, b_ = np.random.rand(copy_n).astype(np.float32), np.random.rand(copy_n).astype(np.float32)
    t_copy = timeit(lambda: np.copyto(a, b_), sync, args.warmup, args.iters)
    for case in cases():
        label, kind, body, shapes, in_place, tops_fn, op, extra = case
        if only and kind not in only:
            continue
        n_in = sum(_count(s) for s in shapes)
        n_out = sum(tops_fn(shapes))
        if in_place:
            n_out = 0  # the same blob read once and written once: counted as in + out below
            n_in_out = 2 * n_in
        else:
            n_in_out = n_in + n_out
        ceil = ceiling(torch, max(_count(s) for s in shapes), cache, args.warmup, args.iters)
        shape = " + ".join("x".join(map(str, s)) for s in shapes) if len(set(shapes)) > 1 else \
            "x".join(map(str, shapes[0])) + (f" x{len(shapes)}" if len(shapes) > 1 else "")
        tf = ttrain = None
        if torch is not None:
            tfwd_fn, ttrain_fn = torch_case(torch, case, np.random.default_rng(0))
        for phase in phases:
            rng = np.random.default_rng(0)
            net, layer, bottoms, tops, prop = build_net(netdef, case, phase, rng)
            fwd = timeit(lambda: layer.forward(bottoms, tops), sync, args.warmup, args.iters)
            bytes_f = n_in_out * F4
            if phase == "TEST":
                if torch is not None:
                    tf = timeit(tfwd_fn, sync, args.warmup, args.iters)
                gbs = bytes_f / fwd / 1e9
                rows.append([label, shape, "TEST fwd", f"{fwd * 1e3:.3f}", f"{gbs:.1f}",
                             f"{100 * gbs / ceil:.0f}", f"{tf * 1e3:.3f}" if tf else "-",
                             f"{fwd / tf:.2f}" if tf else "-"])
            else:
                bwd = timeit(lambda: layer.backward(tops, prop, bottoms), sync, args.warmup, args.iters)
                if torch is not None:
                    ttrain = timeit(ttrain_fn, sync, args.warmup, args.iters)
                # backward: reads dy (and x or y), writes dx: ~3 arrays for the bottoms
                bytes_b = (n_out if not in_place else n_in) * F4 + 2 * n_in * F4
                gbs = (bytes_f + bytes_b) / (fwd + bwd) / 1e9
                rows.append([label, shape, "TRAIN fwd+bwd", f"{fwd * 1e3:.3f}+{bwd * 1e3:.3f}",
                             f"{gbs:.1f}", f"{100 * gbs / ceil:.0f}",
                             f"{ttrain * 1e3:.3f}" if ttrain else "-",
                             f"{(fwd + bwd) / ttrain:.2f}" if ttrain else "-"])
            del net, layer, bottoms, tops
    note = load.note()
    print(f"Memory-bound layers, CPU ({os.cpu_count()} cores, {threads} threads), float32; medians of "
          f"{args.iters} after {args.warmup} warm-up; torch = PyTorch "
          f"{torch.__version__ if torch else '(not installed)'}")
    print(f"numpy copy (1 thread) of {copy_n} floats: {2 * copy_n * F4 / t_copy / 1e9:.1f} GB/s; triad "
          "ceilings (GB/s, per array size): " + ", ".join(f"{k}: {v:.1f}" for k, v in sorted(cache.items())))
    print(table(rows, ["layer", "bottom shape", "pass", "netdef ms", "GB/s", "bw %", "torch ms", "ratio"]))
    if note:
        print(f"{note}; iterations repeated because of it: {STATS['dropped']}, "
              f"kept anyway: {STATS['kept_dirty']}")


if __name__ == "__main__":
    main()
