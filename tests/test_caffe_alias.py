"""The opt-in `caffe` alias (netdef.caffe_compat) and `netdef run`: an unchanged pycaffe script
runs on netdef, and a real Caffe is never hidden without --force."""
import os
import subprocess
import sys

import pytest

import netdef
from netdef import NetdefError, caffe_compat
from netdef.cli import main


@pytest.fixture
def alias(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    caffe_compat.uninstall()
    yield caffe_compat
    caffe_compat.uninstall()


def test_install_forwards_netdef_and_pycaffe_names(alias, monkeypatch):
    monkeypatch.setattr(netdef, "solver_count", lambda: 1, raising=False)  # a name added later
    caffe = alias.install()
    import caffe as imported
    from caffe import layers as L, params as P
    from caffe.proto import caffe_pb2
    import caffe.coord_map
    import caffe.draw
    import caffe.io
    from caffe.coord_map import crop
    from caffe.classifier import Classifier
    from caffe.detector import Detector

    assert imported is caffe
    for name in netdef.__all__:
        assert getattr(caffe, name) is getattr(netdef, name), name
    assert caffe.solver_count is netdef.solver_count
    assert caffe.Net is netdef.Net and caffe.TRAIN == 0 and caffe.TEST == 1
    assert caffe.set_mode_cpu is netdef.set_mode_cpu and caffe.Layer is netdef.Layer
    assert caffe_pb2 is netdef.pb and caffe.io is netdef.io
    assert caffe.coord_map.crop is crop and caffe.NetSpec is netdef.net_spec.NetSpec
    assert L is netdef.net_spec.L and P.Pooling.MAX == netdef.pb.PoolingParameter.MAX
    assert Classifier is caffe.Classifier and Detector is caffe.Detector
    assert alias.install() is caffe  # idempotent
    with pytest.raises(ImportError):
        import caffe.nonexistent  # noqa: F401


def _fake_caffe(tmp_path):
    pkg = tmp_path / "site" / "caffe"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("REAL = True\n")
    return str(tmp_path / "site")


def test_a_real_caffe_is_not_hidden_without_force(alias, tmp_path, caplog):
    sys.path.insert(0, _fake_caffe(tmp_path))
    with pytest.raises(NetdefError, match="real Caffe is importable.*site/caffe.*--force"):
        alias.install()
    assert "caffe" not in sys.modules
    caffe = alias.install(force=True)
    assert caffe.Net is netdef.Net
    assert "hiding the Caffe at" in caplog.text


SCRIPT = '''
import sys
import numpy as np
import caffe
from caffe import layers as L, params as P
from caffe.coord_map import crop

caffe.set_mode_cpu()
n = caffe.NetSpec()
n.data = L.Input(shape=dict(dim=[1, 1, 8, 8]))
n.conv = L.Convolution(n.data, num_output=1, kernel_size=3, pad=2,
                       weight_filler=dict(type="constant", value=1))
n.score = crop(n.conv, n.data)
with open(sys.argv[1], "w") as f:
    f.write(str(n.to_proto()))
net = caffe.Net(sys.argv[1], caffe.TEST)
out = net.forward(data=np.ones((1, 1, 8, 8), np.float32))
print("SCORE", out["score"].shape, float(out["score"][0, 0, 0, 0]), float(out["score"][0, 0, 3, 3]))
sys.exit(int(sys.argv[2]))
'''


def test_netdef_run_executes_an_unchanged_script(alias, tmp_path, capsys):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    rc = main(["run", str(script), str(tmp_path / "net.prototxt"), "5"])
    assert rc == 5
    out = capsys.readouterr().out
    # crop offset 1 (pad 2, kernel 3): pixel (0, 0) of the crop is conv (1, 1), which sees
    # a 3x3 window holding 4 ones of the input; (3, 3) sees 9.
    assert "SCORE (1, 1, 8, 8) 4.0 9.0" in out
    assert "offset: 1" in (tmp_path / "net.prototxt").read_text()


def test_netdef_run_refuses_a_real_caffe_and_missing_scripts(alias, tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.py")]) == 1
    assert "no such script" in capsys.readouterr().err
    site = _fake_caffe(tmp_path)
    script = tmp_path / "s.py"
    script.write_text("import caffe\nprint('NET' if hasattr(caffe, 'Net') else 'REAL')\n")
    env = dict(os.environ, PYTHONPATH=site + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "netdef", "run"]
    res = subprocess.run(cmd + [str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "real Caffe is importable" in res.stderr, res.stderr
    res = subprocess.run(cmd + ["--force", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "NET" in res.stdout, res.stderr


DRAW_NET_PY = '''
import sys
from google.protobuf import text_format
import caffe
import caffe.draw
from caffe.proto import caffe_pb2

net = caffe_pb2.NetParameter()
text_format.Merge(open(sys.argv[1]).read(), net)
caffe.draw.draw_net_to_file(net, sys.argv[2], "TB", caffe.TEST, False)
'''


def test_caffe_draw_net_script(alias, tmp_path):
    pytest.importorskip("pydot")
    (tmp_path / "draw_net.py").write_text(DRAW_NET_PY)
    (tmp_path / "n.prototxt").write_text(
        'name: "n" layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 } } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 3 } }\n'
        'layer { name: "t" type: "ReLU" bottom: "fc" top: "t" include { phase: TRAIN } }\n')
    assert main(["run", str(tmp_path / "draw_net.py"), str(tmp_path / "n.prototxt"), str(tmp_path / "n.dot")]) == 0
    dot = (tmp_path / "n.dot").read_text()
    assert '"layer:fc_InnerProduct" -> "blob:fc" [label="3"]' in dot and "rankdir=TB" in dot
    assert "layer:t_ReLU" not in dot  # TRAIN-only layer left out of the TEST picture
