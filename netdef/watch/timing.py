"""Timing a net layer by layer: the forward and backward time of each layer, averaged over
passes, as Caffe's `time` measures them (`netdef time` prints it).

Each layer is timed alone, the device synchronized before and after it; the backward passes
start from the loss diffs Net.backward starts from (each loss top's diff = its loss weight).
A chain of the Net's inference fusion (net.fused) runs as in a whole forward: its head layer's
time includes the layers folded into it, which take 0 ms.
"""
import time

import numpy as np


def fill_inputs(net, seed=0):
    """Random normal data in the net's input blobs (zeros in blobs whose name has 'label')."""
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
            net.forward_range(li, li, as_part_of=(0, n - 1))
            sync()
            fwd[li] += time.perf_counter() - t0
        net.set_loss_diffs()
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


class Timer:
    """pycaffe's caffe.Timer: start(), stop(), and the elapsed time of the last start..stop in
    `ms` (also Caffe's C++ spellings Start, Stop, MilliSeconds, Seconds). As in Caffe, reading
    the time of a running timer stops it first, and reading a timer never started is 0 (with a
    warning). On a GPU the device is synchronized at start and stop, so queued kernels count
    (Caffe times them with CUDA events)."""

    def __init__(self):
        self._start = None
        self._elapsed = 0.0
        self.running = False
        self.has_run_at_least_once = False

    def _sync(self):
        from ..backend import get_backend

        get_backend().synchronize()

    def start(self):
        if not self.running:
            self._sync()
            self._start = time.perf_counter()
            self.running = True
            self.has_run_at_least_once = True

    def stop(self):
        if self.running:
            self._sync()
            self._elapsed = time.perf_counter() - self._start
            self.running = False

    @property
    def ms(self):
        return self.milliseconds()

    def milliseconds(self):
        if not self.has_run_at_least_once:
            import logging

            logging.getLogger("netdef").warning("Timer has never been run before reading time.")
            return 0.0
        if self.running:
            self.stop()
        return self._elapsed * 1e3

    def seconds(self):
        return self.milliseconds() / 1e3

    Start, Stop, MilliSeconds, Seconds = start, stop, milliseconds, seconds
