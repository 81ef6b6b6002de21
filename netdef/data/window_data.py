"""WindowData: windows (boxes) of images warped to a square crop, with their classes: Caffe's
R-CNN fine-tuning input.

    layer { name: "data" type: "WindowData" top: "data" top: "label"
      window_data_param { source: "window_file_train.txt" batch_size: 128 fg_threshold: 0.5
                          bg_threshold: 0.5 fg_fraction: 0.25 context_pad: 16 crop_mode: "warp" }
      transform_param { crop_size: 227 mirror: true mean_file: "imagenet_mean.binaryproto" } }

The window file (`source`) repeats, per image:
    # image_index
    img_path
    channels
    height
    width
    num_windows
    class_index overlap x1 y1 x2 y2        (num_windows lines; 0-based, inclusive corners)
A window with overlap >= fg_threshold is foreground (its class_index must be > 0); one with
overlap < bg_threshold is background (class 0); the others are not used. img_path is relative
to root_folder, else to the window file's directory (or the working directory when it exists
only there). Windows must lie inside the image; every image declares the same channels (1 or
3); an image whose real size differs from the declared one is an error naming it.

A batch of N = batch_size: the first N - floor(N fg_fraction) windows are drawn uniformly (with
replacement) from the background set, the rest from the foreground set. Each window, with
crop size c = crop_size, context padding p = context_pad:
  warp, p = 0        the box (x2 - x1 + 1) x (y2 - y1 + 1) is resized to c x c
  p > 0 or square    the box is grown about its centre by c / (c - 2p) (square mode first
                     makes it square, side the longer side) so that, warped to c x c, p pixels
                     of context surround the box; the part outside the image is cut off and
                     its share of the c x c crop is left 0, the rest resized into place
                     (Caffe's arithmetic and rounding, half away from zero)
  mirror             (TRAIN, p = 1/2) flips the warped window and its placement left-right
  data = (pixel - mean) * scale inside the warped region, 0 outside it;
  mean: mean_value per channel, or mean_file's central c x c window
  label = the window's class.
Resizing is bilinear (PIL's, which also low-pass filters when shrinking, where OpenCV's
INTER_LINEAR does not). Tops: data (N, C, c, c) BGR (C = 1 for 1-channel windows files or
force_gray), label (N, 1, 1, 1), as Caffe.

Fields: window_data_param { source batch_size fg_threshold (0.5) bg_threshold (0.5)
fg_fraction (0.25) context_pad (0) crop_mode ("warp" | "square") cache_images (read every image
file into memory at setup) root_folder }; crop_size, mirror, mean_file, mean_value, scale,
force_color / force_gray from transform_param. window_data_param's own scale, mean_file,
crop_size and mirror (Caffe's older spellings; Caffe still reads scale only from there) are
taken too; setting one in both places to different values is an error. Differences from
Caffe: mirroring only in TRAIN, as every netdef data layer; a non-square mean_file is centred on
each axis (Caffe uses the width's offset for both).

Windows are drawn by the sampler of netdef.data.base: sample k of a batch takes its own
generator from (seed, epoch, pos), so the batches are reproducible and get_state() /
set_state() resume them; they are read in a background thread (netdef.data.prefetch).
"""
import io
import math
import os

import numpy as np

from ..core import netdef_pb2 as pb
from ..errors import NetdefError
from ..layers import register_layer
from .base import EpochSampler, PrefetchingDataLayer, draw_seed
from .transform import Transform, base_dir_of, layer_error, open_image, resolve_path

# Columns of the window arrays.
IMAGE, LABEL, OVERLAP, X1, Y1, X2, Y2 = range(7)
CROP_MODES = ("warp", "square")


