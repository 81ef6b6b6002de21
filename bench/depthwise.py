#!/usr/bin/env python3
"""Depthwise and grouped convolutions at the shapes of the zoo nets: ms and GFLOP/s against the
cores' fp32 peak, against PyTorch and against netdef's own im2col + GEMM reference path, in turns.

    flock /tmp/netdef-bench.lock .venv/bin/python bench/depthwise.py
    ... bench/depthwise.py --nets mobilenet_v2 --batch 1 --phase TEST --no-torch
    ... bench/depthwise.py --gpu          # a short forward + backward on the GPU (gpu_check.sh)

The shapes are read from bench/zoo/*.prototxt: every Convolution whose group is > 1 (depthwise:
group == channels; grouped: AlexNet/CaffeNet's group 2), one row per distinct geometry with the
number of layers of that shape ("x"). Each case is a two-layer net (Input, Convolution):
  TEST   forward only, as a deploy net runs it;
  TRAIN  forward + backward (data gradient and weight gradient), force_backward.
GFLOP/s counts 2 kh kw (Ci / group) multiply-adds per output element (and three times that for
TRAIN: forward, data gradient, weight gradient); "peak %" sets it against the peak fp32 rate of
the cores used (threads x FMA units x SIMD lanes x 2 x clock, from lscpu: see peak_gflops).
"torch ms" is torch.nn.functional.conv2d with the same groups (PyTorch is a bench-only
install), "ref ms" netdef's im2col + GEMM path (BaseConvolutionLayer.fast_paths off): the
ratios are netdef / them (below 1: netdef is faster).
"""
import argparse
import glob
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import STATS, Load, table, timeit, try_torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def peak_gflops(threads):
    """(GFLOP/s, how it was computed): threads x 2 FMA units x lanes x 2 flops x clock, lanes
    from the widest vector ISA lscpu lists (AVX-512: 16 floats, AVX2: 8, else SSE: 4), clock
    from lscpu's max MHz (or /proc/cpuinfo's MHz on a VM that reports no max)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, "lscpu unavailable"
    flags = re.search(r"^Flags:\s*(.*)$", out, re.M)
    flags = set(flags.group(1).split()) if flags else set()
    lanes, isa = (16, "AVX-512") if "avx512f" in flags else (8, "AVX2+FMA") if "fma" in flags else (4, "SSE")
    mhz = re.search(r"^CPU max MHz:\s*([\d.]+)", out, re.M)
    if not mhz:
        try:
            with open("/proc/cpuinfo") as f:
                mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", f.read(), re.M)
        except OSError:
            mhz = None
    if not mhz:
        return None, f"{isa}, clock unknown"
    ghz = float(mhz.group(1)) / 1000
    model = re.search(r"^Model name:\s*(.*)$", out, re.M)
    peak = threads * 2 * lanes * 2 * ghz
    return peak, (f"{model.group(1).strip() if model else 'CPU'}, {isa}, {ghz:.2f} GHz: "
                  f"{threads} threads x 2 FMA x {lanes} lanes x 2 = {peak:.0f} GFLOP/s")


def zoo_shapes(netdef, names):
    """{(C, H, W, Co, kh, kw, sh, sw, ph, pw, dh, dw, group): [count, first net]} of the grouped
    convolutions of the zoo nets (their deploy shapes, batch 1)."""
    shapes = {}
    for path in sorted(glob.glob(os.path.join(HERE, "zoo", "*.prototxt"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if names and name not in names:
            continue
        net = netdef.Net(path, netdef.TEST)
        for li, layer in enumerate(net.layers):
            if layer.type != "Convolution" or layer.group == 1:
                continue
            _, C, H, W = net._bottom_ids[li][0].shape
            key = (C, H, W, layer.num_output, layer.kh, layer.kw, layer.sh, layer.sw, layer.ph,
                   layer.pw, layer.dh, layer.dw, layer.group)
            shapes.setdefault(key, [0, name])[0] += 1
    return shapes


def net_text(key, N, phase):
    C, H, W, Co, kh, kw, sh, sw, ph, pw, dh, dw, g = key
    force = "force_backward: true\n" if phase == "TRAIN" else ""
    return (f"{force}layer {{ name: 'in' type: 'Input' top: 'x' input_param {{ shape {{ dim: {N} "
            f"dim: {C} dim: {H} dim: {W} }} }} }}\n"
            f"layer {{ name: 'L' type: 'Convolution' bottom: 'x' top: 'y' convolution_param {{ "
            f"num_output: {Co} kernel_h: {kh} kernel_w: {kw} stride_h: {sh} stride_w: {sw} "
            f"pad_h: {ph} pad_w: {pw} dilation: {dh} dilation: {dw} group: {g} "
            "weight_filler { type: 'msra' } bias_term: false } }\n")


def netdef_case(netdef, key, N, phase, rng, fast=True):
    from netdef.layers import base_conv

    saved = base_conv.BaseConvolutionLayer.fast_paths
    base_conv.BaseConvolutionLayer.fast_paths = fast
    try:
        ph = netdef.TEST if phase == "TEST" else netdef.TRAIN
        net = netdef.Net(net_text(key, N, phase), ph)
    finally:
        base_conv.BaseConvolutionLayer.fast_paths = saved
    layer = net.layers[-1]
    bottoms, tops = net._bottom_ids[1], net._top_ids[1]
    put = layer.backend.asarray  # numpy to the device's arrays
    bottoms[0].data[...] = put(rng.standard_normal(bottoms[0].shape).astype(np.float32))
    tops[0].diff[...] = put(rng.standard_normal(tops[0].shape).astype(np.float32))
    layer.param_propagate_down = [True]

    def run():
        layer.forward(bottoms, tops)
        if phase == "TRAIN":
            layer.backward(tops, [True], bottoms)

    return run, layer.path


def torch_case(torch, key, N, phase, rng):
    C, H, W, Co, kh, kw, sh, sw, ph, pw, dh, dw, g = key
    x = torch.from_numpy(rng.standard_normal((N, C, H, W)).astype(np.float32))
    w = torch.randn(Co, C // g, kh, kw)
    args = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=g)
    F = torch.nn.functional
    if phase == "TEST":
        def run():
            with torch.no_grad():
                F.conv2d(x, w, **args)
        return run
    xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    dy = torch.randn_like(F.conv2d(x, w, **args))

    def run():
        xg.grad = wg.grad = None
        F.conv2d(xg, wg, **args).backward(dy)
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="mobilenet,mobilenet_v2,caffenet",
                    help="comma-separated bench/zoo prototxt names (empty: all)")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--phase", default="TEST,TRAIN")
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-ref", action="store_true", help="skip the im2col reference path")
    ap.add_argument("--gpu", action="store_true", help="short GPU run: netdef only, forward and train")
    args = ap.parse_args()

    import netdef

    names = set(filter(None, args.nets.split(",")))
    if args.gpu:
        netdef.set_mode_gpu()
        args.no_torch = True
    else:
        netdef.set_mode_cpu()
    threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
    torch = None if args.no_torch else try_torch()
    if torch is not None:
        torch.set_num_threads(threads)
    peak, how = (None, "GPU") if args.gpu else peak_gflops(threads)
    sync = netdef.get_backend().synchronize
    shapes = zoo_shapes(netdef, names)
    rng = np.random.default_rng(0)
    rows, load = [], Load()
    totals = {}
    for phase in args.phase.split(","):
        for N in (int(b) for b in args.batch.split(",")):
            for key, (count, net_name) in shapes.items():
                C, H, W, Co, kh, kw, sh, sw, ph, pw, dh, dw, g = key
                run, path = netdef_case(netdef, key, N, phase, rng)
                t = timeit(run, sync, args.warmup, args.iters)
                OH = (H + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
                OW = (W + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
                flops = 2 * N * Co * OH * OW * kh * kw * (C // g) * (3 if phase == "TRAIN" else 1)
                gf = flops / t / 1e9
                row = [f"{net_name} {C}>{Co}x{H}x{W} k{kh}x{kw} s{sh} g{g}", count, phase, N,
                       f"{t * 1e3:.3f}", f"{gf:.1f}", f"{100 * gf / peak:.1f}" if peak else "-", path]
                tot = totals.setdefault((phase, N), [0.0, 0.0, 0.0])
                tot[0] += count * t
                if torch is not None:
                    tt = timeit(torch_case(torch, key, N, phase, rng), lambda: None, args.warmup, args.iters)
                    tot[1] += count * tt
                    row += [f"{tt * 1e3:.3f}", f"{t / tt:.2f}"]
                else:
                    row += ["-", "-"]
                if not args.no_ref and not args.gpu:
                    ref, _ = netdef_case(netdef, key, N, phase, rng, fast=False)
                    tr = timeit(ref, sync, args.warmup, args.iters)
                    tot[2] += count * tr
                    row += [f"{tr * 1e3:.3f}", f"{t / tr:.2f}"]
                else:
                    row += ["-", "-"]
                rows.append(row)
    print(f"peak: {how}")
    print(table(rows, ["shape (net Ci>Co x H x W)", "x", "phase", "N", "ms", "GFLOP/s", "peak %",
                       "path", "torch ms", "/torch", "ref ms", "/ref"]))
    for (phase, N), (a, b, c) in totals.items():
        line = f"sum over the nets' layers ({phase}, batch {N}): netdef {a * 1e3:.2f} ms"
        if b:
            line += f", torch {b * 1e3:.2f} ms ({a / b:.2f}x)"
        if c:
            line += f", im2col reference {c * 1e3:.2f} ms ({a / c:.2f}x)"
        print(line)
    print(f"{threads} threads; {load.note()}; iterations dropped for contention {STATS['dropped']}, "
          f"kept despite it {STATS['kept_dirty']}")


if __name__ == "__main__":
    main()
