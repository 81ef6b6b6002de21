"""`netdef test <net.prototxt> --weights W`: run the net (phase TEST) for --iterations batches
and print each batch's outputs, their means (with the loss they add), and segmentation metrics.

Segmentation metrics are computed on the blobs netdef.metrics.find_segmentation_blobs finds: the
(score, label) bottoms of the first Accuracy or SoftmaxWithLoss layer whose score has >= 2
channels and spatial axes, skipping that layer's ignore_label (none when unset). --seg-score,
--seg-label and --ignore-label override what is found; --no-seg-metrics turns them off. The
scoring itself is netdef.solver.evaluate, the same as a solver's test nets.
"""
import logging

from .. import TEST
from ..errors import NetdefError
from ..fcn.metrics import SegmentationBlobs, find_segmentation_blobs
from ..core.net import Net
from ..solver import evaluate
from ..solver.evaluation import caffe_number as _g
from ._common import (add_device_arguments, add_file_argument, add_fuse_argument, add_log_format_argument,
                      file_argument, select_device, set_log_format)

log = logging.getLogger("netdef")

#: --ignore-label not given (None means "skip nothing")
_UNSET = object()

HELP = "score a net: outputs averaged over batches (and segmentation metrics)"


def _label_value(text):
    return None if text.lower() == "none" else int(text)


def configure(p):
    add_file_argument(p, "net", "model", "net .prototxt (built in phase TEST)")
    p.add_argument("--weights", required=True, help="caffemodel(s), comma-separated")
    p.add_argument("--iterations", type=int, default=50, help="batches to run (default 50)")
    g = p.add_argument_group(
        "segmentation metrics",
        "pixel accuracy, mean accuracy, mean IU and fw IU of the arg-max of a score blob "
        "(N x C x H x W) against a label blob. By default the bottoms (score, label) of the "
        "first Accuracy or SoftmaxWithLoss layer whose score has >= 2 channels and spatial axes, "
        "skipping its ignore_label (none when unset); a classifier gets none.")
    g.add_argument("--seg-score", metavar="BLOB", help="the score blob to use")
    g.add_argument("--seg-label", metavar="BLOB", help="the label blob to use")
    g.add_argument("--ignore-label", metavar="N", type=_label_value,
                   default=_UNSET, help="label value to skip ('none': skip nothing)")
    g.add_argument("--no-seg-metrics", action="store_true", help="no segmentation metrics")
    add_fuse_argument(p)
    add_log_format_argument(p)
    add_device_arguments(p)


def segmentation_blobs(net, args):
    """What to compute segmentation metrics on: False, or SegmentationBlobs (see --seg-*)."""
    if args.no_seg_metrics:
        return False
    found = find_segmentation_blobs(net)
    if args.seg_score is None and args.seg_label is None and args.ignore_label is _UNSET:
        return found or False
    score = args.seg_score or (found.score if found else None)
    label = args.seg_label or (found.label if found else None)
    if score is None or label is None:
        raise NetdefError("the net has no Accuracy or SoftmaxWithLoss layer on a per-pixel score "
                          "to take the segmentation blobs from; give both --seg-score and --seg-label")
    ignore = args.ignore_label
    if ignore is _UNSET:
        ignore = found.ignore_label if found else None
    return SegmentationBlobs(score, label, ignore)


def run(args):
    args.net = file_argument(args, "net", "model")
    if args.iterations < 1:
        raise NetdefError(f"--iterations must be >= 1, got {args.iterations}")
    set_log_format(args)
    select_device(args)
    net = Net(args.net, TEST, fuse=args.fuse, forward_only=True)
    for w in args.weights.split(","):
        if w:
            net.copy_from(w)
    segmentation = segmentation_blobs(net, args)
    log.info("Running for %d iterations.", args.iterations)

    def show_batch(i, outputs):
        for name, values in outputs:
            for x in values if values is not None else ():
                log.info("Batch %d, %s = %s", i, name, _g(x))

    r = evaluate(net, args.iterations, segmentation=segmentation, on_batch=show_batch)
    log.info("Loss: %s", _g(r.loss))
    for name, values in r.outputs:
        if values is None:
            continue
        w = net.blob_loss_weights.get(name, 0.0)
        for x in values:
            extra = f" (* {_g(w)} = {_g(w * x)} loss)" if w else ""
            log.info("%s = %s%s", name, _g(x), extra)
    if r.segmentation is not None:
        for key, title in (("pixel_accuracy", "pixel accuracy"), ("mean_accuracy", "mean accuracy"),
                           ("mean_iu", "mean IU"), ("fw_iu", "fw IU")):
            log.info("%s = %s", title, _g(r.segmentation[key]))
    return 0
