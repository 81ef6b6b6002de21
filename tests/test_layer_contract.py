"""The Layer contract's defaults (everything Net and Solver read from or call on a layer is
declared on netdef.Layer), what the Net sets on its layers, and Net.close()."""
import sys

import numpy as np
import pytest

import netdef
from netdef import netdef_pb2 as pb
from netdef.layer import Layer
from netdef.layers import create_layer


def test_defaults():
    layer = Layer(pb.LayerParameter(name="l"))
    assert layer.type is None and layer.name == "l"
    assert layer.is_loss is False and layer.in_place_ok is False
    assert layer.net_filename is None
    assert layer.loss_weights == [] and layer.param_propagate_down == [] and layer.blobs == []
    assert layer.allow_backward(0) is True
    assert layer.adapt_param(0, np.zeros(3)) is None
    assert layer.get_state() is None
    assert layer.set_state({"pos": 3}) is None
    assert layer.close() is None
    assert layer.backward([], [], []) is None and layer.setup([], []) is None
    with pytest.raises(NotImplementedError):
        layer.reshape([], [])
    with pytest.raises(NotImplementedError):
        layer.forward([], [])


def test_from_layer_param_and_create_layer():
    lp = pb.LayerParameter(name="r", type="ReLU")
    layer = create_layer(lp, pb.TRAIN, net_filename="/some/net.prototxt")
    assert type(layer).__name__ == "ReLULayer" and layer.type == "ReLU"
    assert layer.phase == pb.TRAIN and layer.net_filename == "/some/net.prototxt"
    assert layer.in_place_ok


def test_what_the_net_sets():
    net = netdef.Net("""
        input: 'x' input_shape { dim: 2 dim: 3 }  input: 'y' input_shape { dim: 2 dim: 3 }
        layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'h' param { lr_mult: 0 } param { lr_mult: 1 }
                inner_product_param { num_output: 3 } }
        layer { name: 'loss' type: 'EuclideanLoss' bottom: 'h' bottom: 'y' top: 'loss' }
        layer { name: 'aux' type: 'EuclideanLoss' bottom: 'x' bottom: 'y' top: 'aux' loss_weight: 0.5 }""",
                     netdef.TRAIN)
    ip, loss, aux = (net.layer_dict[n] for n in ("ip", "loss", "aux"))
    assert ip.param_propagate_down == [False, True]
    assert ip.loss_weights == [0.0] and loss.loss_weights == [1.0] and aux.loss_weights == [0.5]
    weights = dict(net.blob_loss_weights)
    assert {n: w for n, w in weights.items() if w} == {"loss": 1.0, "aux": 0.5}
    assert set(weights) == set(net.blobs)  # x and y feed two layers each: through splits
    assert net.last_loss is None
    net.forward()
    assert net.last_loss == pytest.approx(float(net.blobs["loss"].data) + 0.5 * float(net.blobs["aux"].data))


LAYERS_PY = '''
import netdef


class Closing(netdef.Layer):
    closed = []

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data

    def close(self):
        Closing.closed.append(self.name)


class NotInPlace(Closing):
    in_place_ok = False


from netdef.data.python_layer import PythonLayer


class Adapted(PythonLayer):
    def reshape(self, bottom, top):
        pass
'''


@pytest.fixture
def module(python_module):
    return python_module(LAYERS_PY, "contract_layers")


def py(module, cls, name, bottom="x", top="y"):
    return (f'layer {{ name: "{name}" type: "Python" bottom: "{bottom}" top: "{top}" '
            f'python_param {{ module: "{module}" layer: "{cls}" param_str: "p={name}" }} }}\n')


INPUT = "input: 'x' input_shape { dim: 2 dim: 3 }\n"


def test_net_close_closes_every_layer(module):
    net = netdef.Net(INPUT + py(module, "Closing", "a") + py(module, "Closing", "b", "y", "z"))
    user = sys.modules[module].Closing
    net.close()
    assert user.closed == ["a", "b"]


def test_python_layers_are_the_users_class_with_pycaffes_behaviour(module):
    from netdef.data.python_layer import PythonLayer

    net = netdef.Net(INPUT + py(module, "Closing", "a") + py(module, "Closing", "b", "y", "z"))
    user = sys.modules[module].Closing
    a, b = net.layer_dict["a"], net.layer_dict["b"]
    assert isinstance(a, user) and isinstance(a, PythonLayer) and type(a).__name__ == "Closing"
    assert type(a) is type(b)  # one adapted class per user class
    assert type(a).__module__ == module and "forward" not in vars(a)  # nothing patched per instance
    assert a.type == "Python" and a.param_str == "p=a" and b.param_str == "p=b"
    assert a.in_place_ok and hasattr(a.blobs, "add_blob")
    assert not vars(user).get("in_place_ok")  # the user's class is left as written


def test_a_python_layer_keeps_its_own_in_place_ok(module):
    with pytest.raises(netdef.LayerSetupError, match="cannot compute top 'x' in place"):
        netdef.Net(INPUT + py(module, "NotInPlace", "n", "x", "x"))


def test_a_user_class_on_netdefs_pythonlayer_is_refused(module):
    with pytest.raises(netdef.LayerSetupError, match="subclasses netdef's PythonLayer; subclass netdef.Layer"):
        netdef.Net(INPUT + py(module, "Adapted", "a"))
