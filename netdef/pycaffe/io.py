"""pycaffe's caffe.io: images in, blobs and datums out.

    from netdef import io
    t = io.Transformer({'data': net.blobs['data'].data.shape})
    t.set_transpose('data', (2, 0, 1))          # H x W x K -> K x H x W
    t.set_channel_swap('data', (2, 1, 0))       # RGB -> BGR
    t.set_raw_scale('data', 255)                # [0, 1] -> [0, 255]
    t.set_mean('data', np.array([104, 117, 123]))
    net.blobs['data'].data[...] = t.preprocess('data', io.load_image('cat.jpg'))

Contract, as pycaffe's:
  Transformer.preprocess(in_, x): x (H, W, K) float -> resize to the input's (H, W) when it
      differs, transpose, channel swap, * raw_scale, - mean, * input_scale; float32.
      deprocess undoes these in reverse order (except the resize) on a squeezed copy.
  set_mean takes a per-channel (C,) mean or a full (C, H, W) / (H, W) one of the input's size;
      anything else is an error (pycaffe's ValueError), as in pycaffe 1.0.
  load_image(file, color=True): float32 in [0, 1], (H, W, 3), or (H, W, 1) with color=False
      (gray with skimage's weights 0.2125 R + 0.7154 G + 0.0721 B, as pycaffe gets them).
  resize_image(im, (h, w), interp_order=1): (h, w, K) float32; order 0 nearest, 1 bilinear.
  oversample(images, (h, w)): 10 crops per image: 4 corners, centre, then their mirrors.
  blobproto_to_array / array_to_blobproto / arraylist_to_blobprotovector_str /
      blobprotovector_str_to_arraylist / array_to_datum / datum_to_array: numpy <-> messages.

Differences from pycaffe, all deliberate: resizing is netdef's own numpy code, not skimage's.
Both sample at pixel centres; at the border netdef repeats the edge pixel where skimage's
mode='constant' blends in zeros, so values always stay within the input's range. Orders above
1 (skimage's splines) are not offered. preprocess never writes into the caller's array
(pycaffe's scales a float32 input in place). blobproto_to_array returns float32 for `data` /
`diff` (the precision the message stores; pycaffe widens to float64) and float64 for
`double_data`; datum_to_array decodes an encoded datum (to BGR, as Caffe's readers do) instead
of failing. Errors are netdef.io.IOValueError, a NetdefError that is also a ValueError, so
that scripts catching pycaffe's ValueError/Exception keep working.
"""
import numpy as np

from ..core import netdef_pb2 as pb
from ..data import datum as _datum
from ..errors import NetdefError


class IOValueError(NetdefError, ValueError):
    """Bad input to netdef.io (pycaffe raises ValueError or Exception for these)."""


