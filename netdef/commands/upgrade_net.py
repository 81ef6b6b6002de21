"""`netdef upgrade-net IN OUT`: a net in a legacy format (V0 or V1 layers, net-level inputs)
rewritten in today's format, as Caffe's upgrade_net_proto_text and upgrade_net_proto_binary.

IN is a prototxt or a binary caffemodel: told apart by its extension (.prototxt, .pt, .txt vs
.caffemodel, .binaryproto, .pb) and otherwise by its content (protobuf text is UTF-8 without
NUL bytes; --format overrides both). OUT is written in the same format, atomically; a
caffemodel keeps its weights. The upgrade is netdef.graph.upgrade_net, the one every loaded net
goes through, so OUT is what netdef would have built from IN.
"""
import os

from ..core import graph, proto
from ..core import netdef_pb2 as pb
from ..errors import ParseError

HELP = "rewrite a V0/V1 net (prototxt or caffemodel) in today's format"

_TEXT_EXT = {".prototxt", ".pt", ".txt", ".pbtxt"}
_BINARY_EXT = {".caffemodel", ".binaryproto", ".pb", ".bin"}

_STEPS = {"V0": "V0 layers (layers { layer { ... } })", "V1": "V1 layers (layers { type: ENUM })",
          "input": "net-level input / input_dim / input_shape"}


def configure(p):
    p.add_argument("input", help="net .prototxt or .caffemodel in a legacy format")
    p.add_argument("output", help="where to write the upgraded net (same format as the input)")
    p.add_argument("--format", choices=["auto", "text", "binary"], default="auto",
                   help="the input's format (default: from its extension, else its content)")


def is_binary(path):
    """Is `path` a binary protobuf? By extension, else by content."""
    ext = os.path.splitext(path)[1].lower()
    if ext in _TEXT_EXT:
        return False
    if ext in _BINARY_EXT:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError as e:
        raise ParseError(f"could not open file: {e.strerror}", file=path) from None
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        # A multi-byte character cut at the end of the sample is still text.
        return not (len(head) == 1 << 16 and e.start >= len(head) - 3)
    return False


def run(args):
    binary = is_binary(args.input) if args.format == "auto" else args.format == "binary"
    if binary:
        net = proto.read_binary(args.input, pb.NetParameter, "caffemodel (NetParameter)")
        if not net.layer and not net.layers:
            raise ParseError("no layers found: not a caffemodel (binary NetParameter)", file=args.input)
    else:
        net, _ = proto.read_text(args.input, pb.NetParameter)
    steps = graph.net_needs_upgrade(net)
    for step in steps:
        print(f"Upgrading {_STEPS[step]}: {args.input}")
    graph.upgrade_net(net, args.input)
    if not steps:
        print(f"File already in latest proto format: {args.input}")
    if binary:
        proto.write_binary(net, args.output)
        print(f"Wrote upgraded NetParameter binary proto to {args.output}")
    else:
        proto.write_text(net, args.output)
        print(f"Wrote upgraded NetParameter text proto to {args.output}")
    return 0
