"""Python layers (type "Python"): pycaffe's interface, the prototxt's directory on the module
search path, in-place use, learnable blobs, and the errors for bad modules and classes."""
import logging
import sys
import textwrap
import uuid

import numpy as np
import pytest

import netdef
from netdef import LayerSetupError

from gradcheck import check_gradients

LAYERS_PY = '''
import ast

import numpy as np

import netdef


class Scale(netdef.Layer):
    """top = factor * bottom; records what it saw at setup."""

    def setup(self, bottom, top):
        self.seen = dict(param_str=self.param_str, phase=self.phase, nbottom=len(bottom))
        self.factor = ast.literal_eval(self.param_str)["factor"] if self.param_str else 1.0

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.factor * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = self.factor * top[0].diff

    def hello(self):
        return "hi"


class Affine(netdef.Layer):
    """top = w * bottom + b with learnable w, b of the channel axis (pycaffe's add_blob)."""

    def setup(self, bottom, top):
        c = bottom[0].data.shape[1]
        self.blobs.add_blob(c)
        self.blobs.add_blob(c)
        self.blobs[0].data[...] = 1.5
        self.blobs[1].data[...] = 0.25

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        w = self.blobs[0].data[None, :, None, None]
        b = self.blobs[1].data[None, :, None, None]
        top[0].data[...] = w * bottom[0].data + b

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] += (top[0].diff * bottom[0].data).sum(axis=(0, 2, 3))
        self.blobs[1].diff[...] += top[0].diff.sum(axis=(0, 2, 3))
        if propagate_down[0]:
            bottom[0].diff[...] = self.blobs[0].data[None, :, None, None] * top[0].diff


class SumLoss(netdef.Layer):
    is_loss = True

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        top[0].data[0] = bottom[0].data.sum()

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = top[0].diff[0]


class ImageSource(netdef.Layer):
    """FCN's style of data layer: the next sample is loaded in reshape, copied in forward."""

    def setup(self, bottom, top):
        self.k = 0

    def reshape(self, bottom, top):
        self.k += 1
        self.sample = np.full((1, 1, 3 + self.k, 4 + self.k), float(self.k))
        top[0].reshape(*self.sample.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.sample


class NotALayer:
    pass


not_a_class = 3
'''


@pytest.fixture
def module(tmp_path):
    """A unique module name (modules stay cached in sys.modules) written next to a prototxt."""
    name = f"my_layers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(LAYERS_PY)
    yield name
    sys.modules.pop(name, None)


def write_net(tmp_path, body, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def py_layer(module, cls, bottom="x", top="y", param_str=""):
    return f"""
layer {{ name: "{cls.lower()}" type: "Python" bottom: "{bottom}" top: "{top}"
  python_param {{ module: "{module}" layer: "{cls}" param_str: "{param_str}" }} }}"""


INPUT = 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } } }\n'


def test_python_layer_forward_backward(tmp_path, module, caplog):
    path = write_net(tmp_path, "force_backward: true\n" + INPUT + py_layer(module, "Scale", param_str="{'factor': 3.0}")
                     + py_layer(module, "SumLoss", bottom="y", top="loss"))
    with caplog.at_level(logging.INFO, logger="netdef"):
        net = netdef.Net(path, netdef.TRAIN)
    assert f"Importing Python layer module {module}" in caplog.text
    layer = net.layer_dict["scale"]
    assert type(layer).__name__ == "Scale" and layer.type == "Python" and layer.hello() == "hi"
    assert layer.seen == {"param_str": "{'factor': 3.0}", "phase": netdef.TRAIN, "nbottom": 1}
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    out = net.forward(x=x)
    np.testing.assert_allclose(out["loss"], [3 * x.sum()], rtol=1e-5)
    np.testing.assert_allclose(net.blobs["y"].data, 3 * x, rtol=1e-6)
    grads = net.backward()
    np.testing.assert_allclose(grads["x"], np.full_like(x, 3.0))


def test_python_layer_phase_test(tmp_path, module):
    net = netdef.Net(write_net(tmp_path, INPUT + py_layer(module, "Scale")), netdef.TEST)
    assert net.layer_dict["scale"].seen["phase"] == netdef.TEST


def test_python_layer_in_place(tmp_path, module):
    net = netdef.Net(write_net(tmp_path, INPUT + py_layer(module, "Scale", top="x", param_str="{'factor': 2.0}")))
    x = np.ones((2, 3, 4, 5), np.float32)
    net.blobs["x"].data[...] = x
    net.forward()
    np.testing.assert_array_equal(net.blobs["x"].data, 2 * x)


