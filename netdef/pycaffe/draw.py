"""A net's layer graph as Graphviz DOT (to_dot) or a picture (draw); `netdef draw` prints it.

Layers are boxes (coloured by kind, as Caffe's draw_net does), blobs are octagons, in-place
layers sit on their blob. DOT text is written directly; other formats go through Graphviz's
`dot` program when it is installed.

The second half is pycaffe's caffe.draw, on a NetParameter (`caffe_net`):
get_pydot_graph(caffe_net, rankdir, label_edges=True, phase=None, display_lrm=False) -> a
pydot.Dot with one node per layer and per blob and an edge per bottom and top (edges out of a
layer labelled with its batch size or num_output, as pycaffe's); draw_net(...) -> the picture's
bytes; draw_net_to_file(caffe_net, filename, ...) writes it, the format from the file's
extension. With `phase`, layers are kept by their include/exclude phase rules as pycaffe does
(a layer with both is an error). These need pydot (`pip install 'netdef[draw]'`) and, to render,
Graphviz's `dot`; without them a NetdefError says which is missing.
"""
import os
import shutil
import subprocess

from ..core import netdef_pb2 as pb
from ..errors import NetdefError

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
    from ..core import proto

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


# ---- pycaffe's caffe.draw --------------------------------------------------------------------
LAYER_STYLE_DEFAULT = {"shape": "record", "fillcolor": "#6495ED", "style": "filled"}
NEURON_LAYER_STYLE = {"shape": "record", "fillcolor": "#90EE90", "style": "filled"}
BLOB_STYLE = {"shape": "octagon", "fillcolor": "#E0E0E0", "style": "filled"}


class DrawError(NetdefError, ValueError):
    """A net that cannot be drawn (pycaffe raises ValueError), or pydot/Graphviz missing."""


def _pydot():
    try:
        import pydot
    except ImportError:
        raise DrawError("netdef.draw's pydot graphs need pydot: pip install 'netdef[draw]' "
                        "(and Graphviz's `dot` program to render them)") from None
    return pydot


def choose_color_by_layertype(layertype):
    """pycaffe's colours: convolutions red, pooling orange, inner products purple, others blue."""
    return _COLOURS.get(layertype, "#6495ED")


def get_pooling_types_dict():
    """{PoolMethod value: its name}."""
    return {v.number: v.name for v in pb.PoolingParameter.PoolMethod.DESCRIPTOR.values}


def get_edge_label(layer):
    """The label of the edges out of a layer: its batch size (Data) or num_output."""
    if layer.type == "Data":
        return f"Batch {layer.data_param.batch_size}"
    if layer.type in ("Convolution", "Deconvolution"):
        return str(layer.convolution_param.num_output)
    if layer.type == "InnerProduct":
        return str(layer.inner_product_param.num_output)
    return ""


def get_layer_lr_mult(layer):
    """The lr_mult of each learnable blob of a conv/deconv/inner-product layer (1 by default)."""
    if layer.type in ("Convolution", "Deconvolution"):
        n = 2 if layer.convolution_param.bias_term else 1
    elif layer.type == "InnerProduct":
        n = 2 if layer.inner_product_param.bias_term else 1
    else:
        return []
    return [layer.param[i].lr_mult if i < len(layer.param) else 1.0 for i in range(n)]


def _first(repeated, single, default):
    return repeated[0] if len(repeated) else (single or default)


def get_layer_label(layer, rankdir, display_lrm=False):
    """A layer's node label: name, (type), and kernel/stride/pad for convolutions and pooling;
    with display_lrm the lr_mult of its learnable blobs. Lines run down for LR/RL graphs and
    across for TB/BT ones, as pycaffe's."""
    sep = " " if rankdir in ("TB", "BT") else "\\n"
    bits = [layer.name]
    if layer.type in ("Convolution", "Deconvolution"):
        cp = layer.convolution_param
        bits += [f"({layer.type})", f"kernel size: {_first(cp.kernel_size, cp.kernel_h, 1)}",
                 f"stride: {_first(cp.stride, cp.stride_h, 1)}", f"pad: {_first(cp.pad, cp.pad_h, 0)}"]
    elif layer.type == "Pooling":
        pp = layer.pooling_param
        bits += [f"({get_pooling_types_dict()[pp.pool]} {layer.type})",
                 f"kernel size: {pp.kernel_size or pp.kernel_h}", f"stride: {pp.stride or pp.stride_h or 1}",
                 f"pad: {pp.pad or pp.pad_h}"]
    else:
        bits.append(f"({layer.type})")
    if display_lrm:
        lrm = get_layer_lr_mult(layer)
        if lrm:
            bits.append("lr mult: " + ", ".join(f"{v:g}" for v in lrm))
    return sep.join(bits)


