#!/usr/bin/env python3
"""Mean IU and the boundary (trimap) mean IU of trained segmentation nets on their val split.

Runs a model's val.prototxt (TEST phase, its SegData layer) with a caffemodel for `--iters`
batches, and accumulates netdef.metrics' SegmentationScore over every pixel and BoundaryScore
over the pixels within `--width` pixels of a label boundary (see netdef/metrics.py).

    python bench/seg_eval.py models/fcn8s-mini/val.prototxt fcn8s-mini_iter_2500.caffemodel
    python bench/seg_eval.py models/colour-only/val.prototxt run/*.caffemodel --width 2 --iters 100
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import netdef  # noqa: E402
from netdef.fcn import metrics  # noqa: E402


def evaluate(val_prototxt, weights, iters, width):
    net = netdef.Net(val_prototxt, netdef.TEST, weights=weights)
    c = net.blobs["score"].shape[1]
    whole, band = metrics.SegmentationScore(c), metrics.BoundaryScore(c, width=width)
    for _ in range(iters):
        net.forward()
        score, label = net.blobs["score"].data, net.blobs["label"].data
        whole.add(score, label)
        band.add(score, label)
    return whole.result(), band.result()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("val_prototxt")
    ap.add_argument("weights", nargs="+")
    ap.add_argument("--iters", type=int, default=100, help="val batches (the synthetic val split has 100 images)")
    ap.add_argument("--width", type=int, default=3, help="boundary band half-width in pixels")
    ap.add_argument("--json", help="also write the scores, one entry per caffemodel, to this file")
    args = ap.parse_args()
    netdef.set_mode_cpu()
    results = []
    for w in args.weights:
        r, b = evaluate(args.val_prototxt, w, args.iters, args.width)
        results.append(dict(weights=w, mean_iu=float(r["mean_iu"]), pixel_accuracy=float(r["pixel_accuracy"]),
                            boundary_mean_iu=float(b["mean_iu"]), boundary_pixel_accuracy=float(b["pixel_accuracy"]),
                            boundary_width=args.width))
        print(f"{w}: mean IU {r['mean_iu']:.3f}, pixel acc. {r['pixel_accuracy']:.3f}, "
              f"boundary (±{args.width} px) mean IU {b['mean_iu']:.3f}, boundary pixel acc. "
              f"{b['pixel_accuracy']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
