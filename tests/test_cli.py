import subprocess
import sys

import pytest

from netdef.cli import main

NET = """
name: "mini"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 8 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "relu" type: "ReLU" bottom: "fc" top: "fc" }
"""


def test_info_prints_layers_shapes_and_params(tmp_path, capsys):
    p = tmp_path / "net.prototxt"
    p.write_text(NET)
    assert main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["layer", "type", "bottoms", "tops", "params", "precision", "rf", "stride",
                                "offset"]
    fc = [l for l in lines if l.startswith("fc ")][0]
    assert "InnerProduct" in fc and "fc 2x3" in fc and fc.split()[-2:] == ["27", "fp32"]
    assert "27 learnable parameters" in out and "every layer in float32" in out
    # --precision: the GEMM layer's operands in bf16, the ReLU in float32, and the rule's summary
    assert main(["info", str(p), "--precision", "bf16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {l.split()[0]: l.split() for l in lines[1:lines.index("")]}
    assert rows["fc"][-1] == "bf16" and rows["relu"][-1] == "fp32"
    assert any("1 GEMM layer with bf16 operands, float32 accumulation" in l for l in lines)


def test_bad_input_is_one_line_without_traceback(tmp_path):
    p = tmp_path / "bad.prototxt"
    p.write_text('layer { name: "x" type: "Nope" }')
    res = subprocess.run([sys.executable, "-m", "netdef.cli", "info", str(p)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.count("\n") <= 2 and "Nope" in res.stderr and str(p) in res.stderr
    res = subprocess.run([sys.executable, "-m", "netdef.cli", "--debug", "info", str(p)],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_published_fcn_deploy_info(fcn_reference, capsys):
    for layer in ("convolution", "deconvolution", "pooling", "crop"):
        pytest.importorskip(f"netdef.layers.{layer}")
    import os

    assert main(["info", os.path.join(fcn_reference, "voc-fcn8s", "deploy.prototxt")]) == 0
    assert "upscore8" in capsys.readouterr().out
