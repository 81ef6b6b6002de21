#!/usr/bin/env python3
"""Caffe's model zoo on the CPU: netdef against OpenCV dnn and ONNX Runtime (inference), and
against PyTorch (the train step of ResNet-50 and MobileNet v2). Same threads, fresh processes.

    python bench/zoo.py                                  # every net, batch 1 and 8, 2 threads
    python bench/zoo.py --nets resnet50,mobilenet_v2 --batch 1 --rounds 2
    python bench/zoo.py --no-train --no-fuse             # netdef without its inference graph pass

The nets are the deploy prototxts of bench/zoo/ (their provenance: bench/zoo/SOURCES.md) and
netdef's own FCN-8s deploy. Weights are random and written once as a .caffemodel in a temporary
folder, which every framework reads: convolutions and inner products MSRA-scaled
(N(0, 2 / fan_in)) with small random biases, BatchNorm statistics mean ~ N(0, 0.1^2), variance
~ U(0.5, 1.5) and scale factor 1, Scale gamma ~ U(0.5, 1), beta ~ N(0, 0.1^2). The input is
standard normal.

Inference: a TEST-phase forward of netdef (Net.forward_range), of OpenCV 4.x's dnn module
(cv2.dnn.readNetFromCaffe on the same prototxt and caffemodel, the bench-only extra
`opencv-python-headless<5`) and of ONNX Runtime on netdef's own ONNX export (netdef.onnx; "n/a"
where the export or ONNX Runtime is missing or refuses the net). The outputs of the first call
are compared with netdef's (max |difference|). GFLOP counts 2 x the multiply-adds of the
convolutions, deconvolutions and inner products; the achieved fraction is against the peak fp32
rate of the cores (cores x 2 FMA units x SIMD lanes x 2 x clock, from /proc/cpuinfo).

Train step (--train-nets, default ResNet-50 and MobileNet v2): the deploy net with its Softmax
replaced by SoftmaxWithLoss on a label input and BatchNorm on batch statistics
(use_global_stats cleared); netdef runs SGDSolver.step(1) (clear diffs, forward, backward,
SGD-with-momentum update), PyTorch the same net built from netdef's layer list (ZooTorch: a
small interpreter over the Caffe layers these nets use) with netdef's weights copied in:
zero_grad, forward, cross-entropy, backward, SGD.step. The first step's losses are compared.

Every framework, net and batch runs in a fresh process of its own (two frameworks in one process
disturb each other's thread pools), the processes taking turns for --rounds rounds; time is the
median over rounds of each process's median call after warm-up (bench/common.py's timeit, which
repeats a call during which other processes used the CPUs). Measurement runs take
/tmp/netdef-bench.lock so that two benchmarks never run at once.
"""
import argparse
import fcntl
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import Load, table, timeit  # noqa: E402

#: name -> (prototxt, label in the table)
NETS = {
    "caffenet": (os.path.join(HERE, "zoo", "caffenet.prototxt"), "CaffeNet"),
    "googlenet": (os.path.join(HERE, "zoo", "googlenet.prototxt"), "GoogLeNet"),
    "resnet50": (os.path.join(HERE, "zoo", "resnet50.prototxt"), "ResNet-50"),
    "squeezenet1.1": (os.path.join(HERE, "zoo", "squeezenet1.1.prototxt"), "SqueezeNet 1.1"),
    "mobilenet": (os.path.join(HERE, "zoo", "mobilenet.prototxt"), "MobileNet v1"),
    "mobilenet_v2": (os.path.join(HERE, "zoo", "mobilenet_v2.prototxt"), "MobileNet v2"),
    "fcn8s": (os.path.join(HERE, "..", "models", "fcn8s", "deploy.prototxt"), "FCN-8s 128x128"),
}
TRAIN_NETS = ("resnet50", "mobilenet_v2")
FRAMEWORKS = ("netdef", "opencv", "onnxruntime")
LOCK = "/tmp/netdef-bench.lock"


