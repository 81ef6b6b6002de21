"""Caffe's record formats, in one place: Datum (one image or feature vector and its label, the
value of every LMDB / LevelDB record) and BlobProto (an array; a `.binaryproto` file such as
compute_image_mean's mean.binaryproto is one serialized BlobProto).

    Datum     channels, height, width, label, and either
                data        C*H*W uint8 bytes, channel-major (C, H, W), colour in BGR order
                float_data  C*H*W floats (features, as extract_features writes them)
              or, with encoded: true, data holds a whole image file (PNG, JPEG, ...) and the
              size fields are not needed (Caffe's convert_imageset leaves them unset).
    BlobProto shape.dim (or the legacy num/channels/height/width) and data (float) or
              double_data (double); diff / double_diff alike.

The Data layer, `netdef compute-image-mean`, `netdef extract-features`, the mean_file of every
transform_param and pycaffe's caffe.io functions (netdef.io) all read and write through these
functions. Every error is `error` (NetdefError unless the caller passes its own subclass), and
names `where` (a file, or "file, record KEY").
"""
import io as _pyio

import numpy as np

from ..core import netdef_pb2 as pb
from ..core import proto
from ..errors import NetdefError

#: Image formats convert-imageset's --encode_type accepts, and the PIL writer of each.
ENCODE_TYPES = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "ppm": "PPM",
                "pgm": "PPM", "tif": "TIFF", "tiff": "TIFF", "webp": "WEBP"}


def _where(where):
    return f"{where}: " if where else ""


# ---- Datum --------------------------------------------------------------------------------------


def parse_datum(raw, where="", error=NetdefError):
    """A Datum from its serialized bytes (an LMDB value)."""
    datum = pb.Datum()
    try:
        datum.ParseFromString(bytes(raw))
    except Exception as e:  # DecodeError, or plain errors from upb for some malformed inputs
        raise error(f"{_where(where)}not a Datum record (truncated or corrupt: {e})") from None
    return datum


def decode_image_bytes(data, color=None, where="", error=NetdefError):
    """An image file's bytes as uint8 (C, H, W): BGR, or one channel. color None keeps what the
    file holds (gray stays gray, anything else becomes BGR: an alpha channel is dropped),
    True forces BGR, False forces gray."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            # An image over PIL's MAX_IMAGE_PIXELS (89 M) is refused before it is allocated:
            # a record declaring one is corrupt far more often than it is real.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(_pyio.BytesIO(bytes(data)))
        with im:
            im.load()
            gray = im.mode in ("1", "L", "LA", "I", "I;16", "F") if color is None else not color
            a = np.asarray(im.convert("L" if gray else "RGB"))
    except Exception as e:  # PIL raises many types for corrupt data (OSError, ValueError, SyntaxError...)
        raise error(f"{_where(where)}cannot decode the encoded image ({type(e).__name__}: {e})") from None
    if a.ndim == 2:
        return np.ascontiguousarray(a[np.newaxis])
    return np.ascontiguousarray(a[:, :, ::-1].transpose(2, 0, 1))


def datum_to_array(datum, color=None, where="", error=NetdefError, float_dtype=np.float32):
    """The (C, H, W) array of a Datum: uint8 from `data`, `float_dtype` from `float_data`, and
    an encoded datum decoded (see decode_image_bytes for `color`)."""
    if datum.encoded:
        return decode_image_bytes(datum.data, color, where, error)
    shape = (int(datum.channels), int(datum.height), int(datum.width))
    if any(d <= 0 for d in shape):
        raise error(f"{_where(where)}Datum has size {shape[0]}x{shape[1]}x{shape[2]} (CxHxW); "
                    "a raw Datum needs channels, height and width > 0")
    count = shape[0] * shape[1] * shape[2]
    if len(datum.data):
        if len(datum.data) != count:
            raise error(f"{_where(where)}Datum of {shape[0]}x{shape[1]}x{shape[2]} (CxHxW) holds "
                        f"{count} values but data has {len(datum.data)} bytes")
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    if len(datum.float_data) != count:
        raise error(f"{_where(where)}Datum of {shape[0]}x{shape[1]}x{shape[2]} (CxHxW) holds "
                    f"{count} values but float_data has {len(datum.float_data)}")
    return np.array(datum.float_data, dtype=float_dtype).reshape(shape)


def array_to_datum(arr, label=None, error=NetdefError):
    """A Datum of a (C, H, W) array: uint8 goes to `data` bytes, any other type to `float_data`."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise error(f"Incorrect array shape: a Datum holds a (C, H, W) array, got {arr.shape}")
    datum = pb.Datum()
    datum.channels, datum.height, datum.width = (int(d) for d in arr.shape)
    if arr.dtype == np.uint8:
        datum.data = np.ascontiguousarray(arr).tobytes()
    else:
        datum.float_data.extend(np.asarray(arr, dtype=np.float32).ravel().tolist())
    if label is not None:
        datum.label = int(label)
    return datum


