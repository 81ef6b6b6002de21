"""Untrusted files: loading a caffemodel or a prototxt never runs code. Only a `type: "Python"`
layer imports a module, the one its python_param names, and netdef logs which."""
import logging
import os
import sys
import uuid

import pytest

import netdef
from netdef import proto
from netdef import netdef_pb2 as pb

MLP = os.path.join(os.path.dirname(__file__), "..", "examples", "mlp.prototxt")


@pytest.fixture
def trap(tmp_path, monkeypatch):
    """A module that, when imported, leaves a marker file; it lives in the prototxt's folder."""
    name = "trap_" + uuid.uuid4().hex[:8]
    marker = tmp_path / "IMPORTED"
    (tmp_path / f"{name}.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "import netdef\n"
        "class Double(netdef.Layer):\n"
        "    def reshape(self, bottom, top):\n"
        "        top[0].reshape(*bottom[0].shape)\n"
        "    def forward(self, bottom, top):\n"
        "        top[0].data[...] = 2 * bottom[0].data\n")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the Python layer appends the prototxt's folder
    yield name, marker
    sys.modules.pop(name, None)


def _python_net(module):
    return ('name: "p"\n'
            'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
            f'layer {{ name: "py" type: "Python" bottom: "x" top: "y" '
            f'python_param {{ module: "{module}" layer: "Double" }} }}\n')


def test_caffemodel_naming_a_python_module_imports_nothing(tmp_path, trap):
    name, marker = trap
    # A caffemodel whose layers are Python layers (with the trap module) and carry weights.
    msg = pb.NetParameter(name="evil")
    for lname in ("fc1", "py"):
        lp = msg.layer.add(name=lname, type="Python")
        lp.python_param.module, lp.python_param.layer = name, "Double"
    net = netdef.Net(MLP)
    good = net.to_proto()
    msg.layer[0].blobs.extend(next(lp for lp in good.layer if lp.name == "fc1").blobs)
    path = tmp_path / "evil.caffemodel"
    path.write_bytes(msg.SerializeToString())
    proto.read_caffemodel(str(path))
    assert net.copy_from(str(path)) == []  # 'py' carries no weights; fc1's are the MLP's own
    netdef.Net(MLP, weights=str(path))
    assert not marker.exists()


def test_parsing_a_prototxt_with_a_python_layer_imports_nothing(tmp_path, trap):
    name, marker = trap
    path = tmp_path / "net.prototxt"
    path.write_text(_python_net(name))
    proto.read_net_text(str(path))
    from netdef import coord_map
    coord_map.compute(proto.read_net_text(str(path))[0])
    assert not marker.exists()


def test_building_a_python_layer_imports_its_module_and_says_so(tmp_path, trap, caplog):
    name, marker = trap
    path = tmp_path / "net.prototxt"
    path.write_text(_python_net(name))
    with caplog.at_level(logging.INFO, logger="netdef"):
        net = netdef.Net(str(path))
    assert marker.exists()
    assert f"Importing Python layer module {name}" in caplog.text
    assert (net.forward(x=[[1, 2, 3], [4, 5, 6]])["y"] == [[2, 4, 6], [8, 10, 12]]).all()


def test_a_net_without_python_layers_leaves_sys_path_alone(tmp_path, trap):
    name, marker = trap
    path = tmp_path / "net.prototxt"
    path.write_text(open(MLP).read())
    before = list(sys.path)
    netdef.Net(str(path))
    assert sys.path == before and not marker.exists()


@pytest.mark.parametrize("param_str", [
    "__import__('os').system('touch PWNED')",
    "{'voc_dir': __import__('os').getcwd(), 'split': 'train', 'mean': (1, 2, 3)}",
    "(lambda: 1)()",
])
def test_fcn_param_str_is_a_literal_never_evaluated(tmp_path, param_str, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = ('layer { name: "data" type: "Python" top: "data" top: "label" python_param { '
            f'module: "voc_layers" layer: "VOCSegDataLayer" param_str: "{param_str}" }} }}')
    with pytest.raises(netdef.LayerSetupError, match="param_str is not a Python literal"):
        netdef.Net(text, netdef.TRAIN)
    assert not (tmp_path / "PWNED").exists()


def test_cli_info_logs_the_python_module(tmp_path, trap):
    import subprocess

    name, marker = trap
    path = tmp_path / "net.prototxt"
    path.write_text(_python_net(name))
    r = subprocess.run([sys.executable, "-m", "netdef.cli", "info", str(path)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"Importing Python layer module {name}" in r.stdout + r.stderr
    assert marker.exists()