# ---- the machine ------------------------------------------------------------------------------
def peak_gflops():
    """(peak fp32 GFLOP/s, a sentence saying how) from /proc/cpuinfo: cores x 2 FMA units x lanes
    (16 with AVX-512, 8 with AVX2) x 2 flops x the clock the kernel reports. AMD's AVX-512 (Zen 4,
    vendor AuthenticAMD) runs a 512-bit FMA as two halves on its 256-bit units: 8 lanes' rate."""
    model, mhz, flags, vendor = "?", None, set(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "cpu MHz" and mhz is None:
                    mhz = float(value)
                elif key == "vendor_id" and vendor is None:
                    vendor = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    cores = os.cpu_count() or 1
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags and "fma" in flags else 4
    isa = {16: "AVX-512", 8: "AVX2+FMA", 4: "SSE"}[lanes]
    if lanes == 16 and vendor == "AuthenticAMD":
        lanes, isa = 8, "AVX-512 on 256-bit units"
    ghz = (mhz or 0.0) / 1e3
    peak = cores * 2 * lanes * 2 * ghz
    how = (f"{model}, {cores} cores x 2 FMA units x {lanes} fp32 lanes ({isa}) x 2 flops x "
           f"{ghz:.3f} GHz (cpu MHz of /proc/cpuinfo) = {peak:.1f} GFLOP/s")
    return peak, how


def gflop(net):
    """2 x multiply-adds of the convolutions, deconvolutions and inner products of a built Net."""
    total = 0
    for layer in net.layers:
        if layer.type not in ("Convolution", "Deconvolution", "InnerProduct") or not layer.blobs:
            continue
        w = layer.blobs[0]
        per_out = w.count // w.shape[0]
        name = layer.name
        blob = net.blobs[net.bottom_names[name][0] if layer.type == "Deconvolution" else net.top_names[name][0]]
        total += 2 * blob.count * per_out
    return total / 1e9


# ---- weights, inputs, the train net -----------------------------------------------------------
def random_weights(net, rng):
    """Fill every param blob of a built netdef Net as the module docstring says."""
    for layer in net.layers:
        blobs = layer.blobs
        if not blobs:
            continue
        if layer.type == "BatchNorm":
            c = blobs[0].count
            blobs[0].data[...] = rng.normal(0.0, 0.1, c)
            blobs[1].data[...] = rng.uniform(0.5, 1.5, c)
            blobs[2].data[...] = 1.0
        elif layer.type == "Scale":
            blobs[0].data[...] = rng.uniform(0.5, 1.0, blobs[0].shape)
            if len(blobs) > 1:
                blobs[1].data[...] = rng.normal(0.0, 0.1, blobs[1].shape)
        elif layer.type == "Deconvolution":
            pass  # FCN's upsampling keeps its bilinear filler: it is an interpolation, not learnt
        else:
            w = blobs[0]
            w.data[...] = rng.normal(0.0, math.sqrt(2.0 / max(w.count // w.shape[0], 1)), w.shape)
            for b in blobs[1:]:
                b.data[...] = rng.normal(0.0, 0.01, b.shape)


def train_param(prototxt, batch):
    """The deploy net as a train net: Input with the batch, a label Input, the last Softmax
    replaced by SoftmaxWithLoss, BatchNorm on batch statistics."""
    import netdef

    param, _ = netdef.proto.read_net_text(prototxt)
    pb = netdef.pb
    softmax = [lp for lp in param.layer if lp.type == "Softmax"][-1]
    for lp in param.layer:
        if lp.type == "Input":
            lp.input_param.shape[0].dim[0] = batch
        if lp.type == "BatchNorm":
            lp.batch_norm_param.ClearField("use_global_stats")
    label = pb.LayerParameter(name="label", type="Input", top=["label"])
    label.input_param.shape.add().dim.extend([batch])
    param.layer.insert(1, label)
    softmax.type = "SoftmaxWithLoss"
    softmax.bottom.append("label")
    softmax.top[:] = ["loss"]
    return param


def prepare(args, tmp):
    """Write each net's caffemodel, inputs (per batch) and ONNX exports into `tmp`; returns
    {net: {"gflop": {batch: GFLOP}, "onnx": {batch: path or reason}}}."""
    import netdef

    info = {}
    rng = np.random.default_rng(0)
    for name in dict.fromkeys(args.nets + args.train_nets):
        proto, _ = NETS[name]
        net = netdef.Net(proto, netdef.TEST, fuse=False)
        random_weights(net, rng)
        net.save(os.path.join(tmp, f"{name}.caffemodel"))
        data = net.inputs[0]
        entry = info[name] = {"gflop": {}, "onnx": {}, "input": data}
        for b in args.batch:
            shape = (b,) + net.blobs[data].shape[1:]
            np.save(os.path.join(tmp, f"{name}-b{b}-input.npy"),
                    rng.standard_normal(shape).astype(np.float32))
            net.blobs[data].reshape(*shape)
            net.reshape()
            entry["gflop"][b] = gflop(net)
            entry["onnx"][b] = export_onnx(net, os.path.join(tmp, f"{name}-b{b}.onnx"))
        if name in args.train_nets:
            for b in args.batch:
                netdef.proto.write_text(train_param(proto, b), os.path.join(tmp, f"{name}-train-b{b}.prototxt"))
                shape = (b,) + net.blobs[data].shape[1:]
                np.save(os.path.join(tmp, f"{name}-train-b{b}-input.npy"),
                        rng.standard_normal(shape).astype(np.float32))
                np.save(os.path.join(tmp, f"{name}-train-b{b}-label.npy"),
                        rng.integers(0, 1000, b).astype(np.float32))
        net.close()
    return info


def export_onnx(net, path):
    try:
        import netdef.onnx as nx
    except ImportError as e:
        return f"n/a (netdef.onnx: {e})"
    export = nx.export
    try:
        export(net, path)
    except Exception as e:  # a refusal is a row's "n/a", not the end of the bench
        return f"n/a ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    return path


# ---- one framework in this process ------------------------------------------------------------
def infer_netdef(args, tmp, name, b):
    import netdef

    proto = NETS[name][0]
    net = netdef.Net(proto, netdef.TEST, weights=os.path.join(tmp, f"{name}.caffemodel"),
                     fuse=not args.no_fuse)
    x = np.load(os.path.join(tmp, f"{name}-b{b}-input.npy"))
    net.blobs[net.inputs[0]].reshape(*x.shape)
    net.blobs[net.inputs[0]].data[...] = x
    out = net.outputs[0]
    net.forward_range()
    first = np.array(net.blobs[out].data)
    return (lambda: net.forward_range()), first


def infer_opencv(args, tmp, name, b):
    import cv2

    cv2.setNumThreads(args.threads)
    net = cv2.dnn.readNetFromCaffe(NETS[name][0], os.path.join(tmp, f"{name}.caffemodel"))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    x = np.load(os.path.join(tmp, f"{name}-b{b}-input.npy"))

    def run():
        net.setInput(x)
        return net.forward()

    return run, np.array(run())


def infer_onnxruntime(args, tmp, name, b):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(os.path.join(tmp, f"{name}-b{b}.onnx"), opts, providers=["CPUExecutionProvider"])
    x = np.load(os.path.join(tmp, f"{name}-b{b}-input.npy"))
    feed = {sess.get_inputs()[0].name: x}
    names = [sess.get_outputs()[0].name]
    run = lambda: sess.run(names, feed)  # noqa: E731
    return run, np.array(run()[0])


def train_netdef(args, tmp, name, b):
    import netdef

    sp = netdef.pb.SolverParameter(base_lr=1e-3, momentum=0.9, lr_policy="fixed", weight_decay=0.0,
                                   display=0, max_iter=1 << 30, type="SGD")
    param, _ = netdef.proto.read_net_text(os.path.join(tmp, f"{name}-train-b{b}.prototxt"))
    sp.net_param.CopyFrom(param)
    solver = netdef.SGDSolver(sp)
    solver.net.copy_from(os.path.join(tmp, f"{name}.caffemodel"))
    net = solver.net
    net.blobs["data"].data[...] = np.load(os.path.join(tmp, f"{name}-train-b{b}-input.npy"))
    net.blobs["label"].data[...] = np.load(os.path.join(tmp, f"{name}-train-b{b}-label.npy"))
    first = np.array(net.forward_range())  # the loss of the weights as loaded
    return (lambda: solver.step(1)), first


def train_torch(args, tmp, name, b):
    import netdef
    import torch

    torch.set_num_threads(args.threads)
    # the layer list and the weights come from a netdef Net that never runs
    spec = netdef.Net(os.path.join(tmp, f"{name}-train-b{b}.prototxt"), netdef.TRAIN,
                      weights=os.path.join(tmp, f"{name}.caffemodel"))
    model = ZooTorch(torch, spec).train()
    spec.close()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.from_numpy(np.load(os.path.join(tmp, f"{name}-train-b{b}-input.npy")))
    y = torch.from_numpy(np.load(os.path.join(tmp, f"{name}-train-b{b}-label.npy")).astype(np.int64))
    with torch.no_grad():  # netdef's first forward moved its BatchNorm averages once too
        first = np.array(float(model({"data": x, "label": y})["loss"]))

    def step():
        opt.zero_grad()
        loss = model({"data": x, "label": y})["loss"]
        loss.backward()
        opt.step()

    return step, first


def _pair(rep, h, w, default):
    """A Caffe spatial field: (h, w) from the _h/_w fields when set, else the repeated field."""
    if h or w:
        return int(h), int(w)
    vals = list(rep) or [default]
    return int(vals[0]), int(vals[-1])


def ZooTorch(torch, net):
    """A torch.nn.Module computing a built netdef Net's layers (the Caffe types of the zoo's
    train nets) with copies of its params; forward({input: tensor}) -> {blob: tensor}."""
    F = torch.nn.functional
    nn = torch.nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.steps = []
            self.weights = nn.ParameterDict()
            self.saved = {}
            for layer in net.layers:
                lp, ln = layer.layer_param, layer.name
                key = ln.replace(".", "_").replace("/", "_")
                bottoms, tops = list(net.bottom_names[ln]), list(net.top_names[ln])
                blobs = [torch.from_numpy(np.array(bl.data, dtype=np.float32)) for bl in layer.blobs]
                if layer.type in ("Convolution", "InnerProduct", "Scale"):
                    for i, t in enumerate(blobs):
                        self.weights[f"{key}_{i}"] = nn.Parameter(t)
                elif layer.type == "BatchNorm":
                    s = blobs[2].item()
                    s = 1.0 / s if s else 0.0
                    self.register_buffer(f"{key}_mean", blobs[0] * s)
                    self.register_buffer(f"{key}_var", blobs[1] * s)
                self.steps.append((layer.type, key, lp, bottoms, tops))

        def forward(self, feed):
            v = dict(feed)
            w = self.weights
            for typ, key, lp, bottoms, tops in self.steps:
                xs = [v[n] for n in bottoms]
                if typ == "Input":
                    continue
                if typ == "Convolution":
                    cp = lp.convolution_param
                    kh, kw = _pair(cp.kernel_size, cp.kernel_h, cp.kernel_w, 1)
                    y = F.conv2d(xs[0], w[f"{key}_0"], w[f"{key}_1"] if cp.bias_term else None,
                                 _pair(cp.stride, cp.stride_h, cp.stride_w, 1),
                                 _pair(cp.pad, cp.pad_h, cp.pad_w, 0), _pair(cp.dilation, 0, 0, 1),
                                 cp.group or 1)
                elif typ == "InnerProduct":
                    ip = lp.inner_product_param
                    y = F.linear(xs[0].flatten(1), w[f"{key}_0"], w[f"{key}_1"] if ip.bias_term else None)
                elif typ == "BatchNorm":
                    bp = lp.batch_norm_param
                    glob = bp.use_global_stats if bp.HasField("use_global_stats") else not self.training
                    y = F.batch_norm(xs[0], getattr(self, f"{key}_mean"), getattr(self, f"{key}_var"),
                                     training=not glob, momentum=1 - bp.moving_average_fraction, eps=bp.eps)
                elif typ == "Scale":
                    y = xs[0] * w[f"{key}_0"].view(1, -1, 1, 1)
                    if lp.scale_param.bias_term:
                        y = y + w[f"{key}_1"].view(1, -1, 1, 1)
                elif typ == "ReLU":
                    s = lp.relu_param.negative_slope
                    y = F.leaky_relu(xs[0], s) if s else F.relu(xs[0])
                elif typ == "Eltwise":
                    ep = lp.eltwise_param
                    if ep.operation == 1:  # SUM
                        co = list(ep.coeff) or [1.0] * len(xs)
                        y = sum(c * x for c, x in zip(co, xs))
                    elif ep.operation == 0:  # PROD
                        y = xs[0]
                        for x in xs[1:]:
                            y = y * x
                    else:
                        y = xs[0]
                        for x in xs[1:]:
                            y = torch.maximum(y, x)
                elif typ == "Pooling":
                    pp = lp.pooling_param
                    if pp.global_pooling:
                        k, s, p = tuple(xs[0].shape[2:]), (1, 1), (0, 0)
                    else:
                        k = _pair([pp.kernel_size] if pp.kernel_size else [], pp.kernel_h, pp.kernel_w, 1)
                        s = _pair([pp.stride] if pp.HasField("stride") else [], pp.stride_h, pp.stride_w, 1)
                        p = _pair([pp.pad] if pp.pad else [], pp.pad_h, pp.pad_w, 0)
                    if pp.pool == 0:
                        y = F.max_pool2d(xs[0], k, s, p, ceil_mode=True)
                    else:
                        y = F.avg_pool2d(xs[0], k, s, p, ceil_mode=True, count_include_pad=True)
                elif typ == "Concat":
                    y = torch.cat(xs, lp.concat_param.axis)
                elif typ == "Split":
                    for t in tops:
                        v[t] = xs[0]
                    continue
                elif typ == "Dropout":
                    y = F.dropout(xs[0], lp.dropout_param.dropout_ratio, self.training)
                elif typ == "Softmax":
                    y = F.softmax(xs[0], 1)
                elif typ == "SoftmaxWithLoss":
                    logits, label = xs[0].flatten(1), xs[1].reshape(-1).long()
                    y = F.cross_entropy(logits, label)
                else:
                    raise NotImplementedError(f"ZooTorch has no {typ} (layer {key})")
                v[tops[0]] = y
            return v

    return Model()


RUNNERS = {("infer", "netdef"): infer_netdef, ("infer", "opencv"): infer_opencv,
           ("infer", "onnxruntime"): infer_onnxruntime, ("train", "netdef"): train_netdef,
           ("train", "torch"): train_torch}


def only(args):
    """One (phase, framework, net, batch) in this process; prints RESULT {time, out path}."""
    phase, who, name, b = args.only.split(":")
    b = int(b)
    run, first = RUNNERS[(phase, who)](args, args.tmp, name, b)
    out = os.path.join(args.tmp, f"{phase}-{name}-b{b}-{who}.npy")
    np.save(out, first)
    t = timeit(run, lambda: None, args.warmup, args.iters)
    print("RESULT " + json.dumps({"time": t, "out": out}))


def run_alone(args, phase, who, name, b):
    cmd = [sys.executable, os.path.abspath(__file__), "--only", f"{phase}:{who}:{name}:{b}", "--tmp", args.tmp,
           "--iters", str(args.iters if phase == "infer" else args.train_iters), "--warmup", str(args.warmup),
           "--threads", str(args.threads)]
    if args.no_fuse:
        cmd.append("--no-fuse")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode or not lines:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        return {"error": " / ".join(tail)[:300]}
    return json.loads(lines[-1][len("RESULT "):])


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS), help=f"comma-separated, of {', '.join(NETS)}")
    ap.add_argument("--train-nets", default=",".join(TRAIN_NETS), help="nets whose train step is timed ('' for none)")
    ap.add_argument("--batch", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per framework, net and batch")
    ap.add_argument("--iters", type=int, default=5, help="timed inference calls per process")
    ap.add_argument("--train-iters", type=int, default=3, help="timed train steps per process")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of every framework")
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="inference frameworks to run")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-fuse", action="store_true", help="netdef without its TEST-phase graph pass")
    ap.add_argument("--only", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.only:
        return only(args)
    args.nets = [n for n in args.nets.split(",") if n]
    args.batch = [int(b) for b in args.batch.split(",") if b]
    args.train_nets = [] if args.no_train else [n for n in args.train_nets.split(",") if n]
    frameworks = [f for f in args.frameworks.split(",") if f]
    for n in args.nets + args.train_nets:
        if n not in NETS:
            raise SystemExit(f"unknown net {n!r}; nets: {', '.join(NETS)}")
    with tempfile.TemporaryDirectory(prefix="netdef-zoo-") as tmp, open(LOCK, "w") as lock:
        args.tmp = tmp
        info = prepare(args, tmp)
        fcntl.flock(lock, fcntl.LOCK_EX)
        load = Load()
        res = {}
        for _ in range(args.rounds):
            for name in args.nets:
                for b in args.batch:
                    for who in frameworks:
                        if who == "onnxruntime" and str(info[name]["onnx"][b]).startswith("n/a"):
                            continue
                        res.setdefault(("infer", name, b, who), []).append(run_alone(args, "infer", who, name, b))
            for name in args.train_nets:
                for b in args.batch:
                    for who in ("netdef", "torch"):
                        res.setdefault(("train", name, b, who), []).append(run_alone(args, "train", who, name, b))
        note = load.note()
        report(args, info, res, frameworks, note)


def _median_ms(runs):
    ts = [r["time"] for r in runs or [] if "time" in r]
    return statistics.median(ts) * 1e3 if ts else None


def _error(runs):
    errs = [r["error"] for r in runs or [] if "error" in r]
    return errs[0] if errs else None


def _diff(runs, ref_runs):
    outs = [r["out"] for r in runs or [] if "out" in r]
    refs = [r["out"] for r in ref_runs or [] if "out" in r]
    if not outs or not refs:
        return None
    a, r = np.load(outs[0]).astype(np.float64), np.load(refs[0]).astype(np.float64)
    if a.size != r.size:
        return f"shape {a.shape} vs {r.shape}"
    return float(np.max(np.abs(a.reshape(-1) - r.reshape(-1))) / max(float(np.max(np.abs(r))), 1e-30))


def report(args, info, res, frameworks, note):
    peak, how = peak_gflops()
    fused = "off" if args.no_fuse else "on"
    print(f"Zoo nets, CPU, {args.threads} threads, fp32; netdef's inference graph pass {fused}")
    print(f"peak: {how}")
    rows, ratios, ort_ratios, errors = [], {}, {}, []
    for name in args.nets:
        for b in args.batch:
            nd = _median_ms(res.get(("infer", name, b, "netdef")))
            if nd is None and ("infer", name, b, "netdef") not in res:
                continue
            row = [NETS[name][1], b, f"{info[name]['gflop'][b]:.2f}"]
            for who in frameworks:
                runs = res.get(("infer", name, b, who))
                ms = _median_ms(runs)
                if who == "onnxruntime" and runs is None:
                    row.append("n/a")
                else:
                    row.append(f"{ms:.1f}" if ms is not None else "failed")
                if _error(runs):
                    errors.append(f"{NETS[name][1]} b{b} {who}: {_error(runs)}")
            cv = _median_ms(res.get(("infer", name, b, "opencv")))
            ort = _median_ms(res.get(("infer", name, b, "onnxruntime")))
            if "opencv" in frameworks:
                row.append(f"{cv / nd:.2f}" if cv and nd else "-")
                if cv and nd:
                    ratios.setdefault(b, []).append(cv / nd)
            if "onnxruntime" in frameworks:
                row.append(f"{ort / nd:.2f}" if ort and nd else "n/a")
                if ort and nd:
                    ort_ratios.setdefault(b, []).append(ort / nd)
            for who in frameworks[1:]:
                d = _diff(res.get(("infer", name, b, who)), res.get(("infer", name, b, "netdef")))
                row.append("-" if d is None else d if isinstance(d, str) else f"{d:.1e}")
            rate = info[name]["gflop"][b] / (nd / 1e3) if nd else None
            row += [f"{rate:.1f}" if rate else "-", f"{100 * rate / peak:.0f}%" if rate and peak else "-"]
            rows.append(row)
    header = ["net", "batch", "GFLOP"] + [f"{w} ms" for w in frameworks]
    header += [h for w, h in (("opencv", "OpenCV/netdef"), ("onnxruntime", "ORT/netdef")) if w in frameworks]
    header += [f"{w} diff" for w in frameworks[1:]] + ["netdef GFLOP/s", "of peak"]
    print(table(rows, header))
    for b, rs in ratios.items():
        print(f"geometric mean OpenCV/netdef, batch {b}: {geomean(rs):.2f} ({len(rs)} nets)")
    if ratios:
        print(f"geometric mean OpenCV/netdef, all rows: {geomean([r for rs in ratios.values() for r in rs]):.2f}")
    for b, rs in ort_ratios.items():
        print(f"geometric mean ORT/netdef, batch {b}: {geomean(rs):.2f} ({len(rs)} nets)")
    for name in args.nets:
        for b in args.batch:
            o = info[name]["onnx"][b]
            if str(o).startswith("n/a"):
                print(f"ONNX Runtime {NETS[name][1]} b{b}: {o}")
    if args.train_nets:
        trows = []
        for name in args.train_nets:
            for b in args.batch:
                nd = _median_ms(res.get(("train", name, b, "netdef")))
                th = _median_ms(res.get(("train", name, b, "torch")))
                for who in ("netdef", "torch"):
                    if _error(res.get(("train", name, b, who))):
                        errors.append(f"{NETS[name][1]} train b{b} {who}: {_error(res.get(('train', name, b, who)))}")
                d = _diff(res.get(("train", name, b, "torch")), res.get(("train", name, b, "netdef")))
                trows.append([NETS[name][1], b, f"{nd:.0f}" if nd else "failed", f"{th:.0f}" if th else "failed",
                              f"{nd / th:.2f}x" if nd and th else "-",
                              "-" if d is None else f"{d:.1e}" if not isinstance(d, str) else d])
        print()
        print("train step (forward + backward + SGD-momentum update)")
        print(table(trows, ["net", "batch", "netdef ms", "PyTorch ms", "netdef / PyTorch", "loss diff step 1"]))
    for e in errors:
        print("error:", e)
    print(f"time: median over {args.rounds} rounds (a fresh process per framework, net and batch, in turns) of "
          f"the median of {args.iters} inference calls / {args.train_iters} train steps after {args.warmup} warm-up")
    print(note)


if __name__ == "__main__":
    main()
