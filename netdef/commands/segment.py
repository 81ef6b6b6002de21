"""`netdef segment <deploy.prototxt> --weights W image.(png|jpg)|dir ... [-o out/] [--sheet s.png]`

For each image (directories: their image files), run the net (netdef.segment.segment_image) and
write, with -o,
  out/<name>.png          the label map as a palette PNG in PASCAL VOC colours
  out/<name>_overlay.png  the colours blended over the image
and, with --sheet, one contact sheet PNG: a row per image, image | ground truth | prediction,
the ground truth being <name>.png in a --labels directory or, in the VOC layout, in
SegmentationClass/ next to JPEGImages/ (the column is left out when no image has one).
"""
import os

import numpy as np

from .. import TEST
from ..errors import NetdefError
from ..core.net import Net
from ._common import add_fuse_argument
from ..fcn.segment import (VOC_MEAN_BGR, contact_sheet, find_label, image_files, load_image_bgr, load_label,
                       overlay, pixel_accuracy, save_label_png, segment_image)

HELP = "write label maps (VOC palette PNG), overlays and a contact sheet for images"


def configure(p):
    p.add_argument("net", help="deploy .prototxt")
    p.add_argument("images", nargs="+", help="image files or directories")
    p.add_argument("--weights", required=True)
    p.add_argument("-o", "--output", help="output directory for label maps and overlays")
    p.add_argument("--sheet", metavar="PNG", help="write a contact sheet: image | ground truth | prediction rows")
    p.add_argument("--labels", action="append", default=[], metavar="DIR",
                   help="directory of ground-truth label PNGs named as the images (repeatable; "
                        "default: the VOC layout's SegmentationClass/)")
    p.add_argument("--mean", help="B,G,R mean to subtract (default: the VOC mean)")
    p.add_argument("--blob", help="output blob holding the scores (default: the first output)")
    add_fuse_argument(p)


def run(args):
    from PIL import Image

    if not args.output and not args.sheet:
        raise NetdefError("nothing to write: give -o DIR (label maps, overlays) and/or --sheet FILE.png")
    if args.sheet and not args.sheet.lower().endswith(".png"):
        raise NetdefError("the contact sheet is a PNG: name it *.png", file=args.sheet)
    for d in args.labels:
        if not os.path.isdir(d):
            raise NetdefError("no such label directory", file=d)
    net = Net(args.net, TEST, weights=args.weights, fuse=args.fuse, forward_only=True)
    if args.output:
        os.makedirs(args.output, exist_ok=True)
    mean = tuple(float(v) for v in args.mean.split(",")) if args.mean else VOC_MEAN_BGR
    rows, count = [], 0
    for path in image_files(args.images):
        img = load_image_bgr(path)
        labels = segment_image(net, img, mean, output_name=args.blob)
        stem = os.path.splitext(os.path.basename(path))[0]
        classes = ", ".join(str(c) for c in np.unique(labels))
        message = f"{path}: classes {classes}"
        if args.output:
            save_label_png(labels, os.path.join(args.output, stem + ".png"))
            Image.fromarray(overlay(img, labels)).save(os.path.join(args.output, stem + "_overlay.png"))
            message += f" -> {os.path.join(args.output, stem)}.png"
        if args.sheet:
            truth = None
            label_path = find_label(path, args.labels)
            if label_path:
                truth = load_label(label_path)
                if truth.shape != labels.shape:
                    raise NetdefError(f"the label is {truth.shape[1]}x{truth.shape[0]} (WxH), the image "
                                      f"{labels.shape[1]}x{labels.shape[0]}", file=label_path)
                acc = pixel_accuracy(truth, labels)
                if acc is not None:
                    message += f", pixel accuracy {acc:.4f}"
            rows.append((os.path.basename(path), img, truth, labels))
        print(message)
        count += 1
    if not count:
        raise NetdefError("no images found", file=" ".join(args.images))
    if args.sheet:
        contact_sheet(rows, args.sheet)
        print(f"contact sheet: {args.sheet} ({len(rows)} rows)")
    return 0
