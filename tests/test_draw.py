import shutil


from netdef.cli import main

NET = """
name: "g"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }
layer { name: "relu" type: "ReLU" bottom: "fc" top: "fc" }
layer { name: "train_only" type: "ReLU" bottom: "fc" top: "t" include { phase: TRAIN } }
"""


def test_draw_dot(tmp_path):
    p = tmp_path / "n.prototxt"
    p.write_text(NET)
    out = tmp_path / "n.dot"
    assert main(["draw", str(p), str(out), "--phase", "test"]) == 0
    dot = out.read_text()
    assert dot.startswith('digraph "g"') and '"blob:data" -> "layer:fc"' in dot
    assert '"layer:relu"' in dot and "#90EE90" in dot  # in-place layers are green
    assert "train_only" not in dot


def test_draw_svg_needs_graphviz(tmp_path, capsys):
    p = tmp_path / "n.prototxt"
    p.write_text(NET)
    rc = main(["draw", str(p), str(tmp_path / "n.svg")])
    if shutil.which("dot"):
        assert rc == 0 and (tmp_path / "n.svg").read_text().lstrip().startswith("<")
    else:
        assert rc == 1 and "Graphviz" in capsys.readouterr().err


# ---- pycaffe's caffe.draw (pydot) ---------------------------------------------------------------
import pytest  # noqa: E402

from netdef import NetdefError, draw, proto  # noqa: E402
from netdef import netdef_pb2 as pb  # noqa: E402

PYCAFFE_NET = """
name: "g"
layer { name: "data" type: "Data" top: "data" top: "label" data_param { batch_size: 8 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        param { lr_mult: 1 } param { lr_mult: 2 } convolution_param { num_output: 5 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "pool" bottom: "label" top: "loss" include { phase: TRAIN } }
"""


def _graph(**kw):
    pytest.importorskip("pydot")
    net, _ = proto.read_net_text(PYCAFFE_NET)
    return net, draw.get_pydot_graph(net, kw.pop("rankdir", "LR"), **kw)


def _nodes(g):
    return {n.get_name().strip('"'): n.get("label").strip('"') for n in g.get_nodes()}


def _edges(g):
    return [(e.get_source().strip('"'), e.get_destination().strip('"'), e.get("label").strip('"'))
            for e in g.get_edges()]


def test_pydot_graph_nodes_edges_and_labels():
    net, g = _graph(display_lrm=True)
    nodes = _nodes(g)
    assert set(nodes) == {"layer:data_Data", "layer:conv_Convolution", "layer:relu_ReLU", "layer:pool_Pooling",
                          "layer:loss_SoftmaxWithLoss", "blob:data", "blob:label", "blob:conv", "blob:pool",
                          "blob:loss"}
    assert nodes["layer:conv_Convolution"] == r"conv\n(Convolution)\nkernel size: 3\nstride: 2\npad: 1\nlr mult: 1, 2"
    assert nodes["layer:pool_Pooling"] == r"pool\n(MAX Pooling)\nkernel size: 2\nstride: 2\npad: 0"
    edges = _edges(g)
    assert ("layer:data_Data", "blob:data", "Batch 8") in edges
    assert ("layer:conv_Convolution", "blob:conv", "5") in edges
    assert ("blob:conv", "layer:relu_ReLU", "") in edges and ("layer:relu_ReLU", "blob:conv", "") in edges
    assert len(edges) == sum(len(l.bottom) + len(l.top) for l in net.layer)
    fill = {n.get_name().strip('"'): n.get("fillcolor").strip('"') for n in g.get_nodes()}
    assert fill["layer:relu_ReLU"] == "#90EE90" and fill["layer:conv_Convolution"] == "#FF5050"
    assert fill["layer:pool_Pooling"] == "#FF9900" and fill["blob:conv"] == "#E0E0E0"


def test_pydot_graph_phase_rankdir_and_unlabelled_edges():
    _, g = _graph(phase=pb.TEST, rankdir="TB", label_edges=False)
    nodes = _nodes(g)
    assert "layer:loss_SoftmaxWithLoss" not in nodes and "blob:loss" not in nodes
    assert nodes["layer:relu_ReLU"] == "relu (ReLU)"  # TB graphs label across
    assert all(label == "" for _, _, label in _edges(g))
    net, _ = proto.read_net_text(PYCAFFE_NET)
    net.layer[2].exclude.add(phase=pb.TRAIN)
    net.layer[2].include.add(phase=pb.TEST)
    with pytest.raises(ValueError, match="relu has both include and exclude"):
        draw.get_pydot_graph(net, "LR", phase=pb.TEST)


def test_draw_net_renders_or_says_what_is_missing(tmp_path, monkeypatch):
    pytest.importorskip("pydot")
    net, _ = proto.read_net_text(PYCAFFE_NET)
    assert draw.draw_net(net, "LR", ext="dot").startswith(b'digraph "g"')
    if shutil.which("dot"):
        svg = draw.draw_net(net, "LR", ext="svg")
        assert b"<svg" in svg and b"conv" in svg
        draw.draw_net_to_file(net, str(tmp_path / "n.png"), phase=pb.TRAIN)
        assert (tmp_path / "n.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(NetdefError, match="Graphviz's `dot`"):
        draw.draw_net(net, "LR", ext="png")


def test_without_pydot_the_error_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pydot", None)
    net, _ = proto.read_net_text(PYCAFFE_NET)
    with pytest.raises(NetdefError, match=r"pip install 'netdef\[draw\]'"):
        draw.get_pydot_graph(net, "LR")
