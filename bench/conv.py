#!/usr/bin/env python3
"""VGG16's convolution layers one by one: forward + backward time and where it goes.

    python bench/conv.py                  # CPU, 1x3x224x224, float32
    python bench/conv.py --fcn            # FCN's bilinear upsampling layers too (group = 21)
    python bench/conv.py --gpu --batch 8

For every layer: median forward and backward ms (backward = weight, bias and bottom gradients;
conv1_1 skips the bottom gradient as in a net, its bottom being the data), the share of the
time spent in im2col/col2im, in GEMMs, and elsewhere (bias, depthwise kernels), the GEMM rate,
and PyTorch's conv2d forward + backward on the same shapes and threads when it is installed
(a bench-only extra). The shares come from a separate run with the backend's profile set,
which synchronises around every phase (Backend.timed).

On few cores, OpenBLAS's worker threads used to spin after each GEMM and OpenMP's after each
kernel, each slowing the other (on 2 cores VGG16's total went 835 -> 688 ms with
`OMP_WAIT_POLICY=PASSIVE OPENBLAS_THREAD_TIMEOUT=4`). netdef's CPU backend now runs OpenBLAS's
jobs on its own OpenMP team (netdef/backend/blas.py); NETDEF_BLAS_THREADS=openblas restores the
old behaviour for comparison. Timed iterations during which other processes used the CPUs are
repeated (bench/common.py).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import STATS, Load, table, timeit, try_torch  # noqa: E402

# name, in channels, out channels, input size at 224 (all 3x3, pad 1, stride 1)
VGG16 = [("conv1_1", 3, 64, 224), ("conv1_2", 64, 64, 224),
         ("conv2_1", 64, 128, 112), ("conv2_2", 128, 128, 112),
         ("conv3_1", 128, 256, 56), ("conv3_2", 256, 256, 56), ("conv3_3", 256, 256, 56),
         ("conv4_1", 256, 512, 28), ("conv4_2", 512, 512, 28), ("conv4_3", 512, 512, 28),
         ("conv5_1", 512, 512, 14), ("conv5_2", 512, 512, 14), ("conv5_3", 512, 512, 14)]


def layer_specs(size, fcn):
    specs = []
    for name, cin, cout, s in VGG16:
        specs.append((name, "Convolution", cin, s * size // 224,
                      f"num_output: {cout} kernel_size: 3 pad: 1", cout, 3, 3, 1, 1, 1))
    if fcn:
        # FCN-8s's upsampling: fixed bilinear, one group per class
        for name, f, s in (("upscore2", 2, size // 32), ("upscore_pool4", 2, size // 16),
                           ("upscore8", 8, size // 8)):
            specs.append((name, "Deconvolution", 21, max(s, 1),
                          f"num_output: 21 group: 21 kernel_size: {2 * f} stride: {f} bias_term: false "
                          "weight_filler { type: 'bilinear' }", 21, 2 * f, 2 * f, f, 0, 21))
    return specs


def build(spec, batch, backend, dtype):
    import netdef  # noqa: F401
    from google.protobuf import text_format

    from netdef.core import netdef_pb2 as pb
    from netdef.core.blob import Blob
    from netdef.layers import create_layer

    name, kind, cin, s, body, *_ = spec
    if "weight_filler" not in body:
        body += " weight_filler { type: 'msra' }"
    lp = text_format.Parse(f"name: '{name}' type: '{kind}' convolution_param {{ {body} }}", pb.LayerParameter())
    layer = create_layer(lp, pb.TRAIN, backend, dtype)
    x = Blob((batch, cin, s, s), dtype=dtype, backend=backend)
    x.data[...] = backend.asarray(np.random.default_rng(0).standard_normal(x.shape), dtype=dtype)
    y = Blob((), dtype=dtype, backend=backend)
    layer.setup([x], [y])
    layer.param_propagate_down = [kind == "Convolution"] * len(layer.blobs)
    layer.reshape([x], [y])
    y.diff[...] = backend.asarray(np.random.default_rng(1).standard_normal(y.shape), dtype=dtype)
    return layer, x, y


def flops(spec, batch, out_shape):
    _, kind, cin, s, _, cout, kh, kw, stride, pad, group = spec
    if kind == "Convolution":
        return 2.0 * batch * cout * (cin // group) * kh * kw * out_shape[2] * out_shape[3]
    return 2.0 * batch * cin * (cout // group) * kh * kw * s * s


def bench_torch(torch, spec, batch, device, dtype, iters, warmup):
    name, kind, cin, s, body, cout, kh, kw, stride, pad, group = spec
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    x = torch.randn(batch, cin, s, s, device=device, dtype=tdtype, requires_grad=name != "conv1_1")
    if kind == "Convolution":
        w = torch.randn(cout, cin // group, kh, kw, device=device, dtype=tdtype, requires_grad=True)
        b = torch.randn(cout, device=device, dtype=tdtype, requires_grad=True)
        fn = lambda: torch.nn.functional.conv2d(x, w, b, stride, pad, 1, group)  # noqa: E731
    else:
        w = torch.randn(cin, cout // group, kh, kw, device=device, dtype=tdtype)
        x.requires_grad_(True)
        fn = lambda: torch.nn.functional.conv_transpose2d(x, w, None, stride, pad, 0, group)  # noqa: E731
    y = fn()
    g = torch.randn_like(y)
    sync = (lambda: torch.cuda.synchronize()) if device == "cuda" else (lambda: None)

    def step():
        fn().backward(g)

    return timeit(step, sync, warmup, iters)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--double", action="store_true", help="float64 instead of float32")
    ap.add_argument("--fcn", action="store_true", help="also FCN-8s's bilinear Deconvolutions")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()

    import netdef

    backend = netdef.get_backend("gpu" if args.gpu else "cpu")
    dtype = np.float64 if args.double else np.float32
    torch = None if args.no_torch else try_torch()
    rows, totals = [], np.zeros(4)
    load = Load()
    for spec in layer_specs(args.size, args.fcn):
        layer, x, y = build(spec, args.batch, backend, dtype)
        prop = [spec[0] != "conv1_1"]
        fwd = timeit(lambda: layer.forward([x], [y]), backend.synchronize, args.warmup, args.iters)
        bwd = timeit(lambda: layer.backward([y], prop, [x]), backend.synchronize, args.warmup, args.iters)
        backend.profile = {}
        layer.forward([x], [y])
        layer.backward([y], prop, [x])
        prof, backend.profile = backend.profile, None
        spent = sum(prof.values()) or 1.0
        cols = prof.get("im2col", 0) + prof.get("col2im", 0)
        gemm = prof.get("gemm", 0)
        fl = flops(spec, args.batch, y.shape) * (1 + (2 if spec[1] == "Convolution" and prop[0] else 1))
        t_ms = None
        if torch is not None:
            t_ms = 1e3 * bench_torch(torch, spec, args.batch, "cuda" if args.gpu else "cpu", dtype,
                                     args.iters, args.warmup)
        rows.append([spec[0], f"{tuple(x.shape)}", layer.path, f"{fwd * 1e3:.1f}", f"{bwd * 1e3:.1f}",
                     f"{(fwd + bwd) * 1e3:.1f}", f"{100 * cols / spent:.0f}%", f"{100 * gemm / spent:.0f}%",
                     f"{100 * (spent - cols - gemm) / spent:.0f}%",
                     f"{fl / max(gemm, 1e-12) / 1e9:.0f}" if gemm else "-",
                     f"{t_ms:.1f}" if t_ms is not None else "-"])
        totals += [fwd, bwd, cols / spent * (fwd + bwd), (t_ms or 0) / 1e3]
    rows.append(["total", "", "", f"{totals[0] * 1e3:.1f}", f"{totals[1] * 1e3:.1f}",
                 f"{(totals[0] + totals[1]) * 1e3:.1f}", f"{100 * totals[2] / (totals[0] + totals[1]):.0f}%",
                 "", "", "", f"{totals[3] * 1e3:.1f}" if torch is not None else "-"])
    dev = "GPU" if args.gpu else f"CPU ({os.cpu_count()} cores)"
    print(f"netdef convolution layers, {dev}, batch {args.batch}, {args.size}x{args.size}, "
          f"{np.dtype(dtype).name}; ms are medians of {args.iters} after {args.warmup} warm-up")
    print(table(rows, ["layer", "bottom", "path", "fwd ms", "bwd ms", "f+b ms", "im2col", "gemm",
                       "other", "GEMM GFLOP/s", "torch f+b ms"]))
    print(f"{load.note()}; iterations repeated because of it: {STATS['dropped']}, "
          f"kept anyway: {STATS['kept_dirty']}")


if __name__ == "__main__":
    main()
