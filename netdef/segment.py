"""Segmenting images with a deploy net, and PASCAL VOC's colours for label maps.

segment_image subtracts the BGR mean, runs the net at the image's size (the FCN deploy nets
accept any size: the Input is reshaped) and takes the arg-max class per pixel; save_label_png
writes a label map as a palette PNG in VOC colours (voc_palette), overlay blends the colours over
the image. `netdef segment` (netdef/commands/segment.py) does this for files and directories.
"""
import os

import numpy as np

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


def image_files(paths):
    """The image files among `paths`, directories expanded (sorted, by IMAGE_EXTS)."""
    for p in paths:
        if os.path.isdir(p):
            for name in sorted(os.listdir(p)):
                if name.lower().endswith(IMAGE_EXTS):
                    yield os.path.join(p, name)
        elif os.path.exists(p):
            yield p
        else:
            raise NetdefError("no such image or directory", file=p)
