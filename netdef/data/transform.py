"""What the data layers share: reading images and label maps, path resolution, param_str
parsing, Caffe's TransformationParameter, and batching by padding.

TransformationParameter, as Caffe applies it to one image (H, W, C) in BGR order:
    crop_size c > 0   an H x W window of c x c: at a uniformly random offset in TRAIN
                      (y in [0, H - c], x in [0, W - c]), centred ((H - c) // 2) in TEST
    mirror            flip left-right with probability 1/2, in TRAIN only
    mean_value        subtracted per channel (one value for all channels, or one per channel);
    mean_file         or a per-pixel mean (a binary BlobProto), cropped with the image
    scale             (x - mean) * scale
Random draws come from the generator the layer passes in, in this order: crop offsets, mirror.
"""
import ast
import os

import numpy as np

from ..core import netdef_pb2 as pb
from ..errors import LayerSetupError, NetdefError

IGNORE_LABEL = 255


# ---- paths and parameters ---------------------------------------------------------------------


def resolve_path(path, base_dir=None):
    """A data path from a prototxt: absolute as given; relative to the prototxt's directory
    (`base_dir`) when it exists there, else relative to the working directory when it exists
    there (Caffe's rule), else the prototxt-relative path (so the error names that)."""
    path = os.path.expanduser(path)
    if os.path.isabs(path) or not base_dir:
        return os.path.abspath(path)
    near = os.path.normpath(os.path.join(base_dir, path))
    if os.path.exists(near):
        return near
    if os.path.exists(path):
        return os.path.abspath(path)
    return near


def base_dir_of(layer):
    """The directory of the prototxt the layer was read from (None for nets built in code)."""
    fn = layer.net_filename
    return os.path.dirname(os.path.abspath(fn)) if fn else None


def parse_param_str(text, error):
    """python_param.param_str as a dict: a Python literal such as FCN's
    "{'voc_dir': '../data/pascal/VOC2011', 'split': 'train', 'mean': (104.0, 116.7, 122.7)}"."""
    text = (text or "").strip()
    if not text:
        return {}
    shown = repr(text) if len(text) <= 200 else repr(text[:200]) + f"... ({len(text)} characters)"
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        # Deeply nested or very long expressions exhaust the parser (MemoryError, RecursionError).
        raise error(f"param_str is not a Python literal dict ({type(e).__name__}: {str(e)[:200]}): {shown}") from None
    if not isinstance(value, dict):
        raise error(f"param_str must be a dict literal such as \"{{'split': 'train'}}\", got {shown}")
    return value


# ---- reading ----------------------------------------------------------------------------------


def open_image(path, mode="RGB"):
    """A fully decoded PIL image in `mode` (errors name the file)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode) if mode and im.mode != mode else im.copy()
    except FileNotFoundError:
        raise NetdefError("image file not found", file=path) from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise NetdefError(f"cannot read image (corrupt or not an image): {e}", file=path) from None


def open_label(path):
    """A label map as a PIL image of class indices (mode 'L'): a palette PNG's indices
    (PASCAL VOC's SegmentationClass), a grayscale PNG's values, or SBDD's .mat (needs scipy)."""
    from PIL import Image, UnidentifiedImageError

    if path.endswith(".mat"):
        try:
            import scipy.io
        except ImportError:
            raise NetdefError("reading SBDD .mat labels needs scipy (pip install scipy), or convert "
                              "them to index PNGs", file=path) from None
        try:
            mat = scipy.io.loadmat(path)
            seg = np.asarray(mat["GTcls"][0]["Segmentation"][0], dtype=np.uint8)
        except FileNotFoundError:
            raise NetdefError("label file not found", file=path) from None
        except Exception as e:
            raise NetdefError(f"cannot read SBDD label (.mat with GTcls.Segmentation): {e}",
                              file=path) from None
        return Image.fromarray(seg, mode="L")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L"):
                arr = np.asarray(im)  # palette indices / gray values are the classes
            elif im.mode in ("I", "I;16"):
                arr = np.asarray(im)
                if arr.max(initial=0) > 255:
                    raise NetdefError(f"label values up to {arr.max()} do not fit 0..255", file=path)
                arr = arr.astype(np.uint8)
            else:
                raise NetdefError(f"label image has mode {im.mode}; labels must be palette (P) or "
                                  "grayscale (L) PNGs whose values are class indices", file=path)
    except FileNotFoundError:
        raise NetdefError("label file not found", file=path) from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise NetdefError(f"cannot read label image (corrupt or not an image): {e}", file=path) from None
    return Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), mode="L")


def read_mean_file(path):
    """A binary BlobProto mean (Caffe's mean.binaryproto) as float32 (H, W, C)."""
    from .datum import read_binaryproto

    arr = read_binaryproto(path, error=_MeanFileError)
    shape = arr.shape
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise NetdefError(f"mean_file blob has shape {shape}; expected (1, C, H, W)", file=path)
    with np.errstate(over="ignore"):
        mean = np.ascontiguousarray(arr.transpose(1, 2, 0), dtype=np.float32)
    if not np.isfinite(mean).all():
        raise NetdefError("mean_file holds values that are not finite float32 numbers (inf, nan or "
                          "beyond 3.4e38)", file=path)
    return mean


class _MeanFileError(NetdefError):
    def __init__(self, message):
        super().__init__(f"mean_file: {message}")


# ---- the transformation -----------------------------------------------------------------------


