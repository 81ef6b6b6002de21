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
