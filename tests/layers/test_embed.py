"""Embed: forward against a numpy loop, parameter gradients with repeated indices and the edge
indices 0 and input_dim - 1, bias_term off, fillers, errors naming the bad value, GPU vs CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError

FILLERS = "weight_filler { type: 'gaussian' std: 1 } bias_filler { type: 'uniform' min: -1 max: 1 }"


def _proto(n_out=3, dim=5, bias=True):
    return (f"type: 'Embed' embed_param {{ num_output: {n_out} input_dim: {dim} "
            f"bias_term: {str(bias).lower()} {FILLERS} }}")


def _indices(shape, dim, seed=0):
    x = np.random.default_rng(seed).integers(0, dim, size=shape).astype(float)
    flat = x.reshape(-1)
    flat[0], flat[-1] = 0, dim - 1  # both edges, and duplicates for any size > dim
    return x


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(4,), (2, 3), (3, 1, 4), (1,)], ids=str)
def test_forward_matches_reference(shape, bias):
    x = _indices(shape, 5)
    layer, b, t = build_layer(_proto(3, 5, bias), [x])
    (y,) = forward(layer, b, t)
    W = layer.blobs[0].data
    want = np.empty(shape + (3,))
    for pos in np.ndindex(*shape):
        want[pos] = W[int(x[pos])] + (layer.blobs[1].data if bias else 0)
    np.testing.assert_array_equal(y, want)
    assert layer.blobs[0].shape == (5, 3) and (len(layer.blobs) == 2) == bias


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 2)], ids=str)
def test_gradient(shape, bias):
    check_gradients(_proto(4, 3, bias), [_indices(shape, 3, 1)])


def test_repeated_indices_accumulate_in_order():
    x = np.array([2.0, 0.0, 2.0, 2.0])
    layer, b, t = build_layer(_proto(2, 4), [x])
    forward(layer, b, t)
    t[0].diff[...] = np.array([[1.0, 2], [3, 4], [5, 6], [7, 8]])
    for p in layer.blobs:
        p.diff[...] = 1
    layer.backward(t, [False], b)
    np.testing.assert_array_equal(layer.blobs[0].diff, [[4, 5], [1, 1], [14, 17], [1, 1]])
    np.testing.assert_array_equal(layer.blobs[1].diff, [17, 21])


def test_bottom_gets_no_gradient_in_a_net():
    net = netdef.Net("""
      input: 'x' input_shape { dim: 3 }
      layer { name: 'e' type: 'Embed' bottom: 'x' top: 'y' embed_param { num_output: 2 input_dim: 4 } }
      layer { name: 'l' type: 'Reduction' bottom: 'y' top: 'loss' loss_weight: 1 }
    """, netdef.TRAIN, dtype=np.float64)
    net.forward(x=np.array([1.0, 3.0, 1.0]))
    net.backward()
    np.testing.assert_array_equal(net.params["e"][0].diff, [[0, 0], [2, 2], [0, 0], [1, 1]])
    np.testing.assert_array_equal(net.params["e"][1].diff, [3, 3])


@pytest.mark.parametrize("value, match", [
    (5.0, r"Embed: bottom value 5\.0 at index \(1, 0\) is not a row.*\[0, input_dim = 5\)"),
    (-1.0, r"value -1\.0 at index \(1, 0\)"),
    (2.5, r"value 2\.5"),
    (np.nan, r"value nan"),
])
def test_bad_index_is_an_error_naming_layer_and_value(value, match):
    x = np.zeros((2, 2))
    x[1, 0] = value
    layer, b, t = build_layer("name: 'emb' " + _proto(3, 5), [x])
    with pytest.raises(NetdefError, match=match) as e:
        forward(layer, b, t)
    assert "emb" in str(e.value)


@pytest.mark.parametrize("proto, match", [
    ("type: 'Embed' embed_param { input_dim: 4 }", "num_output must be given"),
    ("type: 'Embed' embed_param { num_output: 4 }", "input_dim must be given"),
])
def test_field_errors(proto, match):
    with pytest.raises(NetdefError, match=match):
        build_layer(proto, [np.zeros(3)])


@pytest.mark.gpu
@pytest.mark.parametrize("bias", [True, False])
def test_gpu_matches_cpu(bias):
    compare_devices(_proto(6, 7, bias), [_indices((4, 9), 7, 3)], rtol=1e-5, atol=1e-6)
