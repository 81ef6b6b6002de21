"""Net building and running: splits, in-place layers, losses, backward needs, sharing, errors."""
import numpy as np
import pytest

import netdef

BRANCHY = """
name: "branchy"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 3 dim: 5 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "relu" type: "ReLU" bottom: "fc" top: "fc" relu_param { negative_slope: 0.2 } }
layer { name: "a" type: "InnerProduct" bottom: "fc" top: "a"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
layer { name: "b" type: "InnerProduct" bottom: "fc" top: "b"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" loss_weight: 0.5 }
"""


def test_split_inserted_with_caffe_names():
    net = netdef.Net(BRANCHY, netdef.TRAIN)
    assert "fc_relu_0_split" in net.layer_dict
    assert net.top_names["fc_relu_0_split"] == ["fc_relu_0_split_0", "fc_relu_0_split_1"]
    assert net.bottom_names["a"] == ["fc_relu_0_split_0"]
    assert net.bottom_names["b"] == ["fc_relu_0_split_1"]
    assert net.inputs == ["data"] and net.outputs == ["sum"]
    assert list(net.params) == ["fc", "a", "b"]


def _objective(net, x):
    net.forward(data=x)
    return 0.5 * float(net.blobs["sum"].data.sum())


def test_net_backward_matches_finite_differences():
    x = np.random.default_rng(0).standard_normal((3, 5))
    net = netdef.Net(_with_force_backward(BRANCHY), netdef.TRAIN, dtype=np.float64)
    net.forward(data=x)
    net.clear_param_diffs()
    grads = net.backward()
    assert abs(net.last_loss - _objective(net, x)) < 1e-12
    gx = grads["data"].copy()
    gw = net.params["fc"][0].diff.copy()
    h = 1e-6
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num = (_objective(net, xp) - _objective(net, xm)) / (2 * h)
        assert abs(num - gx[i]) < 1e-6 * max(1, abs(num))
    w = net.params["fc"][0].data
    for i in [(0, 0), (3, 4), (1, 2)]:
        o = w[i]
        w[i] = o + h
        lp = _objective(net, x)
        w[i] = o - h
        lm = _objective(net, x)
        w[i] = o
        assert abs((lp - lm) / (2 * h) - gw[i]) < 1e-6 * max(1, abs(gw[i]))


def _with_force_backward(text):
    return "force_backward: true\n" + text


def test_param_diffs_accumulate_until_cleared():
    net = netdef.Net(BRANCHY, netdef.TRAIN, dtype=np.float64)
    net.forward(data=np.ones((3, 5)))
    net.clear_param_diffs()
    net.backward()
    once = net.params["a"][0].diff.copy()
    net.backward()
    np.testing.assert_allclose(net.params["a"][0].diff, 2 * once)


