"""SegData: images and per-pixel labels from a PASCAL-VOC-layout directory (or the built-in
synthetic set), for semantic segmentation.

    layer { name: "data" type: "SegData" top: "data" top: "label"
      image_data_param { source: "synthetic" batch_size: 1 shuffle: true }
      transform_param { mean_value: 104.00699 mean_value: 116.66877 mean_value: 122.67892
                        mirror: true crop_size: 0 }
      python_param { param_str: "{'split': 'train', 'size': 128, 'classes': 4, 'count': 400}" } }

Tops: data (N, C, H, W) float, BGR minus the mean, times transform_param.scale; label
(N, 1, H, W) class indices as floats, 255 = ignore. The label top may be left out.

Where the data come from (image_data_param.source, or param_str 'source' / 'voc_dir' /
'sbdd_dir' / 'dataset'):
  "synthetic"        the built-in set (netdef.data.synthetic), generated on first use; its
                     param_str keys: size (128), classes (4, background included), count (400
                     train images), val_count (count // 4), data_seed (0)
  a directory        PASCAL VOC: ImageSets/Segmentation/<split>.txt lists ids,
                     JPEGImages/<id>.jpg the images, SegmentationClass/<id>.png the labels
                     (palette or grayscale PNGs whose values are class indices)
                     'sbdd_dir' instead: SBDD's <dir>/<split>.txt, img/<id>.jpg, cls/<id>.mat
                     (or cls/<id>.png); .mat labels need scipy
  a list file        lines "<id>" (under root_folder, default: the VOC root the file lies in,
                     <root>/ImageSets/Segmentation/x.txt, else the file's directory), or
                     "<image> <label>" paths relative to root_folder (default: the file's dir)
Relative paths are relative to the prototxt's directory, or to the working directory when
they exist only there.

Options (image_data_param fields, or the same keys in param_str; giving one in both is an
error): batch_size (1); shuffle (default: true in TRAIN, false in TEST; FCN's 'randomize' is
the same); new_height / new_width (resize every image and label first); is_color (true);
rand_skip; root_folder. param_str only: split (default 'train' in TRAIN, 'val' in TEST),
seed (default: drawn from the solver's random_seed), mean (B, G, R; same as mean_value),
crop_size / mirror (same as transform_param's), scale_range (lo, hi): resize each TRAIN image
by a factor drawn uniformly from [lo, hi], ignore_label (255: the label of padding),
prefetch (batches read ahead; 0 reads synchronously).

The schema's typed form, segmentation_data_param (also under the type name "SegmentationData"),
sets the same options: root (a VOC directory; with source, the root of a list of ids), split,
source (a list file), batch_size, shuffle, scale_min/scale_max (= scale_range), ignore_label,
prefetch, seed, image_dir / label_dir / image_ext / label_ext (another directory layout; also
param_str keys), synthetic: "shapes" (the built-in set) with synthetic_size, synthetic_train
(= count), synthetic_val (= val_count), synthetic_classes. E.g.
    segmentation_data_param { synthetic: "shapes" split: "train" batch_size: 4 scale_min: 0.75
                              scale_max: 1.25 }

Per image, in this order: read; resize to new_height x new_width; random scale (TRAIN);
subtract the mean; if smaller than crop_size, pad (mean / ignore_label) to it; crop (random in
TRAIN, centred in TEST); mirror (TRAIN, p = 1/2); times scale. A batch of images of different
sizes is padded at the bottom and right to the largest (data 0 = the mean, label ignore_label).
An image whose size differs from its label's is an error naming both files.
"""
import os

import numpy as np

from ..core import netdef_pb2 as pb
from ..errors import NetdefError
from ..layers import register_layer
from . import synthetic
from .base import EpochSampler, PrefetchingDataLayer, draw_seed
from .transform import (IGNORE_LABEL, Transform, base_dir_of, layer_error, open_image, open_label,
                        pad_batch, parse_param_str, refuse_moved_fields, resolve_path)

#: param_str keys SegData understands (anything else is an error).
PARAM_KEYS = {
    "source", "voc_dir", "sbdd_dir", "dataset", "split", "seed", "mean", "batch_size", "shuffle",
    "randomize", "new_height", "new_width", "is_color", "rand_skip", "root_folder", "crop_size",
    "mirror", "scale_range", "ignore_label", "prefetch", "size", "classes", "count", "val_count",
    "data_seed", "image_dir", "label_dir", "image_ext", "label_ext",
}
#: segmentation_data_param field -> the param_str key it stands for (root, scale_min/max and
#: synthetic are mapped by hand)
SEGMENTATION_FIELDS = {
    "split": "split", "source": "source", "batch_size": "batch_size", "shuffle": "shuffle",
    "ignore_label": "ignore_label", "prefetch": "prefetch", "seed": "seed", "image_dir": "image_dir",
    "label_dir": "label_dir", "image_ext": "image_ext", "label_ext": "label_ext",
    "synthetic_size": "size", "synthetic_train": "count", "synthetic_val": "val_count",
    "synthetic_classes": "classes",
}
SYNTHETIC_NAMES = ("synthetic", "shapes")
SYNTHETIC_KEYS = ("size", "classes", "count", "val_count", "data_seed")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")


