"""`netdef segment <deploy.prototxt> --weights W image.(png|jpg)|dir ... -o out/`

For each image (directories: their image files), run the net (netdef.segment.segment_image) and
write
  out/<name>.png          the label map as a palette PNG in PASCAL VOC colours
  out/<name>_overlay.png  the colours blended over the image
"""
import os

import numpy as np

from .. import TEST
from ..errors import NetdefError
from ..net import Net
from ..segment import VOC_MEAN_BGR, image_files, load_image_bgr, overlay, save_label_png, segment_image

HELP = "write label maps (VOC palette PNG) and overlays for images"


def configure(p):
    p.add_argument("net", help="deploy .prototxt")
    p.add_argument("images", nargs="+", help="image files or directories")
    p.add_argument("--weights", required=True)
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--mean", help="B,G,R mean to subtract (default: the VOC mean)")
    p.add_argument("--blob", help="output blob holding the scores (default: the first output)")


def run(args):
    from PIL import Image

    net = Net(args.net, TEST, weights=args.weights)
    os.makedirs(args.output, exist_ok=True)
    mean = tuple(float(v) for v in args.mean.split(",")) if args.mean else VOC_MEAN_BGR
    count = 0
    for path in image_files(args.images):
        img = load_image_bgr(path)
        labels = segment_image(net, img, mean, output_name=args.blob)
        stem = os.path.splitext(os.path.basename(path))[0]
        save_label_png(labels, os.path.join(args.output, stem + ".png"))
        Image.fromarray(overlay(img, labels)).save(os.path.join(args.output, stem + "_overlay.png"))
        classes = ", ".join(str(c) for c in np.unique(labels))
        print(f"{path}: classes {classes} -> {os.path.join(args.output, stem)}.png")
        count += 1
    if not count:
        raise NetdefError("no images found", file=" ".join(args.images))
    return 0
