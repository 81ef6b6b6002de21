"""Segmenting images with a deploy net, and PASCAL VOC's colours for label maps.

segment_image subtracts the BGR mean, runs the net at the image's size (the FCN deploy nets
accept any size: the Input is reshaped) and takes the arg-max class per pixel; save_label_png
writes a label map as a palette PNG in VOC colours (voc_palette), overlay blends the colours over
the image. `netdef segment` (netdef/commands/segment.py) does this for files and directories.
"""
import os

import numpy as np

from ..errors import NetdefError

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


def find_label(image_path, label_dirs=()):
    """The label PNG of an image, or None: <dir>/<stem>.png in each of `label_dirs`, then the
    PASCAL VOC layout (.../JPEGImages/<stem>.jpg -> .../SegmentationClass/<stem>.png)."""
    stem = os.path.splitext(os.path.basename(image_path))[0]
    candidates = [os.path.join(d, stem + ".png") for d in label_dirs]
    parent = os.path.dirname(os.path.abspath(image_path))
    if os.path.basename(parent) == "JPEGImages":
        candidates.append(os.path.join(os.path.dirname(parent), "SegmentationClass", stem + ".png"))
    return next((c for c in candidates if os.path.isfile(c)), None)


def load_label(path):
    """(H, W) int64 class map of a label image: palette ('P') or grey PNGs give their indices (VOC
    stores SegmentationClass as palette PNGs); RGB images are read through the VOC palette."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("P", "L", "I", "I;16"):
                return np.asarray(im).astype(np.int64)
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise NetdefError(f"cannot read label image: {e}", file=path) from None
    codes = {tuple(c): i for i, c in reversed(list(enumerate(voc_palette().tolist())))}
    flat = rgb.reshape(-1, 3)
    colours, inverse = np.unique(flat, axis=0, return_inverse=True)
    unknown = [tuple(c) for c in colours.tolist() if tuple(c) not in codes]
    if unknown:
        raise NetdefError(f"colour {unknown[0]} of this RGB label image is not in the VOC palette",
                          file=path)
    lut = np.array([codes[tuple(c)] for c in colours.tolist()], dtype=np.int64)
    return lut[inverse.reshape(-1)].reshape(rgb.shape[:2])


def pixel_accuracy(labels, prediction, ignore_label=255):
    """Share of the labelled pixels (label != ignore_label) predicted right; None if none is."""
    valid = labels != ignore_label
    n = int(valid.sum())
    return float((prediction[valid] == labels[valid]).sum()) / n if n else None


SHEET_COLUMNS = ("image", "ground truth", "prediction")


def contact_sheet(rows, path, min_height=96, max_height=320):
    """One PNG, a row per image: image | ground truth (when known) | prediction, the label maps in
    VOC colours, the file name and pixel accuracy above each row, column titles at the top.
    rows: [(name, image_bgr (H, W, 3) float, labels (H, W) or None, prediction (H, W))]; each
    row is scaled to a height between min_height and max_height (labels without blending)."""
    from PIL import Image, ImageDraw

    if not rows:
        raise NetdefError("no images for the contact sheet", file=path)
    with_truth = any(r[2] is not None for r in rows)
    columns = SHEET_COLUMNS if with_truth else (SHEET_COLUMNS[0], SHEET_COLUMNS[2])
    pal, pad, text_h = voc_palette(), 6, 14
    cells = []
    for name, image, labels, pred in rows:
        h, w = pred.shape
        height = min(max(h, min_height), max_height)
        size = (max(1, round(w * height / h)), height)
        img = Image.fromarray(np.clip(image[:, :, ::-1], 0, 255).astype(np.uint8)).resize(size, Image.BILINEAR)
        as_colours = lambda m: Image.fromarray(pal[np.clip(m, 0, 255).astype(np.int64)]).resize(size, Image.NEAREST)
        row = [img]
        caption = name
        if with_truth:
            if labels is None:
                row.append(None)
                caption += "  (no label)"
            else:
                row.append(as_colours(labels))
                acc = pixel_accuracy(labels, pred)
                if acc is not None:
                    caption += f"  pixel accuracy {acc:.3f}"
        row.append(as_colours(pred))
        cells.append((caption, size, row))
    col_w = [max(c[1][0] for c in cells)] * len(columns)
    width = pad + sum(w + pad for w in col_w)
    height = text_h + pad + sum(text_h + size[1] + pad for _, size, _ in cells)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x = pad
    for title, w in zip(columns, col_w):
        draw.text((x, 2), title, fill=(0, 0, 0))
        x += w + pad
    y = text_h + pad
    for caption, size, row in cells:
        draw.text((pad, y), caption, fill=(0, 0, 0))
        y += text_h
        x = pad
        for cell, w in zip(row, col_w):
            if cell is None:
                draw.rectangle([x, y, x + size[0] - 1, y + size[1] - 1], fill=(220, 220, 220))
            else:
                sheet.paste(cell, (x, y))
            x += w + pad
        y += size[1] + pad
    try:
        sheet.save(path)
    except (OSError, ValueError) as e:
        raise NetdefError(f"cannot write the contact sheet: {e}", file=path) from None
    return sheet