def _find_file(stem_path, exts):
    for ext in exts:
        if os.path.isfile(stem_path + ext):
            return stem_path + ext
    return stem_path + exts[0]


def _read_list(path, what="list file"):
    if not os.path.exists(path):
        raise NetdefError(f"{what} not found", file=path)
    try:
        with open(path) as f:
            lines = [ln.strip() for ln in f]
    except OSError as e:
        raise NetdefError(f"cannot read {what}: {e.strerror}", file=path) from None
    except UnicodeDecodeError:
        raise NetdefError(f"{what} is not text", file=path) from None
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _layout(dirs):
    dirs = dirs or {}
    img_exts = (dirs["image_ext"],) if "image_ext" in dirs else IMAGE_EXTS
    lbl_exts = (dirs["label_ext"],) if "label_ext" in dirs else (".png",)
    return dirs.get("image_dir", "JPEGImages"), dirs.get("label_dir", "SegmentationClass"), img_exts, lbl_exts


def voc_samples(root, split, layout="voc", dirs=None):
    """[(image path, label path)] of a VOC (or SBDD) directory's split."""
    if not os.path.isdir(root):
        raise NetdefError(f"{'SBDD' if layout == 'sbdd' else 'VOC'} data directory not found", file=root)
    if layout == "sbdd":
        lst = os.path.join(root, f"{split}.txt")
        img_dir, lbl_dir, img_exts, lbl_exts = "img", "cls", IMAGE_EXTS, (".png", ".mat")
    else:
        lst = os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt")
        img_dir, lbl_dir, img_exts, lbl_exts = _layout(dirs)
    if not os.path.isfile(lst):
        avail = sorted(f[:-4] for f in os.listdir(os.path.dirname(lst)) if f.endswith(".txt")) \
            if os.path.isdir(os.path.dirname(lst)) else []
        hint = f" (splits there: {', '.join(avail)})" if avail else ""
        raise NetdefError(f"no list file for split '{split}'{hint}", file=lst)
    ids = [ln.split()[0] for ln in _read_list(lst)]
    return [(_find_file(os.path.join(root, img_dir, i), img_exts),
             _find_file(os.path.join(root, lbl_dir, i), lbl_exts)) for i in ids], lst


def list_samples(path, root_folder=None, dirs=None):
    """[(image path, label path)] from a list file of ids or of 'image label' pairs."""
    img_dir, lbl_dir, img_exts, lbl_exts = _layout(dirs)
    lines = _read_list(path)
    here = os.path.dirname(path)
    out = []
    for n, ln in enumerate(lines, 1):
        parts = ln.split()
        if len(parts) == 1:
            if root_folder:
                root = root_folder
            elif os.path.basename(here) == "Segmentation" and \
                    os.path.basename(os.path.dirname(here)) == "ImageSets":
                root = os.path.dirname(os.path.dirname(here))
            else:
                root = here
            out.append((_find_file(os.path.join(root, img_dir, parts[0]), img_exts),
                        _find_file(os.path.join(root, lbl_dir, parts[0]), lbl_exts)))
        elif len(parts) == 2:
            root = root_folder or here
            out.append((os.path.join(root, parts[0]), os.path.join(root, parts[1])))
        else:
            raise NetdefError(f"line {n}: expected '<id>' or '<image> <label>', got {ln!r}", file=path)
    return out


class SegReader:
    """Produces batches (data, label) of a list of (image, label) files; see SegData."""

    def __init__(self, samples, cfg, sampler, transform):
        self.samples, self.cfg, self.sampler, self.transform = samples, cfg, sampler, transform

    def initial_state(self):
        return self.sampler.initial_state(self.cfg["skip"])

    def load(self, index, rng):
        cfg = self.cfg
        img_path, lbl_path = self.samples[index]
        img = open_image(img_path, "RGB" if cfg["color"] else "L")
        lbl = open_label(lbl_path)
        if img.size != lbl.size:
            raise NetdefError(f"image is {img.size[1]}x{img.size[0]} (HxW) but its label {lbl_path} is "
                              f"{lbl.size[1]}x{lbl.size[0]}", file=img_path)
        from PIL import Image

        w, h = img.size
        if cfg["new_hw"]:
            h, w = cfg["new_hw"]
        if cfg["scale_range"] and self.transform.train:
            f = rng.uniform(*cfg["scale_range"])
            h, w = max(int(round(h * f)), 1), max(int(round(w * f)), 1)
        if (w, h) != img.size:
            img = img.resize((w, h), Image.BILINEAR)
            lbl = lbl.resize((w, h), Image.NEAREST)
        arr = np.asarray(img, dtype=np.float32)
        arr = arr[:, :, ::-1] if cfg["color"] else arr[:, :, None]
        return self.transform(arr, rng, label=np.asarray(lbl), pad_label=cfg["ignore"], source=img_path)

    def produce(self, state):
        picks, nxt = self.sampler.take(state, self.cfg["batch_size"])
        images, labels = [], []
        for index, rng in picks:
            im, lb = self.load(index, rng)
            images.append(im)
            labels.append(lb)
        data, label = pad_batch(images, labels, self.cfg["ignore"])
        return [data, label], nxt


