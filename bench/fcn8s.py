#!/usr/bin/env python3
"""FCN-8s (VGG16) train step and inference: netdef against PyTorch, same run, same machine.

    python bench/fcn8s.py                 # CPU, 1x3x128x128, 21 classes
    python bench/fcn8s.py --gpu --size 500

A train step is forward + backward + an SGD-with-momentum update (netdef: SGDSolver.step(1),
what `netdef train` runs; PyTorch: zero_grad, forward, backward, SGD.step); inference is a
TEST-phase forward. Times are medians after warm-up, with the device synchronised. PyTorch (a bench-only
extra, never a dependency of netdef) runs the same network: convolutions with pad 100 on
conv1_1, ceil-mode max pooling, fixed bilinear grouped transposed convolutions, crops and a
per-pixel cross-entropy ignoring 255.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))

from common import peak_rss_gib, table, timeit, try_torch  # noqa: E402


def netdef_nets(variant, classes, batch, size, dtype):
    import fcn as fcn_models

    import netdef
    from netdef.coord_map import fill_crop_offsets
    from netdef.net_spec import L

    def inputs(n):
        n.data = L.Input(shape=dict(dim=[batch, 3, size, size]))
        n.label = L.Input(shape=dict(dim=[batch, 1, size, size]))

    def deploy_input(n):
        n.data = L.Input(shape=dict(dim=[batch, 3, size, size]))

    train = fill_crop_offsets(fcn_models.fcn(variant, classes, inputs, "train").to_proto(variant))
    test = fill_crop_offsets(fcn_models.fcn(variant, classes, deploy_input, "deploy").to_proto(variant))
    return train, netdef.Net(test, netdef.TEST, dtype=dtype)


def bench_netdef(args, rng):
    import netdef
    from netdef import netdef_pb2 as pb
    from netdef.solver import SGDSolver

    if args.gpu:
        netdef.set_mode_gpu()
    netdef.set_random_seed(1)
    train_param, test = netdef_nets(args.variant, args.classes, args.batch, args.size, np.float32)
    # the train step is what `netdef train` runs: Solver.step (clear diffs, forward, backward,
    # the fused SGD-with-momentum kernel), as PyTorch's zero_grad, forward, backward, SGD.step
    sp = pb.SolverParameter(base_lr=1e-3, momentum=0.9, lr_policy="fixed", weight_decay=0.0,
                            display=0, max_iter=1 << 30, type="SGD")
    sp.net_param.CopyFrom(train_param)
    solver = SGDSolver(sp)
    train = solver.net
    be = train.backend
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    y = rng.integers(0, args.classes, (args.batch, 1, args.size, args.size)).astype(np.float32)
    train.blobs["data"].data[...] = be.asarray(x)
    train.blobs["label"].data[...] = be.asarray(y)
    test.blobs["data"].data[...] = be.asarray(x)

    if args.gpu:
        import cupy

        pool = cupy.get_default_memory_pool()
    t_train = timeit(lambda: solver.step(1), be.synchronize, args.warmup, args.iters)
    mem_train = pool.total_bytes() / 2**30 if args.gpu else peak_rss_gib()
    t_infer = timeit(lambda: test.forward_range(), be.synchronize, args.warmup, args.iters)
    mem_infer = pool.total_bytes() / 2**30 if args.gpu else peak_rss_gib()
    return t_train, t_infer, mem_train, mem_infer


def torch_fcn(torch, classes, widths=(64, 128, 256, 512, 512), fc=4096):
    nn = torch.nn
    F = torch.nn.functional

    class FCN8s(nn.Module):
        def __init__(self):
            super().__init__()
            layers, cin = [], 3
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


def bench_torch(torch, args, rng):
    dev = "cuda" if args.gpu else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = torch_fcn(torch, args.classes).to(dev)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    x = torch.from_numpy(rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)).to(dev)
    y = torch.from_numpy(rng.integers(0, args.classes, (args.batch, args.size, args.size))).to(dev)
    sync = torch.cuda.synchronize if args.gpu else (lambda: None)

    def step():
        opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.cross_entropy(model(x), y, ignore_index=255)
        loss.backward()
        opt.step()

    model.train()
    if args.gpu:
        torch.cuda.reset_peak_memory_stats()
    t_train = timeit(step, sync, args.warmup, args.iters)
    mem_train = torch.cuda.max_memory_allocated() / 2**30 if args.gpu else peak_rss_gib()
    model.eval()
    if args.gpu:
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        t_infer = timeit(lambda: model(x), sync, args.warmup, args.iters)
    mem_infer = torch.cuda.max_memory_allocated() / 2**30 if args.gpu else peak_rss_gib()
    return t_train, t_infer, mem_train, mem_infer


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--classes", type=int, default=21)
    ap.add_argument("--variant", default="fcn8s")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for both frameworks")
    args = ap.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    rng = np.random.default_rng(0)
    device = "GPU" if args.gpu else f"CPU ({os.cpu_count()} cores)"
    print(f"FCN-8s VGG16, batch {args.batch}, 3x{args.size}x{args.size}, {args.classes} classes, fp32, {device}")
    rows = []
    nd = bench_netdef(args, rng)
    rows.append(["netdef"] + [f"{nd[0] * 1e3:.1f}", f"{nd[1] * 1e3:.1f}", f"{nd[2]:.2f}", f"{nd[3]:.2f}"])
    torch = None if args.no_torch else try_torch()
    if torch is not None:
        if args.threads:
            torch.set_num_threads(args.threads)
        th = bench_torch(torch, args, np.random.default_rng(0))
        rows.append([f"PyTorch {torch.__version__}"] + [f"{th[0] * 1e3:.1f}", f"{th[1] * 1e3:.1f}",
                                                       f"{th[2]:.2f}", f"{th[3]:.2f}"])
        rows.append(["netdef / PyTorch", f"{nd[0] / th[0]:.2f}x", f"{nd[1] / th[1]:.2f}x", "", ""])
    mem = "peak GPU GiB" if args.gpu else "peak RSS GiB"
    print(table(rows, ["", "train step ms", "inference ms", f"{mem} train", f"{mem} infer"]))
    if not args.gpu:
        print("(CPU memory is the process's peak RSS: the PyTorch row includes netdef's run before it)")


if __name__ == "__main__":
    main()
