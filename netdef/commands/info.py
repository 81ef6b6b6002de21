"""`netdef info <net.prototxt>`: a table of every layer (type, bottoms, tops with their shapes,
param count, the precision of its products' operands, receptive field, stride and offset of its
first top), then the totals, the precision rule's summary and the inference fusion."""
from ..pycaffe import coord_map
from ..core.fusion import describe
from ..core.net import Net
from ._common import (add_file_argument, add_fuse_argument, add_phase_argument,
                      add_precision_argument, file_argument, format_table, phase)

HELP = ("print every layer of a net: type, bottoms, tops with shapes, params, receptive field, "
        "stride and offset")


def configure(p):
    add_file_argument(p, "net", "model", "net .prototxt")
    add_phase_argument(p, "test")
    add_fuse_argument(p)
    add_precision_argument(p, "show the net as --precision runs it (default: its NVCaffe type fields)")


def _geometry(maps, top):
    m = maps.get(top)
    if m is None:
        return ["", "", ""]
    fmt = lambda a, b: str(a) if a == b else f"{a}x{b}"
    return [fmt(m[0].rf, m[1].rf), fmt(m[0].jump, m[1].jump), fmt(m[0].offset, m[1].offset)]


def run(args):
    args.net = file_argument(args, "net", "model")
    net = Net(args.net, phase(args.phase), fuse=args.fuse, precision=args.precision)
    maps = coord_map.compute(net.param)
    rows = []
    for name, layer in net.layer_dict.items():
        tops = net.top_names[name]
        shapes = ", ".join(f"{t} {'x'.join(map(str, net.blobs[t].shape))}" for t in tops)
        params = sum(b.count for b in layer.blobs)
        rows.append([name, layer.type, ", ".join(net.bottom_names[name]), shapes, f"{params:,}",
                     str(layer.precision)] + _geometry(maps, tops[0] if tops else None))
    print(format_table(rows, ["layer", "type", "bottoms", "tops", "params", "precision", "rf", "stride",
                              "offset"]))
    total = sum(b.count for b in net.learnable_params)
    print(f"\n{len(net.layers)} layers, {total:,} learnable parameters, phase {args.phase.upper()}")
    print(net.precision.describe())
    print(describe(net.fused, net._layer_names))
    return 0
