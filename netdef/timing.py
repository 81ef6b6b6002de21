"""`netdef time <net>`: per-layer forward and backward time, averaged, as Caffe's `time` prints.

The net runs in phase TRAIN unless --phase test. Input blobs get random normal data (zeros for
blobs whose name contains 'label'); data layers (DummyData, ...) produce their own. One forward
and backward pass runs first (warm-up: kernel compilation, allocation), then --iterations timed
ones; each layer is timed alone (the device synchronized before and after it).
"""
import logging
import time

import numpy as np

from .cli import _phase, subcommand
from .errors import NetdefError
from .solver import add_device_arguments, select_device

log = logging.getLogger("netdef")


def _fill_inputs(net, seed=0):
    rng = np.random.default_rng(seed)
    for name in net.inputs:
        blob = net.blobs[name]
        if "label" in name.lower():
            values = np.zeros(blob.shape)
        else:
            values = rng.standard_normal(blob.shape)
        blob.data[...] = net.backend.asarray(values, dtype=net.dtype)


def time_net(net, iterations=50):
    """{'forward': [ms per layer], 'backward': [ms per layer], 'forward_total', 'backward_total',
    'total', 'iterations': [ms per forward-backward]} averaged over `iterations` passes."""
    sync = net.backend.synchronize
    n = len(net.layers)
    fwd, bwd = np.zeros(n), np.zeros(n)
    per_iter = []
    start_all = time.perf_counter()
    for _ in range(iterations):
        t_iter = time.perf_counter()
        for li in range(n):
            sync()
            t0 = time.perf_counter()
            net.forward_range(li, li)
            sync()
            fwd[li] += time.perf_counter() - t0
        _set_loss_diffs(net)
        for li in reversed(range(n)):
            sync()
            t0 = time.perf_counter()
            net.backward_range(li, li)
            sync()
            bwd[li] += time.perf_counter() - t0
        per_iter.append((time.perf_counter() - t_iter) * 1e3)
    total = (time.perf_counter() - start_all) * 1e3
    fwd_ms, bwd_ms = fwd * 1e3 / iterations, bwd * 1e3 / iterations
    return {"forward": list(fwd_ms), "backward": list(bwd_ms), "forward_total": float(fwd_ms.sum()),
            "backward_total": float(bwd_ms.sum()), "total": total, "iterations": per_iter}


def _set_loss_diffs(net):
    """Each loss top's diff = its loss weight, as Net.backward starts."""
    weights = {}
    for name, layer in net.layer_dict.items():
        for t, w in zip(net.top_names[name], getattr(layer, "loss_weights", [])):
            if w:
                weights[t] = w
    for t, w in weights.items():
        net.blobs[t].diff[...] = w


def _configure(p):
    p.add_argument("net", help="net .prototxt")
    p.add_argument("--iterations", type=int, default=50, help="timed passes (default 50)")
    p.add_argument("--phase", default="train", choices=["train", "test", "TRAIN", "TEST"])
    add_device_arguments(p)


@subcommand("time", "time every layer's forward and backward pass (ms, averaged)", _configure)
def cmd_time(args):
    from .net import Net

    if args.iterations < 1:
        raise NetdefError(f"--iterations must be >= 1, got {args.iterations}")
    select_device(args)
    net = Net(args.net, _phase(args.phase))
    _fill_inputs(net)
    log.info("Performing Forward")
    loss = net.forward_range()
    log.info("Initial loss: %g", loss)
    log.info("Performing Backward")
    _set_loss_diffs(net)
    net.backward_range()
    log.info("*** Benchmark begins ***")
    log.info("Testing for %d iterations.", args.iterations)
    r = time_net(net, args.iterations)
    for i, ms in enumerate(r["iterations"]):
        log.info("Iteration: %d forward-backward time: %g ms.", i + 1, ms)
    log.info("Average time per layer: ")
    width = max([10] + [len(n) for n in net.layer_dict])
    for name, f, b in zip(net.layer_dict, r["forward"], r["backward"]):
        log.info("%s\tforward: %g ms.", name.rjust(width), f)
        log.info("%s\tbackward: %g ms.", name.rjust(width), b)
    log.info("Average Forward pass: %g ms.", r["forward_total"])
    log.info("Average Backward pass: %g ms.", r["backward_total"])
    log.info("Average Forward-Backward: %g ms.", r["total"] / args.iterations)
    log.info("Total Time: %g ms.", r["total"])
    log.info("*** Benchmark ends ***")
    return 0