def test_python_layer_learnable_blobs(tmp_path, module):
    path = write_net(tmp_path, INPUT + py_layer(module, "Affine") + py_layer(module, "SumLoss", bottom="y", top="loss"))
    net = netdef.Net(path, netdef.TRAIN)
    assert [b.shape for b in net.params["affine"]] == [(3,), (3,)]
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    net.forward(x=x)
    np.testing.assert_allclose(net.blobs["y"].data, 1.5 * x + 0.25, rtol=1e-6)
    net.clear_param_diffs()
    net.backward()
    np.testing.assert_allclose(net.params["affine"][0].diff, x.sum(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(net.params["affine"][1].diff, [40, 40, 40])
    # The params travel through a caffemodel like any layer's.
    net.params["affine"][0].data[...] = [1, 2, 3]
    net.save(str(tmp_path / "w.caffemodel"))
    again = netdef.Net(path, netdef.TEST, weights=str(tmp_path / "w.caffemodel"))
    np.testing.assert_array_equal(again.params["affine"][0].data, [1, 2, 3])


def test_python_data_layer_reshaped_before_every_forward(tmp_path, module):
    text = f"""
layer {{ name: "src" type: "Python" top: "data" python_param {{ module: "{module}" layer: "ImageSource" }} }}
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param {{ num_output: 2 kernel_size: 3 weight_filler {{ type: "constant" value: 1 }} }} }}"""
    net = netdef.Net(write_net(tmp_path, text))
    for k in (2, 3, 4):  # as in Caffe, the sample loaded at setup is replaced at the first forward
        net.forward()
        assert net.blobs["data"].shape == (1, 1, 3 + k, 4 + k) and (net.blobs["data"].data == k).all()
        assert net.blobs["conv"].shape == (1, 2, 1 + k, 2 + k)
        np.testing.assert_allclose(net.blobs["conv"].data, 9.0 * k)


def test_python_layer_gradients(tmp_path, module, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    x = np.random.default_rng(2).standard_normal((2, 3, 2, 2))
    check_gradients(f'type: "Python" python_param {{ module: "{module}" layer: "Affine" }}', [x])


def test_module_found_in_the_prototxts_directory_only(tmp_path, module, monkeypatch):
    sub = tmp_path / "model"
    sub.mkdir()
    (sub / f"{module}_here.py").write_text(LAYERS_PY)
    monkeypatch.chdir("/")
    net = netdef.Net(write_net(sub, INPUT + py_layer(f"{module}_here", "Scale")))
    assert type(net.layers[1]).__name__ == "Scale"
    sys.modules.pop(f"{module}_here", None)


@pytest.mark.parametrize("cls, param, match", [
    ("Scale", 'module: "no_such_module_xyz" layer: "Scale"', "cannot import module 'no_such_module_xyz'.*ModuleNotFoundError"),
    ("Scale", 'module: "MOD" layer: "Missing"', "module 'MOD' .* has no class 'Missing'"),
    ("Scale", 'module: "MOD" layer: "NotALayer"', r"'MOD.NotALayer' \(class\) is not a subclass of netdef.Layer"),
    ("Scale", 'module: "MOD" layer: "not_a_class"', r"'MOD.not_a_class' \(int\) is not a subclass"),
    ("Scale", 'module: "MOD.py" layer: "Scale"', "must be a module name, not a file path"),
    ("Scale", 'module: "dir/MOD" layer: "Scale"', "not a file path"),
    ("Scale", 'layer: "Scale"', "python_param.module is not set"),
    ("Scale", 'module: "MOD"', "python_param.layer is not set"),
])
def test_bad_module_or_class(tmp_path, module, cls, param, match):
    param = param.replace("MOD", module)
    text = INPUT + f'layer {{ name: "p" type: "Python" bottom: "x" top: "y" python_param {{ {param} }} }}'
    with pytest.raises(LayerSetupError, match=match.replace("MOD", module)) as e:
        netdef.Net(write_net(tmp_path, text))
    assert "layer 'p'" in str(e.value) and "net.prototxt" in str(e.value)


def test_module_that_fails_to_import(tmp_path):
    (tmp_path / "broken_layers_q1.py").write_text("import netdef\nraise RuntimeError('boom at import')\n")
    text = INPUT + py_layer("broken_layers_q1", "Scale")
    with pytest.raises(LayerSetupError, match="cannot import module 'broken_layers_q1'.*RuntimeError: boom at import"):
        netdef.Net(write_net(tmp_path, text))
    (tmp_path / "syntax_layers_q1.py").write_text("def oops(:\n")
    with pytest.raises(LayerSetupError, match="cannot import module 'syntax_layers_q1'.*SyntaxError"):
        netdef.Net(write_net(tmp_path, INPUT + py_layer("syntax_layers_q1", "Scale")))


def test_no_python_param(tmp_path):
    with pytest.raises(LayerSetupError, match="python_param.module is not set"):
        netdef.Net(INPUT + 'layer { name: "p" type: "Python" bottom: "x" top: "y" }')


def test_errors_inside_user_code_propagate(tmp_path, module):
    text = INPUT + py_layer(module, "Scale", param_str="{'factor': }")
    with pytest.raises(SyntaxError):
        netdef.Net(write_net(tmp_path, text))


# ---- a user's module always wins over netdef's built-in voc_layers ------------------------------

USER_VOC = '''
import numpy as np
import netdef


class VOCSegDataLayer(netdef.Layer):
    """The user's own data: a constant image and label."""

    def setup(self, bottom, top):
        self.value = float(eval(self.param_str)["value"])

    def reshape(self, bottom, top):
        top[0].reshape(1, 3, 2, 2)
        top[1].reshape(1, 1, 2, 2)

    def forward(self, bottom, top):
        top[0].data[...] = self.value
        top[1].data[...] = 1

    def backward(self, top, propagate_down, bottom):
        pass
'''

VOC_NET = ('layer { name: "data" type: "Python" top: "data" top: "label" python_param { '
           'module: "voc_layers" layer: "VOCSegDataLayer" param_str: "%s" } }')


@pytest.fixture
def clean_voc_import(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = sys.modules.pop("voc_layers", None)
    yield
    sys.modules.pop("voc_layers", None)
    if saved is not None:
        sys.modules["voc_layers"] = saved


def test_user_voc_layers_module_wins(tmp_path, clean_voc_import, caplog):
    (tmp_path / "voc_layers.py").write_text(USER_VOC)
    net_file = tmp_path / "train.prototxt"
    net_file.write_text(VOC_NET % "{'value': 7}")
    with caplog.at_level(logging.INFO, logger="netdef"):
        net = netdef.Net(str(net_file), netdef.TRAIN)
    assert "Importing Python layer module voc_layers" in caplog.text
    assert "netdef's implementation" not in caplog.text
    out = net.forward()
    np.testing.assert_array_equal(out["data"], np.full((1, 3, 2, 2), 7.0))
    assert type(net.layers[0]).__module__ == "voc_layers"


def test_without_a_user_module_netdefs_voc_layers_answers(tmp_path, clean_voc_import, caplog):
    net_file = tmp_path / "train.prototxt"
    net_file.write_text(VOC_NET % "{'voc_dir': '/nonexistent/voc', 'split': 'train', 'mean': (1, 2, 3)}")
    with caplog.at_level(logging.INFO, logger="netdef"), pytest.raises(netdef.NetdefError, match="nonexistent"):
        netdef.Net(str(net_file), netdef.TRAIN)
    lines = [r.getMessage() for r in caplog.records if "voc_layers" in r.getMessage()]
    assert len(lines) == 1 and "using netdef's implementation netdef.data.voc_layers" in lines[0]


def test_user_voc_layers_that_fails_to_import_is_reported(tmp_path, clean_voc_import):
    (tmp_path / "voc_layers.py").write_text("import a_module_nobody_has_xyz\n")
    net_file = tmp_path / "train.prototxt"
    net_file.write_text(VOC_NET % "{}")
    with pytest.raises(LayerSetupError, match="voc_layers.*No module named 'a_module_nobody_has_xyz'"):
        netdef.Net(str(net_file), netdef.TRAIN)


def test_a_pycaffe_layer_module_gets_the_caffe_alias(tmp_path, clean_voc_import, caplog):
    from netdef import caffe_compat

    if caffe_compat.real_caffe() is not None:
        pytest.skip("a real caffe is importable here")
    caffe_compat.uninstall()
    (tmp_path / "voc_layers.py").write_text(USER_VOC.replace("import netdef", "import caffe")
                                            .replace("netdef.Layer", "caffe.Layer"))
    net_file = tmp_path / "train.prototxt"
    net_file.write_text(VOC_NET % "{'value': 2}")
    try:
        with caplog.at_level(logging.INFO, logger="netdef"):
            net = netdef.Net(str(net_file), netdef.TRAIN)
        np.testing.assert_array_equal(net.forward()["data"], np.full((1, 3, 2, 2), 2.0))
        assert "imports caffe, which is not installed: answering it with netdef" in caplog.text
    finally:
        caffe_compat.uninstall()
