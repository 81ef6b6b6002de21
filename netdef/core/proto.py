"""Reading and writing Caffe's files: prototxt text, binary .caffemodel / .binaryproto /
.solverstate, BlobProto <-> arrays, and the line of a layer in a prototxt (for errors).
Passes over the NetParameter once read (V1 upgrade, NetState filtering, Split insertion) are
in netdef.graph; a file read here is upgraded with graph.upgrade_net before it is returned.

Data flows one way: text or bytes → NetParameter (the schema in protos/netdef.proto, with
Caffe's field numbers) → Net. Every failure here is a ParseError naming the file and, for
text, the line and column.
"""
import os

from google.protobuf import descriptor as _pb_descriptor
from google.protobuf import message as _pb_message
from google.protobuf import text_format

from . import netdef_pb2 as pb
from . import tempfiles
from ..errors import NetdefError, ParseError
from ..errors import find_layer_line  # noqa: F401  (re-exported: proto.find_layer_line)
from .graph import filter_net, upgrade_net  # noqa: F401  (filter_net: re-exported for draw.py)

def _is_text(source):
    return "{" in source or "\n" in source or source.strip() == ""


def parse_text(text, message, filename="<string>"):
    """Parse protobuf text into `message` (cleared first); errors carry file:line:col."""
    message.Clear()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        line, col = e.GetLine(), e.GetColumn()
        msg = str(e)
        # text_format prefixes "line:col : "; we report the position ourselves.
        if line is not None and msg.startswith(f"{line}:{col} : "):
            msg = msg[len(f"{line}:{col} : "):]
        raise ParseError(_shorten(msg, text, line, col).replace('"netdef.', '"'),
                         file=filename, line=line, column=col) from None
    return message


def _shorten(msg, text, line, col, width=60):
    """An error message of at most a few hundred characters: text_format quotes the whole
    offending line, which may be megabytes long; keep `width` characters around the column."""
    if line is not None and col is not None:
        lines = text.split("\n")
        src = lines[line - 1] if 0 < line <= len(lines) else None
        if src is not None and len(src) > 2 * width and msg.startswith(f"'{src}'"):
            lo = max(col - 1 - width, 0)
            excerpt = ("..." if lo else "") + src[lo:col - 1 + width] + ("..." if col - 1 + width < len(src) else "")
            msg = f"'{excerpt}'" + msg[len(src) + 2:]
    return msg if len(msg) <= 500 else msg[:250] + " ... " + msg[-200:]


def read_text(source, message_type):
    """Read a prototxt given as a path or as text; returns (message, filename or None)."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and not _is_text(source)):
        path = os.fspath(source)
        try:
            with open(path, "r", encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ParseError(f"could not open file: {e.strerror}", file=path) from None
        except ValueError as e:  # a NUL character in the path
            raise ParseError(f"could not open file: {e}", file=repr(path)) from None
        except UnicodeDecodeError:
            raise ParseError("not a text file (is it a binary .caffemodel?)", file=path) from None
        return parse_text(text, message_type(), path), path
    if isinstance(source, str):
        return parse_text(source, message_type()), None
    raise TypeError(f"expected a path or prototxt text, got {type(source).__name__}")


def write_text(message, path):
    atomic_write(path, text_format.MessageToString(message).encode("utf-8"))


def read_net_text(source):
    """NetParameter from a .prototxt path or text, upgraded to the current format."""
    net, path = read_text(source, pb.NetParameter)
    return upgrade_net(net, path), path


_MAX_MESSAGE_BYTES = 2**31 - 1


def read_binary(path, message_type, what):
    """Parse a binary protobuf file (caffemodel, solverstate) with clear errors."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > _MAX_MESSAGE_BYTES:  # not read into memory: no protobuf file is this large
                raise ParseError(f"{size / 2**30:.1f} GiB is more than a binary {what} can hold "
                                 "(protobuf messages are limited to 2 GiB)", file=path)
            data = f.read()
    except OSError as e:
        raise ParseError(f"could not open {what}: {e.strerror}", file=path) from None
    except ValueError as e:  # a NUL character in the path
        raise ParseError(f"could not open {what}: {e}", file=repr(path)) from None
    if not data:
        raise ParseError(f"empty file, expected a binary {what}", file=path)
    msg = message_type()
    try:
        msg.ParseFromString(data)
    except _pb_message.DecodeError as e:
        raise ParseError(f"not a valid binary {what} (truncated or corrupt: {e})", file=path) from None
    except Exception as e:  # upb raises plain errors for some malformed inputs
        raise ParseError(f"not a valid binary {what}: {e}", file=path) from None
    bad = _first_bad_string(msg)
    if bad:
        raise ParseError(f"not a valid binary {what}: string field {bad} is not UTF-8 (corrupt file?)",
                         file=path)
    return msg


