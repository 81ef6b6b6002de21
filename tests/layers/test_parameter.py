"""Parameter: the top is the learnable blob, its gradient accumulates, it loads from and saves
to a caffemodel, a solver step moves it, field errors, GPU vs CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError

NET = """
  force_backward: true
  input: 'x' input_shape { dim: 2 dim: 3 }
  layer { name: 'p' type: 'Parameter' top: 'w' parameter_param { shape { dim: 2 dim: 3 } } }
  layer { name: 'sum' type: 'Eltwise' bottom: 'x' bottom: 'w' top: 'y' }
  layer { name: 'loss' type: 'Reduction' bottom: 'y' top: 'loss' loss_weight: 1
          reduction_param { operation: SUMSQ } }
"""


@pytest.mark.parametrize("dims", [(2, 3), (5,), (1, 2, 3, 1), (), (2, 0)], ids=str)
def test_top_is_the_param(dims):
    shape = "".join(f"dim: {d} " for d in dims)
    layer, b, t = build_layer(f"type: 'Parameter' parameter_param {{ shape {{ {shape} }} }}", [])
    assert layer.blobs[0].shape == dims == t[0].shape
    np.testing.assert_array_equal(layer.blobs[0].data, 0)  # Caffe's blobs start at 0
    v = np.random.default_rng(0).standard_normal(dims)
    layer.blobs[0].data[...] = v
    (y,) = forward(layer, b, t)
    np.testing.assert_array_equal(y, v)
    layer.blobs[0].diff[...] = 1
    t[0].diff[...] = v
    layer.backward(t, [], b)
    np.testing.assert_array_equal(layer.blobs[0].diff, 1 + v)


def test_gradient():
    check_gradients("type: 'Parameter' parameter_param { shape { dim: 3 dim: 2 } }", [])


def test_in_a_net_with_weights_and_a_solver_step(tmp_path):
    net = netdef.Net(NET, netdef.TRAIN, dtype=np.float64)
    x = np.arange(6.0).reshape(2, 3)
    net.params["p"][0].data[...] = 1.0
    net.forward(x=x)
    net.backward()
    np.testing.assert_array_equal(net.params["p"][0].diff, 2 * (x + 1))
    path = tmp_path / "p.caffemodel"
    net.save(str(path))
    net2 = netdef.Net(NET, netdef.TEST, weights=str(path))
    np.testing.assert_array_equal(net2.params["p"][0].data, 1.0)
    solver_txt = tmp_path / "solver.prototxt"
    (tmp_path / "net.prototxt").write_text(NET.replace("input: 'x' input_shape { dim: 2 dim: 3 }",
        "layer { name: 'x' type: 'Parameter' top: 'x' parameter_param { shape { dim: 2 dim: 3 } } "
        "param { lr_mult: 0 } }"))
    solver_txt.write_text(f"net: '{tmp_path / 'net.prototxt'}' base_lr: 0.25 lr_policy: 'fixed' "
                          "max_iter: 1 solver_mode: CPU snapshot_prefix: '" + str(tmp_path / "s") + "'")
    solver = netdef.get_solver(str(solver_txt))
    solver.net.params["p"][0].data[...] = 1.0
    solver.step(1)
    np.testing.assert_allclose(solver.net.params["p"][0].data, 1 - 0.25 * 2 * 1.0)
    np.testing.assert_array_equal(solver.net.params["x"][0].data, 0)  # lr_mult 0: untouched


def test_negative_dim_is_an_error():
    with pytest.raises(NetdefError, match="negative dimension"):
        build_layer("type: 'Parameter' parameter_param { shape { dim: 2 dim: -1 } }", [])


@pytest.mark.gpu
def test_gpu_matches_cpu():
    compare_devices("type: 'Parameter' parameter_param { shape { dim: 4 dim: 5 } }", [], rtol=0, atol=0)
