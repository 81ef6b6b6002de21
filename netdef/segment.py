"""`netdef segment <deploy.prototxt> --weights W image.(png|jpg)|dir ... -o out/`

For each image: subtract the BGR mean, run the net at the image's size (the FCN deploy nets
accept any size: the Input is reshaped), take the arg-max class per pixel, and write
  out/<name>.png          the label map as a palette PNG in PASCAL VOC colours
  out/<name>_overlay.png  the colours blended over the image
"""
import os

import numpy as np

from .cli import subcommand
from .errors import NetdefError

VOC_MEAN_BGR = (104.00699, 116.66877, 122.67892)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")


def voc_palette(n=256):
    """PASCAL VOC's colour map: class c's colour takes its bits, three at a time, from the
    high bit down (class 0 black, 1 dark red, 2 dark green, ..., 255 (ignore) cream)."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for c in range(n):
        v, r, g, b = c, 0, 0, 0
        for j in range(8):
            r |= ((v >> 0) & 1) << (7 - j)
            g |= ((v >> 1) & 1) << (7 - j)
            b |= ((v >> 2) & 1) << (7 - j)
            v >>= 3
        pal[c] = (r, g, b)
    return pal


def save_label_png(labels, path):
    from PIL import Image

    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette(voc_palette().reshape(-1).tolist())
    img.save(path)


def load_image_bgr(path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError) as e:
        raise NetdefError(f"cannot read image: {e}", file=path) from None
    return rgb[:, :, ::-1]


def segment_image(net, image_bgr, mean=VOC_MEAN_BGR, input_name=None, output_name=None):
    """Label map (H, W) for one BGR float image (H, W, 3)."""
    input_name = input_name or net.inputs[0]
    h, w = image_bgr.shape[:2]
    x = (image_bgr - np.asarray(mean, dtype=np.float32)).transpose(2, 0, 1)[None]
    blob = net.blobs[input_name]
    if blob.shape != x.shape:
        blob.reshape(*x.shape)
        net.reshape()
    out = net.forward(**{input_name: x})
    score = out[output_name] if output_name else next(iter(out.values()))
    score = net.backend.to_numpy(score)
    if score.shape[2:] != (h, w):
        raise NetdefError(f"the net's output {output_name or next(iter(out))} is {score.shape[2:]} for an "
                          f"image of {(h, w)}; segment needs a net whose output matches its input size")
    return score[0].argmax(axis=0)


def overlay(image_bgr, labels, alpha=0.5):
    colours = voc_palette()[labels].astype(np.float32)
    rgb = image_bgr[:, :, ::-1]
    return np.clip((1 - alpha) * rgb + alpha * colours, 0, 255).astype(np.uint8)


def _images(paths):
    for p in paths:
        if os.path.isdir(p):
            for name in sorted(os.listdir(p)):
                if name.lower().endswith(IMAGE_EXTS):
                    yield os.path.join(p, name)
        elif os.path.exists(p):
            yield p
        else:
            raise NetdefError("no such image or directory", file=p)


def _configure(p):
    p.add_argument("net", help="deploy .prototxt")
    p.add_argument("images", nargs="+", help="image files or directories")
    p.add_argument("--weights", required=True)
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--mean", help="B,G,R mean to subtract (default: the VOC mean)")
    p.add_argument("--blob", help="output blob holding the scores (default: the first output)")


@subcommand("segment", "write label maps (VOC palette PNG) and overlays for images", configure=_configure)
def _cmd_segment(args):
    from PIL import Image

    from . import TEST
    from .net import Net

    net = Net(args.net, TEST, weights=args.weights)
    os.makedirs(args.output, exist_ok=True)
    mean = tuple(float(v) for v in args.mean.split(",")) if args.mean else VOC_MEAN_BGR
    count = 0
    for path in _images(args.images):
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
