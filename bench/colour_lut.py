#!/usr/bin/env python3
"""The quantised-RGB lookup table on the synthetic set: the best a per-pixel colour classifier
with no spatial context can do, measured without training anything.

Each pixel's RGB (from the JPEGs SegData reads) is quantised to `--levels` levels per channel;
the table maps each bin to the class seen most often in it on the train split (ignored pixels
skipped; a bin never seen predicts the background), and is scored on val with netdef.metrics.

    python bench/colour_lut.py                      # the set models/ train on (128 px, 4 classes)
    python bench/colour_lut.py --levels 32 --classes 6
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))

from fcn import TRAIN_COUNT, VAL_COUNT  # noqa: E402  (models/fcn.py: the set the models read)
from netdef.fcn import metrics  # noqa: E402
from netdef.data import synthetic  # noqa: E402


def load(root, split):
    from PIL import Image

    ids = open(os.path.join(root, "ImageSets", "Segmentation", split + ".txt")).read().split()
    for ident in ids:
        with Image.open(os.path.join(root, "JPEGImages", ident + ".jpg")) as im:
            img = np.asarray(im.convert("RGB"))
        with Image.open(os.path.join(root, "SegmentationClass", ident + ".png")) as im:
            lab = np.asarray(im)
        yield img, lab


def bins(img, levels):
    q = (img.astype(np.int64) * levels) // 256
    return (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--count", type=int, default=TRAIN_COUNT, help="train images (default: the models' set)")
    ap.add_argument("--val-count", type=int, default=VAL_COUNT, help="val images (default: the models' set)")
    ap.add_argument("--levels", type=int, default=16, help="quantisation levels per channel")
    args = ap.parse_args()
    root = synthetic.ensure(size=args.size, classes=args.classes, count=args.count, val_count=args.val_count)
    c, nb = args.classes, args.levels ** 3
    counts = np.zeros((nb, c), dtype=np.int64)
    for img, lab in load(root, "train"):
        keep = lab != 255
        np.add.at(counts, (bins(img, args.levels)[keep], lab[keep].astype(np.int64)), 1)
    table = counts.argmax(axis=1)  # all-zero rows (unseen bins) give 0, the background
    score = metrics.SegmentationScore(c)
    for img, lab in load(root, "val"):
        pred = table[bins(img, args.levels)]
        score.hist += metrics.confusion_matrix(lab, pred, c, 255)
    r = score.result()
    print(f"{os.path.basename(root)}: quantised-RGB lookup ({args.levels}^3 bins) on val: "
          f"mean IU {r['mean_iu']:.3f}, pixel accuracy {r['pixel_accuracy']:.3f}, "
          f"per-class IU {np.round(r['iu'], 3).tolist()}")


if __name__ == "__main__":
    main()
