"""Filter: forward against a numpy loop, gradients, all-zero selector (empty tops through a
net, forward and backward), several bottoms, shape errors, GPU vs CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError

PROTO = "type: 'Filter' top: 'a' top: 'b'"


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((5, 3, 2)), rng.standard_normal((5, 4))


SELECTORS = {
    "some": np.array([0.0, 1.0, 0.0, 2.5, -1.0]),
    "edges": np.array([1.0, 0.0, 0.0, 0.0, 1.0]).reshape(5, 1, 1),
    "all": np.ones((5, 1)),
    "none": np.zeros(5),
}


@pytest.mark.parametrize("sel", sorted(SELECTORS))
def test_forward_and_backward_match_reference(sel):
    x0, x1 = _data()
    s = SELECTORS[sel]
    layer, b, t = build_layer(PROTO, [x0, x1, s])
    assert [tt.shape[0] for tt in t] == [5, 5]  # the first reshape: every item (as Caffe)
    outs = forward(layer, b, t)
    keep = [n for n in range(5) if s.reshape(-1)[n] != 0]
    for got, x in zip(outs, (x0, x1), strict=True):
        want = np.array([x[n] for n in keep]).reshape((len(keep),) + x.shape[1:])
        np.testing.assert_array_equal(got, want)
    for tt in t:
        tt.diff[...] = np.arange(tt.count, dtype=float).reshape(tt.shape) + 1
    for bb in b:
        bb.diff[...] = np.nan
    layer.backward(t, [True, True, False], b)
    for bb, tt in zip(b[:2], t, strict=True):
        want = np.zeros(bb.shape)
        for j, n in enumerate(keep):
            want[n] = tt.diff[j]
        np.testing.assert_array_equal(bb.diff, want)


@pytest.mark.parametrize("sel", ["some", "edges", "all"])
def test_gradient(sel):
    x0, x1 = _data(1)
    check_gradients(PROTO, [x0, x1, SELECTORS[sel]])


def test_selector_changes_resize_the_tops_at_forward():
    x0, x1 = _data()
    layer, b, t = build_layer(PROTO, [x0, x1, SELECTORS["some"]])
    forward(layer, b, t)
    assert t[0].shape == (3, 3, 2)
    b[2].data[...] = SELECTORS["none"]
    forward(layer, b, t)
    assert t[0].shape == (0, 3, 2) and t[1].shape == (0, 4)
    layer.reshape(b, t)
    assert t[0].shape == (0, 3, 2)


def test_empty_selection_flows_through_a_net():
    net = netdef.Net("""
      force_backward: true
      input: 'x' input_shape { dim: 4 dim: 3 }
      input: 's' input_shape { dim: 4 }
      layer { name: 'f' type: 'Filter' bottom: 'x' bottom: 's' top: 'y' }
      layer { name: 'ip' type: 'InnerProduct' bottom: 'y' top: 'z'
              inner_product_param { num_output: 2 weight_filler { type: 'constant' value: 1 } } }
      layer { name: 'loss' type: 'Reduction' bottom: 'z' top: 'loss' loss_weight: 1 }
    """, netdef.TRAIN, dtype=np.float64)
    x = np.arange(12.0).reshape(4, 3)
    out = net.forward(x=x, s=np.array([0.0, 1, 0, 1]))
    assert net.blobs["z"].shape == (2, 2) and out["loss"] == 2 * (x[1].sum() + x[3].sum())
    dx = net.backward()["x"]
    np.testing.assert_array_equal(dx, [[0, 0, 0], [2, 2, 2], [0, 0, 0], [2, 2, 2]])
    out = net.forward(x=x, s=np.zeros(4))
    assert net.blobs["y"].shape == (0, 3) and net.blobs["z"].shape == (0, 2)
    assert out["loss"] == 0
    np.testing.assert_array_equal(net.backward()["x"], 0)


@pytest.mark.parametrize("shapes, tops, match", [
    ([(5, 3), (5, 2)], 1, r"selector \(last bottom\) has shape \(5, 2\)"),
    ([(4, 3), (5,)], 1, r"bottom\[0\] has shape \(4, 3\).*5 items"),
    ([(5, 3), (5,)], 2, "2 bottoms need 1 tops, got 2"),
])
def test_errors(shapes, tops, match):
    with pytest.raises(NetdefError, match=match):
        build_layer("type: 'Filter'", [np.ones(s) for s in shapes], num_tops=tops)


@pytest.mark.gpu
@pytest.mark.parametrize("sel", sorted(SELECTORS))
def test_gpu_matches_cpu(sel):
    x0, x1 = _data(2)
    compare_devices(PROTO, [x0, x1, SELECTORS[sel]], rtol=0, atol=0)