def _cround(x):
    """C's round(): halves away from zero (Python's round() takes halves to even)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def read_window_file(path, fg_threshold, bg_threshold):
    """(images, fg, bg) of a window file: images {image_index: (path, channels, height, width)}
    and the foreground / background windows as float arrays of rows (image_index, label,
    overlap, x1, y1, x2, y2). Errors name the file and the line."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise NetdefError("window file not found", file=path) from None
    except OSError as e:
        raise NetdefError(f"cannot read the window file: {e.strerror}", file=path) from None
    except UnicodeDecodeError:
        raise NetdefError("the window file is not text", file=path) from None
    tokens = [(tok, n) for n, line in enumerate(text.splitlines(), 1) for tok in line.split()]
    if not tokens:
        raise NetdefError("the window file is empty", file=path)
    pos = 0

    def take(what, kind=str):
        nonlocal pos
        if pos >= len(tokens):
            last = tokens[-1][1]
            raise NetdefError(f"the file ends where {what} was expected", file=path, line=last)
        tok, line = tokens[pos]
        pos += 1
        try:
            return kind(tok), line
        except ValueError:
            raise NetdefError(f"expected {what}, got {tok!r}", file=path, line=line) from None

    images, fg, bg = {}, [], []
    while pos < len(tokens):
        mark, line = take("'#'")
        if mark != "#":
            raise NetdefError(f"expected '# image_index' to start an image, got {mark!r}", file=path, line=line)
        index, line = take("the image index after '#'", int)
        if index in images:
            raise NetdefError(f"image index {index} appears twice", file=path, line=line)
        image_path, _ = take("the image path")
        dims = []
        for what in ("channels", "height", "width"):
            value, line = take(f"the image's {what} (an integer)", int)
            if value < 1:
                raise NetdefError(f"the image's {what} must be >= 1, got {value}", file=path, line=line)
            dims.append(value)
        channels, height, width = dims
        if channels not in (1, 3):
            raise NetdefError(f"images have 1 or 3 channels, not {channels}", file=path, line=line)
        images[index] = (image_path, channels, height, width)
        count, line = take("the number of windows (an integer)", int)
        if count < 0:
            raise NetdefError(f"the number of windows must be >= 0, got {count}", file=path, line=line)
        for _ in range(count):
            label, line = take("a window's class_index (an integer)", int)
            overlap, _ = take("a window's overlap (a number)", float)
            x1, _ = take("a window's x1 (an integer)", int)
            y1, _ = take("a window's y1 (an integer)", int)
            x2, _ = take("a window's x2 (an integer)", int)
            y2, _ = take("a window's y2 (an integer)", int)
            if not (0 <= x1 <= x2 < width and 0 <= y1 <= y2 < height):
                raise NetdefError(f"window ({x1}, {y1}, {x2}, {y2}) is not inside the {width}x{height} "
                                  "image (0-based x1 <= x2 < width, y1 <= y2 < height)", file=path, line=line)
            if overlap >= fg_threshold:
                if label <= 0:
                    raise NetdefError(f"a foreground window (overlap {overlap} >= fg_threshold "
                                      f"{fg_threshold}) needs a class_index > 0, got {label}",
                                      file=path, line=line)
                fg.append((index, label, overlap, x1, y1, x2, y2))
            elif overlap < bg_threshold:
                bg.append((index, 0, 0, x1, y1, x2, y2))
    as_array = lambda rows: np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    return images, as_array(fg), as_array(bg)


