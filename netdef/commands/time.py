"""`netdef time <net>`: per-layer forward and backward time, averaged, as Caffe's `time` prints.

The net runs in phase TRAIN unless --phase test. Input blobs get random normal data (zeros for
blobs whose name contains 'label'); data layers (DummyData, ...) produce their own. One forward
and backward pass runs first (warm-up: kernel compilation, allocation), then --iterations timed
ones (netdef.timing.time_net).
"""
import logging

from ..errors import NetdefError
from ..core.net import Net
from ..watch.timing import fill_inputs, time_net
from ._common import (add_device_arguments, add_file_argument, add_fuse_argument, add_phase_argument, file_argument,
                      phase, select_device)

log = logging.getLogger("netdef")

HELP = "time every layer's forward and backward pass (ms, averaged)"


def configure(p):
    add_file_argument(p, "net", "model", "net .prototxt")
    p.add_argument("--iterations", type=int, default=50, help="timed passes (default 50)")
    add_phase_argument(p, "train")
    add_device_arguments(p)
    add_fuse_argument(p)


def run(args):
    args.net = file_argument(args, "net", "model")
    if args.iterations < 1:
        raise NetdefError(f"--iterations must be >= 1, got {args.iterations}")
    select_device(args)
    net = Net(args.net, phase(args.phase), fuse=args.fuse)
    fill_inputs(net)
    log.info("Performing Forward")
    loss = net.forward_range()
    log.info("Initial loss: %g", loss)
    log.info("Performing Backward")
    net.set_loss_diffs()
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