class Transform:
    """Caffe's TransformationParameter for one layer (see the module docstring)."""

    def __init__(self, tp, phase, layer_error, base_dir=None, mean=None, crop_size=None,
                 mirror=None, allow_mean_file=True):
        self.train = phase == pb.TRAIN
        self.scale = float(tp.scale)
        self.mirror = bool(tp.mirror) if mirror is None else bool(mirror)
        self.crop = int(tp.crop_size) if crop_size is None else int(crop_size)
        if tp.force_color and tp.force_gray:
            raise layer_error("transform_param: force_color and force_gray are both set")
        self.force_color, self.force_gray = tp.force_color, tp.force_gray
        self.mean_value = None
        self.mean_image = None
        values = list(tp.mean_value) if mean is None else [float(v) for v in mean]
        if tp.HasField("mean_file") and values:
            raise layer_error("transform_param: give mean_file or mean_value, not both")
        if values:
            self.mean_value = np.asarray(values, dtype=np.float32)
        if tp.HasField("mean_file"):
            if not allow_mean_file:
                raise layer_error("transform_param.mean_file is not supported by this layer; "
                                  "use mean_value (one per channel)")
            self.mean_image = read_mean_file(resolve_path(tp.mean_file, base_dir))

    def color(self, is_color=True):
        if self.force_color:
            return True
        if self.force_gray:
            return False
        return is_color

    def check_channels(self, channels, layer_error):
        if self.mean_value is not None and len(self.mean_value) not in (1, channels):
            raise layer_error(f"transform_param has {len(self.mean_value)} mean_value(s) for "
                              f"{channels}-channel images; give 1 or {channels}")
        if self.mean_image is not None and self.mean_image.shape[2] != channels:
            raise layer_error(f"mean_file has {self.mean_image.shape[2]} channels, the images {channels}")

    def __call__(self, image, rng, label=None, pad_label=IGNORE_LABEL, source=None):
        """image float32 (H, W, C) -> float32 (C, h, w); label uint8 (H, W) -> (h, w), cropped
        and mirrored with the image. With a label (segmentation), an image smaller than the
        crop is first padded, with the mean (0 after subtraction) and label `pad_label`."""
        if self.mean_value is not None:
            image = image - self.mean_value
        h, w = image.shape[:2]
        c = self.crop
        mean_image = self.mean_image
        if c:
            if (h < c or w < c) and label is not None:
                ph, pw = max(c - h, 0), max(c - w, 0)
                image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
                label = np.pad(label, ((0, ph), (0, pw)), constant_values=pad_label)
                h, w = image.shape[:2]
            elif h < c or w < c:
                raise NetdefError(f"image of {h}x{w} is smaller than crop_size {c}", file=source)
            if self.train:
                y = int(rng.integers(0, h - c + 1))
                x = int(rng.integers(0, w - c + 1))
            else:
                y, x = (h - c) // 2, (w - c) // 2
            image = image[y:y + c, x:x + c]
            if label is not None:
                label = label[y:y + c, x:x + c]
            if mean_image is not None:
                mean_image = self._mean_window(mean_image, y, x, c, c, source)
        elif mean_image is not None:
            mean_image = self._mean_window(mean_image, 0, 0, h, w, source)
        if mean_image is not None:
            image = image - mean_image
        if self.mirror and self.train and rng.integers(0, 2):
            image = image[:, ::-1]
            if label is not None:
                label = label[:, ::-1]
        if self.scale != 1:
            image = image * np.float32(self.scale)
        out = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        return out if label is None else (out, np.ascontiguousarray(label))

    def _mean_window(self, mean, y, x, h, w, source):
        mh, mw = mean.shape[:2]
        if (not self.crop and (mh, mw) != (h, w)) or y + h > mh or x + w > mw:
            raise NetdefError(f"mean_file is {mh}x{mw}, the image (or crop) {h}x{w} at ({y}, {x}) "
                              "does not fit it", file=source)
        return mean[y:y + h, x:x + w]


def pad_batch(images, labels=None, pad_label=IGNORE_LABEL):
    """Stack (C, h, w) images of different sizes into (N, C, H, W) with H, W the largest,
    padding at the bottom and right with 0 (the mean) and the labels with `pad_label`."""
    H = max(im.shape[1] for im in images)
    W = max(im.shape[2] for im in images)
    data = np.zeros((len(images), images[0].shape[0], H, W), dtype=np.float32)
    for i, im in enumerate(images):
        data[i, :, :im.shape[1], :im.shape[2]] = im
    if labels is None:
        return data
    lab = np.full((len(labels), 1, H, W), pad_label, dtype=np.float32)
    for i, lb in enumerate(labels):
        lab[i, 0, :lb.shape[0], :lb.shape[1]] = lb
    return data, lab


def layer_error(layer):
    """An error factory for a layer: LayerSetupError naming the layer and its type."""
    def make(message):
        return LayerSetupError(f"{layer.type or type(layer).__name__}: {message}", layer=layer.name)
    return make


#: Fields Caffe moved from the data layers' own parameters into transform_param (old -> new name).
MOVED_TO_TRANSFORM = (("scale", "scale"), ("mean_file", "mean_file"), ("crop_size", "crop_size"),
                      ("mirror", "mirror"))


def refuse_moved_fields(err, param, param_name, moved=MOVED_TO_TRANSFORM):
    """The error (from `err`, a layer_error) for a field set in its deprecated place."""
    for old, new in moved:
        if param.HasField(old):
            raise err(f"{param_name}.{old} is deprecated in Caffe and not supported; use transform_param.{new}")