def test_backward_needs():
    net = netdef.Net(BRANCHY.replace('name: "fc" type: "InnerProduct" bottom: "data" top: "fc"',
                                     'name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                                     'param { lr_mult: 0 } param { lr_mult: 0 }'), netdef.TRAIN)
    assert not net.layer_need_backward("fc")  # frozen, and its input needs no gradient
    assert not net.layer_need_backward("relu")
    assert net.layer_need_backward("a") and net.layer_need_backward("sum")
    # no loss anywhere: nothing needs backward
    net = netdef.Net(BRANCHY.replace("loss_weight: 0.5", ""), netdef.TRAIN)
    assert not any(net.layer_need_backward(n) for n in net.layer_dict)


def test_propagate_down_false_stops_gradient():
    text = BRANCHY.replace(
        'bottom: "a" bottom: "b" top: "sum"', 'bottom: "a" bottom: "b" top: "sum" propagate_down: true propagate_down: false')
    net = netdef.Net(text, netdef.TRAIN)
    assert not net.layer_need_backward("b")
    assert net.layer_need_backward("a")


def test_shared_params_are_one_blob_and_gradients_add():
    text = """
    force_backward: true
    layer { name: "data" type: "Input" top: "x" top: "y" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "p" type: "InnerProduct" bottom: "x" top: "px" param { name: "w" }
            inner_product_param { num_output: 2 bias_term: false weight_filler { type: "gaussian" } } }
    layer { name: "q" type: "InnerProduct" bottom: "y" top: "qy" param { name: "w" }
            inner_product_param { num_output: 2 bias_term: false weight_filler { type: "gaussian" } } }
    layer { name: "s" type: "Eltwise" bottom: "px" bottom: "qy" top: "s" loss_weight: 1 }
    """
    net = netdef.Net(text, netdef.TRAIN, dtype=np.float64)
    assert net.params["p"][0] is net.params["q"][0]
    assert len(net.learnable_params) == 1
    x, y = np.ones((2, 3)), 2 * np.ones((2, 3))
    net.forward(x=x, y=y)
    net.clear_param_diffs()
    net.backward()
    np.testing.assert_allclose(net.params["p"][0].diff, np.full((2, 3), 6.0))  # sum over rows of x + y


def test_shared_param_shape_mismatch():
    text = """
    layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "p" type: "InnerProduct" bottom: "x" top: "px" param { name: "w" }
            inner_product_param { num_output: 2 bias_term: false } }
    layer { name: "q" type: "InnerProduct" bottom: "x" top: "qx" param { name: "w" }
            inner_product_param { num_output: 5 bias_term: false } }
    """
    with pytest.raises(netdef.ShapeError, match=r"'w'.*\(5, 3\).*\(2, 3\)"):
        netdef.Net(text)


@pytest.mark.parametrize("layers,match", [
    ('layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }', "bottom blob 'nope'"),
    ('layer { name: "r" type: "ReLU" bottom: "x" top: "x" }\n'
     'layer { name: "s" type: "ReLU" bottom: "x" top: "y" }\n'
     'layer { name: "t" type: "ReLU" bottom: "x" top: "y" }', "more than one layer"),
    ('layer { name: "r" type: "ReLU" bottom: "x" bottom: "x" top: "r" }', "exactly 1 bottom"),
    ('layer { name: "r" type: "ReLU" bottom: "x" }', "exactly 1 top"),
    ('layer { name: "e" type: "Eltwise" bottom: "x" top: "e" }', "at least 2 bottom"),
    ('layer { name: "c" type: "Concat" bottom: "x" top: "x" }', "in place"),
    ('layer { name: "i" type: "Input" top: "x" }', "duplicate layer name|more than one layer"),
    ('layer { name: "data" type: "ReLU" bottom: "x" top: "z" }', "duplicate layer name 'data'"),
])
def test_graph_errors_name_the_layer(layers, match):
    text = 'layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 2 } } }\n' + layers
    with pytest.raises(netdef.NetdefError, match=match):
        netdef.Net(text)


def test_forward_kwargs_shape_checked_and_reshape():
    net = netdef.Net(BRANCHY)
    with pytest.raises(netdef.ShapeError, match=r"\(2, 5\).*\(3, 5\)"):
        net.forward(data=np.ones((2, 5)))
    net.blobs["data"].reshape(7, 5)
    net.reshape()
    out = net.forward(data=np.ones((7, 5)))
    assert out["sum"].shape == (7, 2)
    with pytest.raises(netdef.NetdefError, match="not an input"):
        net.forward(fc=np.ones(3))


def test_forward_start_end_and_blobs():
    net = netdef.Net(BRANCHY)
    net.blobs["data"].data[...] = 1
    out = net.forward(end="relu")
    assert list(out) == ["fc"]
    out = net.forward(start="a", blobs=["a"])
    assert set(out) == {"sum", "a"}


def test_legacy_constructor_and_loss_weight_count(tmp_path):
    net = netdef.Net(BRANCHY)
    path = tmp_path / "w.caffemodel"
    net.save(path)
    f = tmp_path / "net.prototxt"
    f.write_text(BRANCHY)
    again = netdef.Net(str(f), str(path), netdef.TEST)
    np.testing.assert_array_equal(again.params["a"][0].data, net.params["a"][0].data)
    with pytest.raises(netdef.LayerSetupError, match="loss_weight"):
        netdef.Net(BRANCHY.replace("loss_weight: 0.5", "loss_weight: 0.5 loss_weight: 1"))


def test_blob_size_overflow_refused_before_allocating():
    text = 'layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 1000000 dim: 1000000 dim: 1000000 } } }'
    with pytest.raises(netdef.ShapeError, match="GiB|overflow") as e:
        netdef.Net(text)
    assert "data" in str(e.value) and "x" in str(e.value)
    with pytest.raises(netdef.ShapeError, match="overflow"):
        netdef.Blob((2**40, 2**40))


def test_blob_basics():
    b = netdef.Blob((2, 3, 4, 5))
    assert b.count == 120 and (b.num, b.channels, b.height, b.width) == (2, 3, 4, 5)
    b.data[...] = 1
    b.reshape(4, 3, 2, 5)  # same count: memory reused, contents kept
    assert b.data.sum() == 120
    b.reshape(1, 2)
    assert b.shape == (1, 2) and b.diff.shape == (1, 2)
    with pytest.raises(netdef.ShapeError, match="negative"):
        b.reshape(-1, 2)
    with pytest.raises(netdef.ShapeError, match="reshape"):
        b.data = np.ones((3, 3))
