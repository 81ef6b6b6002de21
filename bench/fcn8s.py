#!/usr/bin/env python3
"""FCN-8s (VGG16) train step and inference: netdef against PyTorch, same run, same machine.

    python bench/fcn8s.py                 # CPU, 1x3x128x128, 21 classes
    python bench/fcn8s.py --gpu --size 500
    python bench/fcn8s.py --precision bf16   # netdef bf16 and fp32, PyTorch bf16 autocast

A train step is forward + backward + an SGD-with-momentum update (netdef: SGDSolver.step(1),
what `netdef train` runs; PyTorch: zero_grad, forward, backward, SGD.step); inference is a
TEST-phase forward. PyTorch (a bench-only extra, never a dependency of netdef) runs the same
network: convolutions with pad 100 on conv1_1, ceil-mode max pooling, fixed bilinear grouped
transposed convolutions, crops and a per-pixel cross-entropy ignoring 255, with its defaults
(zero_grad sets gradients to None; TF32 off unless --tf32, then on for both).

--precision bf16 / fp16: netdef with netdef.set_precision (the GEMM layers' operands rounded,
float32 accumulation; fp16 with its dynamic loss scaling), PyTorch under torch.autocast with
that dtype (and a GradScaler for fp16), and netdef in fp32 beside them as the baseline.

Every framework and phase runs in a fresh process of its own (two frameworks in one process
disturb each other: their OpenMP thread pools spin after each call), the four processes taking
turns for --rounds rounds, because on a shared virtual machine the speed drifts by tens of
percent over minutes. Time: the median over rounds of each process's median call after warm-up,
the device synchronised. Memory: on the CPU the process's peak RSS, set-up included; on a GPU
the CuPy pool (netdef) and torch.cuda.max_memory_allocated (PyTorch).
"""
import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))

from common import Load, peak_rss_gib, table, timeit, try_torch  # noqa: E402


def netdef_nets(variant, classes, batch, size, dtype):
    import fcn as fcn_models

    import netdef
    from netdef.pycaffe.coord_map import fill_crop_offsets
    from netdef.pycaffe.net_spec import L

    def inputs(n):
        n.data = L.Input(shape=dict(dim=[batch, 3, size, size]))
        n.label = L.Input(shape=dict(dim=[batch, 1, size, size]))

    def deploy_input(n):
        n.data = L.Input(shape=dict(dim=[batch, 3, size, size]))

    train = fill_crop_offsets(fcn_models.fcn(variant, classes, inputs, "train").to_proto(variant))
    test = fill_crop_offsets(fcn_models.fcn(variant, classes, deploy_input, "deploy").to_proto(variant))
    return train, lambda: netdef.Net(test, netdef.TEST, dtype=dtype)


def netdef_runs(args, rng, phases=("train", "infer")):
    """{phase: callable} for netdef (train: one SGDSolver.step, infer: a TEST-phase forward),
    and the memory function: the CuPy pool's bytes on a GPU, the process's peak RSS on the CPU."""
    import netdef
    from netdef.core import netdef_pb2 as pb
    from netdef.solver import SGDSolver

    if args.gpu:
        netdef.set_mode_gpu()
        netdef.set_tf32(args.tf32)
    netdef.set_precision(args.precision)
    netdef.set_random_seed(1)
    train_param, make_test = netdef_nets(args.variant, args.classes, args.batch, args.size, np.float32)
    be = netdef.get_backend()
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    y = rng.integers(0, args.classes, (args.batch, 1, args.size, args.size)).astype(np.float32)
    runs = {}
    if "train" in phases:
        # the train step is what `netdef train` runs: Solver.step (clear diffs, forward, backward,
        # the fused SGD-with-momentum kernel), as PyTorch's zero_grad, forward, backward, SGD.step
        sp = pb.SolverParameter(base_lr=1e-3, momentum=0.9, lr_policy="fixed", weight_decay=0.0,
                                display=0, max_iter=1 << 30, type="SGD")
        sp.net_param.CopyFrom(train_param)
        solver = SGDSolver(sp)
        solver.net.blobs["data"].data[...] = be.asarray(x)
        solver.net.blobs["label"].data[...] = be.asarray(y)
        runs["train"] = lambda: solver.step(1)
    if "infer" in phases:
        test = make_test()
        test.blobs["data"].data[...] = be.asarray(x)
        runs["infer"] = lambda: test.forward_range()
    if args.gpu:
        import cupy

        pool = cupy.get_default_memory_pool()
        return runs, be.synchronize, lambda: pool.total_bytes() / 2**30
    return runs, be.synchronize, peak_rss_gib