# ---- Transformer -------------------------------------------------------------------------
class Transformer:
    """Preprocessing from an image (H, W, K) to a net input (K, H, W), per named input.

    inputs: {input name: its blob shape (N, K, H, W)}."""

    def __init__(self, inputs):
        if not isinstance(inputs, dict) or not inputs:
            raise IOValueError("Transformer(inputs): inputs is a dict {input name: blob shape}")
        self.inputs = {k: tuple(int(d) for d in v) for k, v in inputs.items()}
        self.transpose, self.channel_swap = {}, {}
        self.raw_scale, self.mean, self.input_scale = {}, {}, {}

    def _check_input(self, in_):
        if in_ not in self.inputs:
            raise IOValueError(f"{in_} is not one of the net inputs: {sorted(self.inputs)}")

    def set_transpose(self, in_, order):
        """Axis order to apply to the image, e.g. (2, 0, 1) for H x W x K -> K x H x W."""
        self._check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise IOValueError(f"Transpose order needs to have the same number of dimensions as the "
                           f"input: {tuple(order)} for input '{in_}' of shape {self.inputs[in_]}")
        self.transpose[in_] = tuple(order)

    def set_channel_swap(self, in_, order):
        """Channel order after the transpose, e.g. (2, 1, 0) for RGB -> BGR."""
        self._check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise IOValueError(f"Channel swap needs to have the same number of dimensions as the input "
                           f"channels: {tuple(order)} for input '{in_}' with {self.inputs[in_][1]} channels")
        self.channel_swap[in_] = tuple(order)

    def set_raw_scale(self, in_, scale):
        """Factor applied before the mean is subtracted (255 for images loaded in [0, 1])."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """Mean to subtract: per channel (C,), or elementwise (C, H, W) / (H, W) of the input's size."""
        self._check_input(in_)
        mean = np.asarray(mean)
        shape = self.inputs[in_]
        if mean.ndim == 1:
            if mean.shape[0] != shape[1]:
                raise IOValueError(f"Mean channels incompatible with input: mean has {mean.shape[0]} "
                               f"values, input '{in_}' of shape {shape} has {shape[1]} channels")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            ms = mean.shape if mean.ndim != 2 else (1,) + mean.shape
            if len(ms) != 3:
                raise IOValueError(f"Mean shape invalid: {mean.shape} (give (C,), (H, W) or (C, H, W))")
            if ms != shape[1:]:
                raise IOValueError(f"Mean shape incompatible with input shape: mean {mean.shape}, input "
                               f"'{in_}' {shape[1:]}; resize the mean or take its per-channel "
                               f"value (mean.mean(1).mean(1))")
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Factor applied after the mean is subtracted."""
        self._check_input(in_)
        self.input_scale[in_] = scale

    def preprocess(self, in_, data):
        """The net input (K, H, W) float32 for image `data` (H, W, K)."""
        self._check_input(in_)
        x = np.array(data, dtype=np.float32)  # a copy: the caller's image stays as it was
        in_dims = self.inputs[in_][2:]
        if x.shape[:2] != in_dims:
            x = resize_image(x, in_dims)
        if in_ in self.transpose:
            x = x.transpose(self.transpose[in_])
        if in_ in self.channel_swap:
            x = x[list(self.channel_swap[in_]), :, :]
        if in_ in self.raw_scale:
            x = x * self.raw_scale[in_]
        if in_ in self.mean:
            x = x - self.mean[in_]
        if in_ in self.input_scale:
            x = x * self.input_scale[in_]
        return x.astype(np.float32, copy=False)

    def deprocess(self, in_, data):
        """The image (H, W, K) for a net input (K, H, W): preprocess's steps undone in reverse."""
        self._check_input(in_)
        x = np.array(data).squeeze()
        if in_ in self.input_scale:
            x = x / self.input_scale[in_]
        if in_ in self.mean:
            x = x + self.mean[in_]
        if in_ in self.raw_scale:
            x = x / self.raw_scale[in_]
        if in_ in self.channel_swap:
            x = x[list(np.argsort(self.channel_swap[in_])), :, :]
        if in_ in self.transpose:
            x = x.transpose(np.argsort(self.transpose[in_]))
        return x


# ---- images ------------------------------------------------------------------------------
# skimage's rgb2gray weights (ITU-R BT.709), which pycaffe's load_image(color=False) applies.
_GRAY = np.array([0.2125, 0.7154, 0.0721], dtype=np.float64)