def _first_bad_string(msg, prefix=""):
    """The path of the first string field that is not valid UTF-8, or None. The binary parser
    accepts any bytes in a proto2 string and Python then returns them as `bytes`, which fail
    far from the file (UnicodeDecodeError on assignment, TypeError in formatting)."""
    FD = _pb_descriptor.FieldDescriptor
    for field, value in msg.ListFields():
        if field.type == FD.TYPE_STRING:
            values = value if field.is_repeated else (value,)
            if any(isinstance(v, bytes) for v in values):
                return prefix + field.name
        elif field.type == FD.TYPE_MESSAGE:
            items = value if field.is_repeated else (value,)
            for k, item in enumerate(items):
                bad = _first_bad_string(item, f"{prefix}{field.name}{f'[{k}]' if field.is_repeated else ''}.")
                if bad:
                    return bad
    return None


def read_caffemodel(path):
    """NetParameter (with blobs) from a .caffemodel, legacy V1 layers upgraded."""
    net = read_binary(path, pb.NetParameter, "caffemodel (NetParameter)")
    if not net.layer and not net.layers:
        raise ParseError("no layers found: not a caffemodel (binary NetParameter)", file=os.fspath(path))
    return upgrade_net(net, os.fspath(path))


def atomic_write(path, data):
    """Write bytes to `path` through a temporary file and a rename, so that a crash or a full
    disk never leaves a partial file under the final name."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfiles.mkstemp(directory, os.path.basename(path) + ".", ".tmp")
    except OSError as e:
        raise NetdefError(f"cannot write: {e.strerror}", file=path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # also KeyboardInterrupt: no temporary file is left behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise NetdefError(f"cannot write: {e.strerror}", file=path) from None
        raise


def write_binary(message, path):
    try:
        data = message.SerializeToString()
    except Exception as e:  # over 2 GiB the wire format cannot hold it
        raise NetdefError(f"cannot serialize: {e}", file=os.fspath(path)) from None
    atomic_write(path, data)


# ---------------------------------------------------------------------------------------------
# BlobProto <-> arrays


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def blob_to_proto(array, bp=None, diff=None):
    """BlobProto holding `array` (float32 → `data`, float64 → `double_data`), with `shape`.

    The packed payload is encoded from the array's bytes and parsed, which is far faster than
    filling a repeated field element by element."""
    import numpy as np

    bp = bp if bp is not None else pb.BlobProto()
    a = np.ascontiguousarray(array)
    bp.shape.dim.extend(int(d) for d in a.shape)
    double = a.dtype == np.float64
    chunks = []
    for field_no, values in ((8 if double else 5, a), (9 if double else 6, diff)):
        if values is None:
            continue
        raw = np.ascontiguousarray(values, dtype="<f8" if double else "<f4").tobytes()
        chunks.append(_varint((field_no << 3) | 2) + _varint(len(raw)) + raw)
    bp.MergeFromString(b"".join(chunks))
    return bp


#: Most axes a stored blob may have (as Blob allows; Caffe's kMaxBlobAxes).
MAX_AXES = 32


def proto_shape(bp, where=""):
    """(shape, is_legacy) of a BlobProto: `shape` if present, else legacy num/channels/height/width."""
    if bp.HasField("shape"):
        if len(bp.shape.dim) > MAX_AXES:
            raise ParseError(f"{where}blob shape has {len(bp.shape.dim)} axes; at most {MAX_AXES} are supported")
        return tuple(int(d) for d in bp.shape.dim), False
    if any(bp.HasField(f) for f in ("num", "channels", "height", "width")):
        return (bp.num, bp.channels, bp.height, bp.width), True
    return (), False


def proto_to_array(bp, dtype, where=""):
    """The data of a BlobProto as a numpy array of its own shape, checked for consistency."""
    import numpy as np

    shape, _ = proto_shape(bp, where)
    if any(d < 0 for d in shape):
        raise ParseError(f"{where}blob has a negative dimension in shape {shape}")
    count = 1
    for d in shape:
        count *= d
    if len(bp.double_data):
        values = np.array(bp.double_data, dtype=np.float64)
    else:
        values = np.array(bp.data, dtype=np.float32)
    if values.size != count:
        raise ParseError(f"{where}blob declares shape {shape} ({count} values) but holds {values.size} values")
    return values.astype(dtype, copy=False).reshape(shape)


def legacy_shape_matches(net_shape, proto_shape_4d):
    """Caffe accepts a legacy 4-D blob for a net blob of <= 4 axes padded on the left with 1s."""
    if len(net_shape) > 4:
        return False
    return (1,) * (4 - len(net_shape)) + tuple(net_shape) == tuple(proto_shape_4d)