def warp_geometry(box, crop, context_pad, square, image_hw, mirror):
    """Where a window goes in the crop x crop output, as Caffe's WindowDataLayer computes it:
    ((x1, y1, x2, y2) the region of the image to cut, inclusive; (out_h, out_w) its size once
    resized; (pad_h, pad_w) its top-left corner in the crop)."""
    x1, y1, x2, y2 = box
    if not context_pad and not square:
        return (x1, y1, x2, y2), (crop, crop), (0, 0)
    height, width = image_hw
    context_scale = crop / (crop - 2 * context_pad)
    half_h, half_w = (y2 - y1 + 1) / 2.0, (x2 - x1 + 1) / 2.0
    cx, cy = x1 + half_w, y1 + half_h
    if square:
        half_h = half_w = max(half_h, half_w)
    x1, x2 = _cround(cx - half_w * context_scale), _cround(cx + half_w * context_scale)
    y1, y2 = _cround(cy - half_h * context_scale), _cround(cy + half_h * context_scale)
    unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
    pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
    pad_x2, pad_y2 = max(0, x2 - width + 1), max(0, y2 - height + 1)
    x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
    scale_x, scale_y = crop / unclipped_w, crop / unclipped_h
    out_w, out_h = _cround((x2 - x1 + 1) * scale_x), _cround((y2 - y1 + 1) * scale_y)
    pad_x1, pad_x2 = _cround(pad_x1 * scale_x), _cround(pad_x2 * scale_x)
    pad_y1 = _cround(pad_y1 * scale_y)
    pad_h, pad_w = pad_y1, (pad_x2 if mirror else pad_x1)
    # Rounding may push the region past the crop's edge (Caffe trims it); a sliver of image at
    # the border of a huge context may round to nothing, and is kept one pixel wide.
    pad_h, pad_w = min(pad_h, crop - 1), min(pad_w, crop - 1)
    out_h, out_w = max(1, min(out_h, crop - pad_h)), max(1, min(out_w, crop - pad_w))
    return (x1, y1, x2, y2), (out_h, out_w), (pad_h, pad_w)


class WindowReader:
    def __init__(self, images, fg, bg, cfg, sampler, transform, cache):
        self.images, self.fg, self.bg, self.cfg = images, fg, bg, cfg
        self.sampler, self.transform, self.cache = sampler, transform, cache

    def initial_state(self):
        return self.sampler.initial_state()

    def _image(self, index):
        path, _, height, width = self.images[index]
        mode = "RGB" if self.cfg["color"] else "L"
        if path in self.cache:
            try:
                img = open_image(io.BytesIO(self.cache[path]), mode)
            except NetdefError as e:
                e.file = path
                e.args = (e._format(),)
                raise
        else:
            img = open_image(path, mode)
        if img.size != (width, height):
            raise NetdefError(f"the image is {img.size[0]}x{img.size[1]} (WxH), the window file says "
                              f"{width}x{height}", file=path)
        return img

    def produce(self, state):
        from PIL import Image

        cfg, t = self.cfg, self.transform
        crop, n = cfg["crop"], cfg["batch_size"]
        picks, nxt = self.sampler.take(state, n)
        channels = 3 if cfg["color"] else 1
        data = np.zeros((n, channels, crop, crop), dtype=np.float32)
        labels = np.zeros((n, 1, 1, 1), dtype=np.float32)
        for k, (_, rng) in enumerate(picks):
            pool = self.bg if k < cfg["num_bg"] else self.fg
            window = pool[int(rng.integers(0, len(pool)))]
            mirror = bool(t.mirror and t.train and rng.integers(0, 2))
            img = self._image(int(window[IMAGE]))
            box = tuple(int(v) for v in window[X1:Y2 + 1])
            (x1, y1, x2, y2), (out_h, out_w), (pad_h, pad_w) = warp_geometry(
                box, crop, cfg["context_pad"], cfg["square"], (img.size[1], img.size[0]), mirror)
            region = img.crop((x1, y1, x2 + 1, y2 + 1)).resize((out_w, out_h), Image.BILINEAR)
            pixels = np.asarray(region, dtype=np.float32)
            pixels = pixels[:, :, ::-1] if cfg["color"] else pixels[:, :, None]
            if mirror:
                pixels = pixels[:, ::-1]
            rows, cols = slice(pad_h, pad_h + out_h), slice(pad_w, pad_w + out_w)
            if t.mean_image is not None:
                pixels = pixels - cfg["mean"][rows, cols]
            elif t.mean_value is not None:
                pixels = pixels - t.mean_value
            data[k, :, rows, cols] = (pixels * np.float32(t.scale)).transpose(2, 0, 1)
            labels[k] = window[LABEL]
        return [data, labels], nxt


