"""A net's layer graph as Graphviz DOT (to_dot) or a picture (draw); `netdef draw` prints it.

Layers are boxes (coloured by kind, as Caffe's draw_net does), blobs are octagons, in-place
layers sit on their blob. DOT text is written directly; other formats go through Graphviz's
`dot` program when it is installed.
"""
import os
import shutil
import subprocess

from . import netdef_pb2 as pb
from .errors import NetdefError

_COLOURS = {"Convolution": "#FF5050", "Deconvolution": "#FF5050", "Pooling": "#FF9900",
            "InnerProduct": "#CC33FF"}


def _label(lp):
    bits = [lp.name, f"({lp.type})"]
    if lp.type in ("Convolution", "Deconvolution"):
        cp = lp.convolution_param
        k = list(cp.kernel_size) or [cp.kernel_h]
        s = list(cp.stride) or [cp.stride_h or 1]
        p = list(cp.pad) or [cp.pad_h]
        bits.append(f"k {k[0]} s {s[0]} p {p[0]}" + (f" d {cp.dilation[0]}" if cp.dilation else ""))
    elif lp.type == "Pooling":
        pp = lp.pooling_param
        bits.append(f"{pb.PoolingParameter.PoolMethod.Name(pp.pool)} k {pp.kernel_size or pp.kernel_h} "
                    f"s {pp.stride}")
    return "\\n".join(bits)


def _q(s):
    return '"' + s.replace('"', '\\"') + '"'


def to_dot(net, rankdir="LR"):
    lines = [f"digraph {_q(net.name or 'Net')} {{", f"  rankdir={rankdir};"]
    for lp in net.layer:
        in_place = list(lp.bottom) == list(lp.top) and lp.bottom
        colour = "#90EE90" if in_place else _COLOURS.get(lp.type, "#6495ED")
        lines.append(f"  {_q('layer:' + lp.name)} [shape=record, style=filled, fillcolor={_q(colour)}, "
                     f"label={_q(_label(lp))}];")
        for b in lp.bottom:
            lines.append(f"  {_q('blob:' + b)} -> {_q('layer:' + lp.name)};")
        if not in_place:
            for t in lp.top:
                lines.append(f"  {_q('blob:' + t)} [shape=octagon, style=filled, fillcolor=\"#E0E0E0\", "
                             f"label={_q(t)}];")
                lines.append(f"  {_q('layer:' + lp.name)} -> {_q('blob:' + t)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(net_file, output, phase=None, rankdir="LR"):
    from . import proto

    net, path = proto.read_net_text(net_file)
    if phase is not None:
        state = pb.NetState(phase=phase)
        net = proto.filter_net(net, state, path)
    dot = to_dot(net, rankdir)
    ext = os.path.splitext(output)[1].lower().lstrip(".")
    if ext in ("dot", "gv", "raw", ""):
        with open(output, "w") as f:
            f.write(dot)
        return output
    exe = shutil.which("dot")
    if exe is None:
        raise NetdefError(f"writing .{ext} needs Graphviz's `dot` program, which is not installed; "
                          "write a .dot file instead, or install graphviz")
    res = subprocess.run([exe, f"-T{ext}", "-o", output], input=dot, text=True, capture_output=True)
    if res.returncode != 0:
        raise NetdefError(f"dot failed: {res.stderr.strip()}", file=output)
    return output
