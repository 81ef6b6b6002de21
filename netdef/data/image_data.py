"""ImageData: images and integer labels from a list file (Caffe's classification input).

    layer { name: "data" type: "ImageData" top: "data" top: "label"
      image_data_param { source: "train.txt" root_folder: "images/" batch_size: 32
                         shuffle: true new_height: 256 new_width: 256 is_color: true }
      transform_param { crop_size: 227 mirror: true mean_value: 104 mean_value: 117 mean_value: 123 } }

source: a text file of lines "<image path> <integer label>" (the label is after the last
space, so paths may contain spaces), paths relative to root_folder. Relative source and
root_folder paths are relative to the prototxt's directory (or the working directory when they
exist only there). Tops: data (N, C, H, W) BGR (C = 1 with is_color: false), label (N,).
new_height and new_width resize every image first (bilinear); without them (or a crop) all
images of a batch must have the same size. shuffle draws a new order every epoch; rand_skip
skips a random number (< rand_skip) of lines at the start. transform_param: see
netdef.data.transform (crop_size, mirror, mean_value or mean_file, scale, force_color/gray).
Read in a background thread; get_state()/set_state() give the position for resuming.
"""
import os

import numpy as np

from ..errors import NetdefError
from ..layers import register_layer
from .base import EpochSampler, PrefetchingDataLayer, draw_seed
from .seg_data import _read_list
from .transform import Transform, base_dir_of, layer_error, open_image, refuse_moved_fields, resolve_path


class ImageReader:
    def __init__(self, items, cfg, sampler, transform):
        self.items, self.cfg, self.sampler, self.transform = items, cfg, sampler, transform

    def initial_state(self):
        return self.sampler.initial_state(self.cfg["skip"])

    def produce(self, state):
        from PIL import Image

        picks, nxt = self.sampler.take(state, self.cfg["batch_size"])
        images, labels = [], []
        for index, rng in picks:
            path, label = self.items[index]
            img = open_image(path, "RGB" if self.cfg["color"] else "L")
            if self.cfg["new_hw"]:
                h, w = self.cfg["new_hw"]
                if img.size != (w, h):
                    img = img.resize((w, h), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32)
            arr = arr[:, :, ::-1] if self.cfg["color"] else arr[:, :, None]
            out = self.transform(arr, rng, source=path)
            if images and out.shape != images[0].shape:
                raise NetdefError(f"image gives {out.shape[1]}x{out.shape[2]} (HxW) but the batch's first "
                                  f"image {self.items[picks[0][0]][0]} gives {images[0].shape[1]}x"
                                  f"{images[0].shape[2]}; set new_height/new_width or crop_size", file=path)
            images.append(out)
            labels.append(label)
        return [np.stack(images), np.asarray(labels, dtype=np.float32)], nxt


@register_layer("ImageData")
class ImageDataLayer(PrefetchingDataLayer):
    min_top = 1
    max_top = 2

    def make_reader(self, top):
        err = layer_error(self)
        idp = self.layer_param.image_data_param
        refuse_moved_fields(err, idp, "image_data_param")
        if not idp.source:
            raise err("image_data_param.source (the list file) is not set")
        base = base_dir_of(self)
        src = resolve_path(idp.source, base)
        if os.path.isdir(src):
            raise NetdefError("image_data_param.source must be a list file of '<image> <label>' lines, "
                              "not a directory (for VOC directories use type SegData)", file=src)
        lines = _read_list(src)
        if not lines:
            raise NetdefError("the list file has no lines", file=src)
        root = resolve_path(idp.root_folder, base) if idp.root_folder else os.path.dirname(src)
        items = []
        for n, ln in enumerate(lines, 1):
            parts = ln.rsplit(None, 1)
            try:
                label = int(parts[1])
            except (IndexError, ValueError):
                raise NetdefError(f"line {n}: expected '<image path> <integer label>', got {ln!r}",
                                  file=src) from None
            items.append((os.path.join(root, parts[0]), label))
        nh, nw = int(idp.new_height), int(idp.new_width)
        if (nh > 0) != (nw > 0):
            raise err(f"set both new_height and new_width (got {nh} and {nw})")
        if idp.batch_size < 1:
            raise err("batch_size must be >= 1")
        transform = Transform(self.layer_param.transform_param, self.phase, err, base)
        color = transform.color(idp.is_color)
        transform.check_channels(3 if color else 1, err)
        seed = draw_seed(self)
        skip = int(np.random.default_rng([seed, 2]).integers(0, idp.rand_skip)) if idp.rand_skip else 0
        cfg = dict(batch_size=int(idp.batch_size), color=color, new_hw=(nh, nw) if nh > 0 else None, skip=skip)
        self.items = items
        return ImageReader(items, cfg, EpochSampler(len(items), idp.shuffle, seed), transform)