def torch_fcn(torch, classes, widths=(64, 128, 256, 512, 512), fc=4096):
    nn = torch.nn
    F = torch.nn.functional

    class FCN8s(nn.Module):
        def __init__(self):
            super().__init__()
            cin = 3
            self.stages = nn.ModuleList()
            for s, (w, n) in enumerate(zip(widths, (2, 2, 3, 3, 3))):
                convs = []
                for k in range(n):
                    convs.append(nn.Conv2d(cin, w, 3, padding=100 if (s, k) == (0, 0) else 1))
                    cin = w
                self.stages.append(nn.ModuleList(convs))
            self.fc6 = nn.Conv2d(cin, fc, 7)
            self.fc7 = nn.Conv2d(fc, fc, 1)
            self.score_fr = nn.Conv2d(fc, classes, 1)
            self.score_pool4 = nn.Conv2d(widths[3], classes, 1)
            self.score_pool3 = nn.Conv2d(widths[2], classes, 1)
            self.up2 = nn.ConvTranspose2d(classes, classes, 4, 2, groups=classes, bias=False)
            self.up_pool4 = nn.ConvTranspose2d(classes, classes, 4, 2, groups=classes, bias=False)
            self.up8 = nn.ConvTranspose2d(classes, classes, 16, 8, groups=classes, bias=False)
            for m in (self.up2, self.up_pool4, self.up8):
                m.weight.requires_grad_(False)

        def forward(self, x):
            h, pools = x, []
            for convs in self.stages:
                for c in convs:
                    h = F.relu(c(h))
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
                pools.append(h)
            h = F.dropout(F.relu(self.fc6(h)), 0.5, self.training)
            h = F.dropout(F.relu(self.fc7(h)), 0.5, self.training)
            up2 = self.up2(self.score_fr(h))
            s4 = self.score_pool4(pools[3])[:, :, 5:5 + up2.shape[2], 5:5 + up2.shape[3]]
            up4 = self.up_pool4(up2 + s4)
            s3 = self.score_pool3(pools[2])[:, :, 9:9 + up4.shape[2], 9:9 + up4.shape[3]]
            up8 = self.up8(up4 + s3)
            return up8[:, :, 31:31 + x.shape[2], 31:31 + x.shape[3]]

    return FCN8s()