@register_layer("WindowData")
class WindowDataLayer(PrefetchingDataLayer):
    exact_num_top = 2

    def make_reader(self, top):
        err = layer_error(self)
        wp = self.layer_param.window_data_param
        tp = pb.TransformationParameter()
        tp.CopyFrom(self.layer_param.transform_param)
        for f in ("scale", "mean_file", "crop_size", "mirror"):
            if wp.HasField(f):
                if tp.HasField(f) and getattr(tp, f) != getattr(wp, f):
                    raise err(f"window_data_param.{f} ({getattr(wp, f)!r}) and transform_param.{f} "
                              f"({getattr(tp, f)!r}) disagree; give it once, in transform_param")
                setattr(tp, f, getattr(wp, f))
        if not wp.source:
            raise err("window_data_param.source (the window file) is not set")
        if wp.batch_size < 1:
            raise err("window_data_param.batch_size must be >= 1")
        if tp.crop_size < 1:
            raise err("transform_param.crop_size must be set (> 0): the size windows are warped to")
        crop = int(tp.crop_size)
        if wp.crop_mode not in CROP_MODES:
            raise err(f"window_data_param.crop_mode must be 'warp' or 'square', got '{wp.crop_mode}'")
        if 2 * wp.context_pad >= crop:
            raise err(f"window_data_param.context_pad {wp.context_pad} leaves nothing of the "
                      f"{crop}x{crop} crop for the window (needs 2 context_pad < crop_size)")
        if not 0 <= wp.fg_fraction <= 1:
            raise err(f"window_data_param.fg_fraction must be in [0, 1], got {wp.fg_fraction}")
        base = base_dir_of(self)
        source = resolve_path(wp.source, base)
        images, fg, bg = read_window_file(source, wp.fg_threshold, wp.bg_threshold)
        root = resolve_path(wp.root_folder, base) if wp.root_folder else None
        resolved = {}
        for index, (path, channels, height, width) in images.items():
            full = os.path.join(root, path) if root else resolve_path(path, os.path.dirname(source))
            resolved[index] = (full, channels, height, width)
        declared = {c for _, c, _, _ in images.values()}
        if len(declared) > 1:
            raise NetdefError("the images declare different channel counts (1 and 3); a batch "
                              "needs one", file=source)
        n = int(wp.batch_size)
        num_fg = int(n * np.float32(wp.fg_fraction))
        for count, pool, what, rule in ((n - num_fg, bg, "background", f"overlap < bg_threshold {wp.bg_threshold}"),
                                        (num_fg, fg, "foreground", f"overlap >= fg_threshold {wp.fg_threshold}")):
            if count and not len(pool):
                raise NetdefError(f"a batch takes {count} {what} windows but the file has none "
                                  f"({rule})", file=source, layer=self.name)
        missing = sorted({int(w[IMAGE]) for pool in (fg, bg) for w in pool} - set(resolved))
        if missing:
            raise NetdefError(f"windows refer to image index {missing[0]}, which the file does not "
                              "list", file=source)
        used = {int(w[IMAGE]) for pool in (fg, bg) for w in pool}
        cache = {}
        for index in sorted(used):
            path = resolved[index][0]
            if not os.path.isfile(path):
                raise NetdefError(f"image {index} of the window file {source} not found", file=path)
            if wp.cache_images:
                try:
                    with open(path, "rb") as f:
                        cache[path] = f.read()
                except OSError as e:
                    raise NetdefError(f"cannot read the image: {e.strerror}", file=path) from None
        transform = Transform(tp, self.phase, err, base, crop_size=crop)
        color = transform.color(declared.pop() == 3 if declared else True)
        transform.check_channels(3 if color else 1, err)
        mean = None
        if transform.mean_image is not None:
            mh, mw = transform.mean_image.shape[:2]
            if mh < crop or mw < crop:
                raise err(f"mean_file is {mh}x{mw}, smaller than crop_size {crop}")
            oy, ox = (mh - crop) // 2, (mw - crop) // 2
            mean = transform.mean_image[oy:oy + crop, ox:ox + crop]
        cfg = dict(batch_size=n, num_bg=n - num_fg, crop=crop, context_pad=int(wp.context_pad),
                   square=wp.crop_mode == "square", color=color, mean=mean)
        sampler = EpochSampler(len(fg) + len(bg), False, draw_seed(self))
        return WindowReader(resolved, fg, bg, cfg, sampler, transform, cache)