def encode_image(arr, encode_type, error=NetdefError):
    """The bytes of an image file (`encode_type`: png, jpg, ...) of a uint8 (C, H, W) BGR or
    one-channel array."""
    fmt = ENCODE_TYPES.get(str(encode_type).lower().lstrip("."))
    if fmt is None:
        raise error(f"unknown encode_type '{encode_type}'; one of {', '.join(sorted(ENCODE_TYPES))}")
    from PIL import Image

    arr = np.asarray(arr, dtype=np.uint8)
    img = Image.fromarray(arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr[::-1].transpose(1, 2, 0)))
    buf = _pyio.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def encoded_datum(data, label=None):
    """A Datum holding an image file's bytes (encoded: true), as Caffe's convert_imageset
    writes it with --encoded (no size fields)."""
    datum = pb.Datum()
    datum.data = bytes(data)
    datum.encoded = True
    if label is not None:
        datum.label = int(label)
    return datum


# ---- BlobProto and .binaryproto -----------------------------------------------------------------


def blobproto_to_array(bp, return_diff=False, where="", error=NetdefError):
    """The data (or the diff) of a BlobProto as an array of its shape (`shape`, else the legacy
    num/channels/height/width): float32 from data/diff, float64 from double_data/double_diff.
    A message with neither shape nor values gives an empty 1-D array."""
    try:
        shape, _ = proto.proto_shape(bp, _where(where))
    except NetdefError as e:
        raise error(str(e)) from None
    if any(d < 0 for d in shape):
        raise error(f"{_where(where)}BlobProto has a negative dimension in shape {shape}")
    if return_diff:
        values = (np.array(bp.double_diff, dtype=np.float64) if len(bp.double_diff)
                  else np.array(bp.diff, dtype=np.float32))
    else:
        values = (np.array(bp.double_data, dtype=np.float64) if len(bp.double_data)
                  else np.array(bp.data, dtype=np.float32))
    if not shape and not values.size:
        return values
    count = 1
    for d in shape:
        count *= d
    if values.size != count:
        what = "diff" if return_diff else "data"
        raise error(f"{_where(where)}BlobProto of shape {shape} holds {count} values but its "
                    f"{what} has {values.size}")
    return values.reshape(shape)


def array_to_blobproto(arr, diff=None, legacy=False, error=NetdefError):
    """A BlobProto holding `arr` as float32 data (and `diff`, of the same shape, as its diff).
    legacy=True writes num/channels/height/width instead of shape (a 4-D or smaller array,
    padded on the left with 1s), as Caffe's compute_image_mean does, for old readers."""
    arr = np.asarray(arr, dtype=np.float32)
    if diff is not None:
        diff = np.asarray(diff)
        if diff.shape != arr.shape:
            raise error(f"array_to_blobproto: diff shape {diff.shape} differs from data shape {arr.shape}")
        diff = diff.astype(np.float32)
    bp = proto.blob_to_proto(arr, diff=diff)
    if legacy:
        if arr.ndim > 4:
            raise error(f"a legacy BlobProto holds at most 4 axes, got shape {arr.shape}")
        bp.ClearField("shape")
        bp.num, bp.channels, bp.height, bp.width = (1,) * (4 - arr.ndim) + tuple(int(d) for d in arr.shape)
    return bp


def read_binaryproto(path, error=NetdefError):
    """The array of a .binaryproto file (one serialized BlobProto), float32 (float64 when the
    file holds double_data), in the blob's own shape."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise error(f"{path}: cannot read the binaryproto: {e.strerror}") from None
    if not raw:
        raise error(f"{path}: empty file, expected a binary BlobProto")
    bp = pb.BlobProto()
    try:
        bp.ParseFromString(raw)
    except Exception as e:
        raise error(f"{path}: not a binary BlobProto (truncated or corrupt: {e})") from None
    arr = blobproto_to_array(bp, where=path, error=error)
    if arr.size == 0:
        raise error(f"{path}: the BlobProto holds no values")
    return arr


def write_binaryproto(path, arr, legacy=True):
    """Write `arr` as a .binaryproto (atomically: a temporary file renamed)."""
    proto.write_binary(array_to_blobproto(arr, legacy=legacy), path)