def torch_runs(torch, args, rng, phases=("train", "infer")):
    """{phase: callable} for the same network in PyTorch (train: zero_grad, forward, backward,
    SGD.step; infer: a no-grad forward in eval mode), its sync and memory functions."""
    dev = "cuda" if args.gpu else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    train_model = torch_fcn(torch, args.classes).to(dev).train()
    opt = torch.optim.SGD([p for p in train_model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    x = torch.from_numpy(rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)).to(dev)
    y = torch.from_numpy(rng.integers(0, args.classes, (args.batch, args.size, args.size))).to(dev)
    sync = torch.cuda.synchronize if args.gpu else (lambda: None)
    reduced = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    import contextlib

    autocast = (lambda: torch.autocast(dev, dtype=reduced)) if reduced is not None else contextlib.nullcontext
    scaler = torch.amp.GradScaler(dev) if args.precision == "fp16" else None

    def step():
        opt.zero_grad()  # PyTorch's default: gradients set to None, not cleared
        with autocast():
            out = train_model(x)
        loss = torch.nn.functional.cross_entropy(out.float(), y, ignore_index=255)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    runs = {}
    if "train" in phases:
        runs["train"] = step
    if "infer" in phases:
        test_model = torch_fcn(torch, args.classes).to(dev).eval()

        def infer():
            with torch.no_grad(), autocast():
                test_model(x)

        runs["infer"] = infer
    memory = (lambda: torch.cuda.max_memory_allocated() / 2**30) if args.gpu else peak_rss_gib
    return runs, sync, memory


def run_alone(args, who, phase):
    """Time and memory of one framework and phase in a fresh process (see only())."""
    import json
    import subprocess

    cmd = [sys.executable, os.path.abspath(__file__), "--only", f"{who}-{phase}", "--iters", str(args.iters),
           "--warmup", str(args.warmup), "--size", str(args.size), "--batch", str(args.batch),
           "--classes", str(args.classes), "--variant", args.variant,
           "--precision", "fp32" if who == "netdef32" else args.precision]
    if args.gpu:
        cmd.append("--gpu")
    if args.tf32:
        cmd.append("--tf32")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{who} {phase} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def only(args):
    """One framework and phase in this process (main() runs this in fresh processes)."""
    import json

    who, phase = args.only.split("-")
    rng = np.random.default_rng(0)
    if who in ("netdef", "netdef32"):
        runs, sync, memory = netdef_runs(args, rng, (phase,))
    else:
        runs, sync, memory = torch_runs(try_torch(), args, rng, (phase,))
    if args.gpu and who == "torch":
        try_torch().cuda.reset_peak_memory_stats()
    t = timeit(runs[phase], sync, args.warmup, args.iters)
    print("RESULT " + json.dumps({"time": t, "memory": memory()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--tf32", action="store_true", help="GPU: both frameworks' float32 GEMMs (and cuDNN) on TF32")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--classes", type=int, default=21)
    ap.add_argument("--variant", default="fcn8s")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per framework and phase")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                    help="netdef's set_precision and PyTorch's autocast dtype (netdef fp32 runs beside)")
    ap.add_argument("--only", choices=[f"{w}-{p}" for w in ("netdef", "netdef32", "torch") for p in ("train", "infer")],
                    help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for both frameworks")
    args = ap.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.only:
        return only(args)
    device = "GPU" if args.gpu else f"CPU ({os.cpu_count()} cores)"
    precision = "TF32 GEMMs" if args.tf32 and args.gpu else "fp32"
    if args.precision != "fp32":
        precision = f"{args.precision} (netdef: set_precision, PyTorch: autocast; netdef fp32 beside)"
    print(f"FCN-8s VGG16, batch {args.batch}, 3x{args.size}x{args.size}, {args.classes} classes, {precision}, {device}")
    torch = None if args.no_torch else try_torch()
    who = ["netdef"] + (["netdef32"] if args.precision != "fp32" else []) + (["torch"] if torch is not None else [])
    load = Load()
    res = {}
    for _ in range(args.rounds):
        for phase in ("train", "infer"):
            for w in who:
                res.setdefault((w, phase), []).append(run_alone(args, w, phase))
    med = {k: statistics.median(r["time"] for r in v) for k, v in res.items()}
    mem = {k: max(r["memory"] for r in v) for k, v in res.items()}
    reduced = args.precision != "fp32"
    names = {"netdef": f"netdef {args.precision}" if reduced else "netdef", "netdef32": "netdef fp32",
             "torch": (f"PyTorch {torch.__version__}" + (f" {args.precision} autocast" if reduced else ""))
             if torch is not None else ""}
    kind = "peak GPU GiB" if args.gpu else "peak RSS GiB"
    rows = [[names[w]] + [f"{med[(w, p)] * 1e3:.1f}" for p in ("train", "infer")]
            + [f"{mem[(w, p)]:.2f}" for p in ("train", "infer")] for w in who]
    if torch is not None:
        rows.append(["netdef / PyTorch"] + [f"{med[('netdef', p)] / med[('torch', p)]:.2f}x" for p in ("train", "infer")]
                    + [f"{mem[('netdef', p)] / mem[('torch', p)]:.2f}x" for p in ("train", "infer")])
    if reduced:
        rows.append([f"netdef {args.precision} / fp32"]
                    + [f"{med[('netdef', p)] / med[('netdef32', p)]:.2f}x" for p in ("train", "infer")]
                    + [f"{mem[('netdef', p)] / mem[('netdef32', p)]:.2f}x" for p in ("train", "infer")])
    print(table(rows, ["", "train step ms", "inference ms", f"{kind} train", f"{kind} infer"]))
    spread = {k: (min(r["time"] for r in v), max(r["time"] for r in v)) for k, v in res.items()}
    print(f"time: median over {args.rounds} rounds (each framework and phase in a fresh process per round, "
          f"in turns) of the median of {args.iters} calls after {args.warmup} warm-up; per-round medians "
          "ranged " + ", ".join(f"{w} {p} {lo * 1e3:.0f}-{hi * 1e3:.0f}" for (w, p), (lo, hi) in spread.items()))
    print(f"{load.note()}")
    if not args.gpu:
        print("peak RSS includes set-up (building the net, filling weights) and the framework's own import")


if __name__ == "__main__":
    main()