@register_layer("SegData")
class SegDataLayer(PrefetchingDataLayer):
    min_top = 1
    max_top = 2

    def param_dict(self):
        """The param_str dict (FCN-style compatibility layers override this)."""
        return parse_param_str(self.layer_param.python_param.param_str, layer_error(self))

    def merge_segmentation_param(self, p):
        """segmentation_data_param's fields, as the param_str keys they stand for, added to p."""
        if not self.layer_param.HasField("segmentation_data_param"):
            return p
        err = layer_error(self)
        sp = self.layer_param.segmentation_data_param
        p = dict(p)

        def put(key, value, field):
            if key in p:
                raise err(f"'{key}' is given in param_str and as segmentation_data_param.{field}")
            p[key] = value

        for field, key in SEGMENTATION_FIELDS.items():
            if sp.HasField(field):
                put(key, getattr(sp, field), field)
        if sp.HasField("root"):
            put("source" if not sp.HasField("source") else "root_folder", sp.root, "root")
        if sp.HasField("scale_min") or sp.HasField("scale_max"):
            put("scale_range", (sp.scale_min, sp.scale_max), "scale_min/scale_max")
        if sp.HasField("synthetic"):
            if sp.synthetic not in SYNTHETIC_NAMES:
                raise err(f"segmentation_data_param.synthetic: unknown set '{sp.synthetic}'; "
                          f"the built-in set is 'shapes'")
            if sp.HasField("root") or sp.HasField("source"):
                raise err("segmentation_data_param: give root/source or synthetic, not both")
            put("dataset", "synthetic", "synthetic")
        return p

    def options(self):
        """Every option, merged from the proto messages and param_str (see the docstring)."""
        err = layer_error(self)
        p = self.param_dict()
        unknown = sorted(set(p) - PARAM_KEYS)
        if unknown:
            raise err(f"unknown param_str key(s) {', '.join(map(repr, unknown))}; known: "
                      f"{', '.join(sorted(PARAM_KEYS))}")
        p = self.merge_segmentation_param(p)
        idp = self.layer_param.image_data_param
        tp = self.layer_param.transform_param
        refuse_moved_fields(err, idp, "image_data_param")

        def pick(key, msg, field, default, alias=None):
            keys = [k for k in (key, alias) if k and k in p]
            if len(keys) > 1:
                raise err(f"param_str gives both '{keys[0]}' and '{keys[1]}'")
            if keys and msg is not None and msg.HasField(field):
                raise err(f"'{keys[0]}' is given in param_str and as {msg.DESCRIPTOR.name}.{field}")
            if keys:
                return p[keys[0]]
            if msg is not None and msg.HasField(field):
                return getattr(msg, field)
            return default

        o = {}
        srcs = [k for k in ("source", "voc_dir", "sbdd_dir", "dataset") if k in p]
        if len(srcs) > 1:
            raise err(f"param_str gives several sources: {', '.join(srcs)}")
        if srcs and idp.HasField("source"):
            raise err(f"'{srcs[0]}' is given in param_str and as image_data_param.source")
        if "dataset" in p and p["dataset"] not in SYNTHETIC_NAMES:
            raise err(f"dataset '{p['dataset']}' is unknown: the built-in set is 'synthetic' (for other "
                      "data give a directory as 'source' or 'voc_dir')")
        if srcs:
            o["source"], o["layout"] = str(p[srcs[0]]), "sbdd" if srcs[0] == "sbdd_dir" else "voc"
            if srcs[0] == "dataset":
                o["source"] = "synthetic"
        elif idp.HasField("source"):
            o["source"], o["layout"] = idp.source, "voc"
        else:
            raise err("no data source: set image_data_param.source (a VOC directory, a list file, or "
                      "\"synthetic\") or param_str 'voc_dir' / 'source' / 'dataset'")
        o["split"] = str(p.get("split", "train" if self.phase == pb.TRAIN else "val"))
        o["batch_size"] = int(pick("batch_size", idp, "batch_size", 1))
        if o["batch_size"] < 1:
            raise err(f"batch_size must be >= 1, got {o['batch_size']}")
        o["shuffle"] = bool(pick("shuffle", idp, "shuffle", self.phase == pb.TRAIN, alias="randomize"))
        nh, nw = int(pick("new_height", idp, "new_height", 0)), int(pick("new_width", idp, "new_width", 0))
        if (nh > 0) != (nw > 0):
            raise err(f"set both new_height and new_width (got {nh} and {nw})")
        o["new_hw"] = (nh, nw) if nh > 0 else None
        o["color"] = bool(pick("is_color", idp, "is_color", True))
        o["rand_skip"] = int(pick("rand_skip", idp, "rand_skip", 0))
        root = pick("root_folder", idp, "root_folder", "")
        o["root_folder"] = str(root) if root else None
        o["crop_size"] = int(pick("crop_size", tp, "crop_size", 0))
        o["mirror"] = bool(pick("mirror", tp, "mirror", False))
        mean = p.get("mean")
        if mean is not None:
            if len(tp.mean_value):
                raise err("the mean is given in param_str and as transform_param.mean_value")
            mean = [float(v) for v in (mean if isinstance(mean, (list, tuple)) else [mean])]
        o["mean"] = mean
        sr = p.get("scale_range")
        if sr is not None:
            if not (isinstance(sr, (list, tuple)) and len(sr) == 2 and 0 < float(sr[0]) <= float(sr[1])):
                raise err(f"scale_range must be (lo, hi) with 0 < lo <= hi, got {sr!r}")
            sr = (float(sr[0]), float(sr[1]))
        o["scale_range"] = sr
        o["ignore"] = int(p.get("ignore_label", IGNORE_LABEL))
        if not 0 <= o["ignore"] <= 255:
            raise err(f"ignore_label must be in 0..255, got {o['ignore']}")
        o["seed"] = p.get("seed")
        o["prefetch"] = p.get("prefetch")
        o["synthetic"] = {k: p[k] for k in SYNTHETIC_KEYS if k in p}
        dirs = {k: str(p[k]) for k in ("image_dir", "label_dir", "image_ext", "label_ext") if k in p}
        if dirs and o["layout"] != "voc":
            raise err(f"{', '.join(dirs)} apply to the VOC layout only")
        o["dirs"] = dirs
        return o

    def samples(self, o):
        """[(image, label)] for the options, and the file or directory they came from."""
        err = layer_error(self)
        src = o["source"]
        if src in SYNTHETIC_NAMES:
            kw = dict(o["synthetic"])
            if "data_seed" in kw:
                kw["seed"] = kw.pop("data_seed")
            try:
                root = synthetic.ensure(**kw)
            except (TypeError, ValueError) as e:
                raise err(f"bad synthetic set parameters {o['synthetic']}: {e}") from None
            if o["split"] not in ("train", "val", "trainval"):
                raise err(f"the synthetic set has splits train, val and trainval, not '{o['split']}'")
            return voc_samples(root, o["split"])
        if o["synthetic"]:
            raise err(f"{', '.join(o['synthetic'])} only apply to source \"synthetic\"")
        path = resolve_path(src, base_dir_of(self))
        if os.path.isdir(path):
            if o["root_folder"]:
                raise err("root_folder applies to list files; the source is a directory")
            return voc_samples(path, o["split"], o["layout"], o["dirs"])
        if os.path.isfile(path) and o["layout"] == "voc":
            root = resolve_path(o["root_folder"], base_dir_of(self)) if o["root_folder"] else None
            return list_samples(path, root, o["dirs"]), path
        what = "SBDD directory" if o["layout"] == "sbdd" else "data source (VOC directory or list file)"
        raise NetdefError(f"{what} not found", file=path)

    def make_reader(self, top):
        o = self.options()
        err = layer_error(self)
        samples, where = self.samples(o)
        if not samples:
            raise NetdefError("the list has no samples", file=where)
        missing = [p for pair in samples for p in pair if not os.path.isfile(p)]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise NetdefError(f"file listed in {where} not found{more}", file=missing[0])
        transform = Transform(self.layer_param.transform_param, self.phase, err, base_dir_of(self),
                              mean=o["mean"], crop_size=o["crop_size"], mirror=o["mirror"],
                              allow_mean_file=False)
        transform.check_channels(3 if o["color"] else 1, err)
        seed = draw_seed(self, o["seed"])
        o["skip"] = int(np.random.default_rng([seed, 2]).integers(0, o["rand_skip"])) if o["rand_skip"] else 0
        if o["prefetch"] is not None:
            self.prefetch_depth = int(o["prefetch"])
        self.sources = samples
        return SegReader(samples, o, EpochSampler(len(samples), o["shuffle"], seed), transform)


@register_layer("SegmentationData")
class SegmentationDataLayer(SegDataLayer):
    """The same layer under the name the schema's segmentation_data_param documents."""
