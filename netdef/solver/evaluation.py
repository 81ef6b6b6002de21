"""Scoring a net: run it for N batches, average each output over them, and accumulate the
segmentation metrics of its score and label blobs. One implementation, for Solver.test (the test
nets during training) and for `netdef test`.

Also the way Caffe prints numbers (C++ ostream's 6 significant digits) and a net's outputs:
`    Test net output #k: name = v (* w = w*v loss)`, the loss weight being Net.blob_loss_weights'.
"""
import logging
from dataclasses import dataclass, field

import numpy as np

from ..fcn.metrics import SegmentationAccumulator, find_segmentation_blobs

log = logging.getLogger("netdef")

#: Outputs with more values than this are not printed value by value (a score map would be).
MAX_PRINTED_VALUES = 1000


def caffe_number(x):
    """A number as Caffe's logs print it (C++ ostream default: 6 significant digits)."""
    return format(float(x), "g")


def net_outputs(net):
    """[(name, flat float64 values, or None when too many to print)] of the net's outputs."""
    out = []
    for name in net.outputs:
        blob = net.blobs[name]
        if blob.count > MAX_PRINTED_VALUES:
            out.append((name, None))
        else:
            out.append((name, net.backend.to_numpy(blob.data).astype(np.float64).reshape(-1)))
    return out


def log_outputs(net, kind, outputs):
    """Caffe's `    <kind> net output #k: name = v` lines, with the loss a loss output adds."""
    k = 0
    for name, values in outputs:
        if values is None:
            continue
        w = net.blob_loss_weights.get(name, 0.0)
        for v in values:
            extra = f" (* {caffe_number(w)} = {caffe_number(w * v)} loss)" if w else ""
            log.info("    %s net output #%d: %s = %s%s", kind, k, name, caffe_number(v), extra)
            k += 1


@dataclass
class Evaluation:
    """What evaluate() measured; `loss` and `outputs` are means over the batches run."""

    iterations: int
    loss: float = 0.0
    #: [(output name, mean values (float64), or None for an output too large to print)]
    outputs: list = field(default_factory=list)
    #: netdef.metrics.scores() of the segmentation blobs, or None
    segmentation: dict = None
    #: before_batch ended it early (outputs and metrics are then not computed)
    interrupted: bool = False


def evaluate(net, iterations, segmentation=None, before_batch=None, on_batch=None):
    """Run `net` forward `iterations` times and average its outputs.

    segmentation: None: the blobs metrics.find_segmentation_blobs finds (none for a net that
    is not a segmenter); False: no segmentation metrics; a metrics.SegmentationBlobs: those.
    before_batch(): called before each batch; returning False ends the evaluation (interrupted).
    on_batch(i, outputs): called after batch i with net_outputs(net)."""
    if segmentation is None:
        segmentation = find_segmentation_blobs(net)
    seg = SegmentationAccumulator(net, segmentation) if segmentation else None
    result = Evaluation(iterations)
    sums, loss = None, 0.0
    for i in range(iterations):
        if before_batch is not None and before_batch() is False:
            result.interrupted = True
            return result
        loss += net.forward_range()
        outs = net_outputs(net)
        if on_batch is not None:
            on_batch(i, outs)
        if sums is None:
            sums = [(name, None if v is None else v.copy()) for name, v in outs]
        else:
            for (_, acc), (_, v) in zip(sums, outs):
                if acc is not None:
                    acc += v
        if seg is not None:
            seg.add()
    n = max(iterations, 1)
    result.loss = loss / n
    result.outputs = [(name, None if acc is None else acc / n) for name, acc in sums or []]
    result.segmentation = seg.result() if seg is not None else None
    return result