def load_image(filename, color=True):
    """An image file as float32 in [0, 1]: (H, W, 3) RGB, or (H, W, 1) gray with color=False."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(filename) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                img = np.asarray(im, dtype=np.float64) / 65535.0
            elif mode == "I":
                img = np.asarray(im, dtype=np.float64)
                img = img / (65535.0 if img.max(initial=0) <= 65535 else 2147483647.0)
            elif mode == "F":
                img = np.asarray(im, dtype=np.float64)
            elif mode == "1":
                img = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
            elif mode in ("L", "RGB"):
                img = np.asarray(im, dtype=np.float64) / 255.0
            elif mode == "LA":
                img = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
            else:  # P, RGBA, CMYK, YCbCr...: the colour channels (alpha dropped, as pycaffe does)
                img = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    except FileNotFoundError:
        raise IOValueError(f"{filename}: no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise IOValueError(f"{filename}: cannot read the image: {e}") from e
    if img.ndim == 3 and not color:
        img = img[:, :, :3] @ _GRAY
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    return img.astype(np.float32)


def _sample_positions(n_in, n_out):
    """Source coordinates of the output pixel centres (pixel centres aligned, as skimage's)."""
    return (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5


def resize_image(im, new_dims, interp_order=1):
    """`im` (H, W, K) resized to new_dims (h, w): (h, w, K) float32. interp_order 0 is nearest,
    1 bilinear; values stay within the range of `im`."""
    im = np.asarray(im)
    if im.ndim != 3:
        raise IOValueError(f"resize_image: the image must be (H, W, K), got shape {im.shape}")
    if len(new_dims) != 2 or any(int(d) <= 0 for d in new_dims):
        raise IOValueError(f"resize_image: new_dims must be two positive sizes (h, w), got {tuple(new_dims)}")
    if interp_order not in (0, 1):
        raise IOValueError(f"resize_image: interp_order {interp_order} is not supported (0 nearest, 1 bilinear)")
    h, w = int(new_dims[0]), int(new_dims[1])
    H, W = im.shape[:2]
    if H == 0 or W == 0:
        raise IOValueError(f"resize_image: the image is empty, shape {im.shape}")
    src = im.astype(np.float64, copy=False)
    if interp_order == 0:
        ys = np.clip(np.floor((np.arange(h) + 0.5) * H / h), 0, H - 1).astype(np.intp)
        xs = np.clip(np.floor((np.arange(w) + 0.5) * W / w), 0, W - 1).astype(np.intp)
        return src[ys][:, xs].astype(np.float32)
    ys = np.clip(_sample_positions(H, h), 0, H - 1)
    xs = np.clip(_sample_positions(W, w), 0, W - 1)
    y0 = np.floor(ys).astype(np.intp)
    x0 = np.floor(xs).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, H - 1), np.minimum(x0 + 1, W - 1)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    out = top * (1 - fy) + bottom * fy
    # Rounding may step a hair outside the input's range; keep it inside.
    return np.clip(out, src.min(), src.max()).astype(np.float32)


def oversample(images, crop_dims):
    """10 crops of crop_dims (h, w) per image (H, W, K): the 4 corners (top-left, top-right,
    bottom-left, bottom-right) and the centre, then the same 5 mirrored left-right.
    Returns (10 N, h, w, K) float32."""
    images = list(images)
    if not images:
        raise IOValueError("oversample: no images")
    shape = np.asarray(images[0]).shape
    ch, cw = int(crop_dims[0]), int(crop_dims[1])
    for im in images:
        s = np.asarray(im).shape
        if len(s) != 3 or s != shape:
            raise IOValueError(f"oversample: images must all be (H, W, K) of one shape, got {s} and {shape}")
    H, W = shape[:2]
    if not (0 < ch <= H and 0 < cw <= W):
        raise IOValueError(f"oversample: crop {(ch, cw)} does not fit the image size {(H, W)}")
    corners = [(i, j) for i in (0, H - ch) for j in (0, W - cw)]
    corners.append((int(np.floor(H / 2.0 - ch / 2.0)), int(np.floor(W / 2.0 - cw / 2.0))))
    crops = np.empty((10 * len(images), ch, cw, shape[2]), dtype=np.float32)
    ix = 0
    for im in images:
        im = np.asarray(im)
        for i, j in corners:
            crops[ix] = im[i:i + ch, j:j + cw, :]
            crops[ix + 5] = crops[ix, :, ::-1, :]
            ix += 1
        ix += 5
    return crops


# ---- BlobProto / Datum -------------------------------------------------------------------
# The codecs are netdef.data.datum's, shared with the Data layer and the dataset commands.
def blobproto_to_array(blob, return_diff=False):
    """The data (or with return_diff the diff) of a BlobProto as an array of its shape
    (the legacy num/channels/height/width when set)."""
    return _datum.blobproto_to_array(blob, return_diff, "BlobProto", IOValueError)


def array_to_blobproto(arr, diff=None):
    """A BlobProto with `arr` as its data (float) and shape; `diff`, of the same shape, as its diff."""
    return _datum.array_to_blobproto(arr, diff, error=IOValueError)


def arraylist_to_blobprotovector_str(arraylist):
    """The serialized BlobProtoVector of a list of arrays."""
    vec = pb.BlobProtoVector()
    vec.blobs.extend(array_to_blobproto(a) for a in arraylist)
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(str_):
    """The arrays of a serialized BlobProtoVector."""
    vec = pb.BlobProtoVector()
    try:
        vec.ParseFromString(bytes(str_))
    except Exception as e:
        raise IOValueError(f"not a serialized BlobProtoVector: {e}") from e
    return [blobproto_to_array(b) for b in vec.blobs]


def array_to_datum(arr, label=None):
    """A Datum of a (C, H, W) array: uint8 goes to `data` bytes, any other type to `float_data`."""
    return _datum.array_to_datum(arr, label, IOValueError)


def datum_to_array(datum):
    """The (C, H, W) array of a Datum: uint8 from `data`, float from `float_data`; an encoded
    datum (a JPEG/PNG in `data`) is decoded, colour as BGR."""
    return _datum.datum_to_array(datum, where="Datum", error=IOValueError, float_dtype=np.float64)