def _included(layer, phase):
    if len(layer.include) and len(layer.exclude):
        raise DrawError(f"layer {layer.name} has both include and exclude specified.")
    ok = not len(layer.include) or any(r.phase == phase for r in layer.include if r.HasField("phase"))
    return ok and not any(r.HasField("phase") and r.phase == phase for r in layer.exclude)


def _as_net(caffe_net):
    if isinstance(caffe_net, pb.NetParameter):
        return caffe_net
    if isinstance(caffe_net, (str, os.PathLike)):
        from ..core import proto

        return proto.read_net_text(caffe_net)[0]
    raise DrawError(f"caffe_net must be a NetParameter (or a prototxt path), got {type(caffe_net).__name__}")


def get_pydot_graph(caffe_net, rankdir, label_edges=True, phase=None, display_lrm=False):
    """The pydot.Dot graph of a NetParameter: layer and blob nodes, bottom and top edges."""
    pydot = _pydot()
    net = _as_net(caffe_net)
    if rankdir not in ("LR", "TB", "BT", "RL"):
        raise DrawError(f"rankdir must be LR, TB, BT or RL, got {rankdir!r}")
    graph = pydot.Dot(_q(net.name or "Net"), graph_type="digraph", rankdir=rankdir)
    nodes, edges = {}, []
    for layer in net.layer:
        if phase is not None and not _included(layer, phase):
            continue
        node = f"layer:{layer.name}_{layer.type}"
        in_place = len(layer.bottom) == 1 and len(layer.top) == 1 and layer.bottom[0] == layer.top[0]
        style = dict(NEURON_LAYER_STYLE if in_place else LAYER_STYLE_DEFAULT)
        if not in_place:
            style["fillcolor"] = choose_color_by_layertype(layer.type)
        nodes[node] = pydot.Node(_q(node), label=_q(get_layer_label(layer, rankdir, display_lrm)),
                                 **{k: _q(v) for k, v in style.items()})
        for b in layer.bottom:
            nodes.setdefault("blob:" + b, pydot.Node(_q("blob:" + b), label=_q(b),
                                                     **{k: _q(v) for k, v in BLOB_STYLE.items()}))
            edges.append(("blob:" + b, node, ""))
        for t in layer.top:
            nodes.setdefault("blob:" + t, pydot.Node(_q("blob:" + t), label=_q(t),
                                                     **{k: _q(v) for k, v in BLOB_STYLE.items()}))
            edges.append((node, "blob:" + t, get_edge_label(layer) if label_edges else ""))
    for n in nodes.values():
        graph.add_node(n)
    for src, dst, label in edges:
        graph.add_edge(pydot.Edge(nodes[src], nodes[dst], label=_q(label)))
    return graph


def draw_net(caffe_net, rankdir, ext="png", phase=None, display_lrm=False):
    """The picture of a NetParameter as bytes in format `ext` (png, svg, pdf, dot...)."""
    graph = get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm)
    if ext in ("dot", "gv", "raw"):
        return graph.to_string().encode()
    if shutil.which("dot") is None:
        raise DrawError(f"rendering .{ext} needs Graphviz's `dot` program, which is not installed "
                        "(apt-get install graphviz); draw_net(..., ext='dot') gives the DOT text")
    try:
        return graph.create(format=ext)
    except Exception as e:
        raise DrawError(f"Graphviz could not render the net as {ext}: {e}") from e


def draw_net_to_file(caffe_net, filename, rankdir="LR", phase=None, display_lrm=False):
    """Write the picture of a NetParameter to `filename`, in the format its extension names."""
    ext = os.path.splitext(str(filename))[1].lstrip(".").lower()
    if not ext:
        raise DrawError(f"{filename}: give the file an extension naming the format (.png, .svg, .pdf, .dot)")
    data = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    with open(filename, "wb") as f:
        f.write(data)
