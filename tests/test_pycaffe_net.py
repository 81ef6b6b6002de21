"""Net's pycaffe surface, checked against pycaffe's documented behaviour (python/caffe/pycaffe.py,
_caffe.cpp): forward / backward return values with start / end / blobs / diffs, forward_all,
share_with, save_hdf5 / load_hdf5 in Caffe's HDF5 layout, and the attributes scripts read."""
from collections import OrderedDict

import numpy as np
import pytest

import netdef

NET = """
name: "p"
force_backward: true
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        param { name: "shared_w" } inner_product_param { num_output: 4 weight_filler { type: "gaussian" } } }
layer { name: "ip3" type: "InnerProduct" bottom: "ip2" top: "ip3"
        param { name: "shared_w" } inner_product_param { num_output: 4 weight_filler { type: "gaussian" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip3" bottom: "label" top: "loss" }
"""


def make(dtype=np.float64, phase=netdef.TRAIN, text=NET):
    net = netdef.Net(text, phase, dtype=dtype)
    rng = np.random.default_rng(3)
    net.blobs["data"].data[...] = rng.standard_normal((2, 3))
    net.blobs["label"].data[...] = [1, 3]
    return net


def test_attributes_as_pycaffe():
    net = make()
    assert net._layer_names == ["data", "ip1", "relu", "ip2", "ip3", "loss"]
    assert net._blob_names == ["data", "label", "ip1", "ip2", "ip3", "loss"]
    assert list(net.blobs) == net._blob_names
    assert isinstance(net.layer_dict, OrderedDict) and list(net.layer_dict) == net._layer_names
    assert net.layer_dict["ip1"] is net.layers[1] and net.layers[1].type == "InnerProduct"
    assert net.top_names["relu"] == ["ip1"] and net.bottom_names["loss"] == ["ip3", "label"]
    assert net.inputs == ["data", "label"] and net.outputs == ["loss"]
    assert net.blob_loss_weights == OrderedDict(
        [("data", 0.0), ("label", 0.0), ("ip1", 0.0), ("ip2", 0.0), ("ip3", 0.0), ("loss", 1.0)])
    # params: layer name -> its blobs, only layers with params, in layer order
    assert isinstance(net.params, OrderedDict) and list(net.params) == ["ip1", "ip2", "ip3"]
    assert [b.shape for b in net.params["ip1"]] == [(4, 3), (4,)]
    assert net.params["ip2"][0] is net.params["ip3"][0]  # the named param is one blob
    assert net.params["ip1"] is net.layers[1].blobs
    # layers[i].reshape / setup are the Layer contract's
    relu = net.layers[2]
    relu.reshape([net.blobs["ip1"]], [net.blobs["ip1"]])


def test_forward_returns_end_tops_and_extra_blobs():
    net = make()
    out = net.forward()
    assert set(out) == {"loss"}
    out = net.forward(end="ip2", blobs=["ip1"])
    assert set(out) == {"ip2", "ip1"}
    expected = np.maximum(net.blobs["data"].data @ net.params["ip1"][0].data.T + net.params["ip1"][1].data, 0)
    np.testing.assert_allclose(out["ip1"], expected)
    out = net.forward(start="ip3", end="ip3")
    assert set(out) == {"ip3"}
    with pytest.raises(netdef.NetdefError, match="nope"):
        net.forward(blobs=["nope"])
    with pytest.raises(netdef.NetdefError, match="no layer named 'x'"):
        net.forward(end="x")


def test_backward_returns_end_bottoms_and_extra_diffs():
    net = make()
    net.forward()
    grads = net.backward()
    assert set(grads) == {"data", "label"}
    # d loss / d data by hand: softmax gradient back through ip3, ip2 (shared W), relu, ip1
    W1, b1 = net.params["ip1"][0].data, net.params["ip1"][1].data
    W, b2, b3 = net.params["ip2"][0].data, net.params["ip2"][1].data, net.params["ip3"][1].data
    x, label = net.blobs["data"].data, net.blobs["label"].data.astype(int)
    h1 = np.maximum(x @ W1.T + b1, 0)
    s = (h1 @ W.T + b2) @ W.T + b3
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = p.copy()
    g[np.arange(2), label] -= 1
    g /= 2
    gx = (((g @ W) @ W) * (h1 > 0)) @ W1
    np.testing.assert_allclose(grads["data"], gx, rtol=1e-10)
    grads = net.backward(end="ip2", diffs=["ip1"])
    assert set(grads) == {"ip1"}  # the bottom of ip2, which is ip1, and the extra 'ip1'
    np.testing.assert_allclose(grads["ip1"], (g @ W) @ W, rtol=1e-10)
    grads = net.backward(start="ip3", end="ip3")
    assert set(grads) == {"ip2"}
    np.testing.assert_allclose(grads["ip2"], g @ W, rtol=1e-10)


def test_backward_takes_output_diffs():
    net = make(text=NET.replace('layer { name: "loss"', '# layer { name: "loss"'))
    net.forward()
    top = np.arange(8.0).reshape(2, 4)
    grads = net.backward(ip3=top)
    W = net.params["ip2"][0].data
    h1 = net.blobs["ip1"].data
    W1 = net.params["ip1"][0].data
    np.testing.assert_allclose(grads["data"], (((top @ W) @ W) * (h1 > 0)) @ W1, rtol=1e-10)


def test_forward_all_batches_and_trims_padding():
    net = make(phase=netdef.TEST, text=NET.replace('layer { name: "loss"', '# layer { name: "loss"'))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3))
    out = net.forward_all(data=x, label=np.zeros(5), blobs=["ip1"])
    assert out["ip3"].shape == (5, 4) and out["ip1"].shape == (5, 4)
    W1, b1 = net.params["ip1"][0].data, net.params["ip1"][1].data
    W, b2, b3 = net.params["ip2"][0].data, net.params["ip2"][1].data, net.params["ip3"][1].data
    expected = (np.maximum(x @ W1.T + b1, 0) @ W.T + b2) @ W.T + b3
    np.testing.assert_allclose(out["ip3"], expected, rtol=1e-10)
    diffs = net.backward_all(ip3=np.ones((5, 4)))
    assert diffs["data"].shape == (5, 3)


def test_share_with_shares_data_not_diffs():
    train = make()
    test = make(phase=netdef.TEST)
    for blobs in test.params.values():
        for b in blobs:
            b.data[...] = 0
    test.share_with(train)
    for name in train.params:
        for a, b in zip(train.params[name], test.params[name]):
            np.testing.assert_array_equal(a.data, b.data)
    train.params["ip1"][0].data[0, 0] = 42.0
    assert test.params["ip1"][0].data[0, 0] == 42.0
    train.forward()
    train.backward()
    assert not test.params["ip1"][0].diff.any()
    np.testing.assert_allclose(test.forward()["loss"], train.forward()["loss"])


def test_share_with_refuses_mismatched_shapes():
    other = netdef.Net(NET.replace("dim: 2 dim: 3", "dim: 2 dim: 6"), netdef.TEST)
    with pytest.raises(netdef.ShapeError, match="ip1"):
        make(np.float32).share_with(other)


def test_hdf5_round_trip_in_caffes_layout(tmp_path):
    h5py = pytest.importorskip("h5py")
    net = make()
    net.forward()
    net.backward()
    path = tmp_path / "m.caffemodel.h5"
    net.save_hdf5(str(path), write_diff=True)
    with h5py.File(path, "r") as f:
        assert list(f) == ["data", "diff"]
        assert set(f["data"]) == set(net._layer_names)  # a group per layer, params or not
        assert sorted(f["data/ip1"]) == ["0", "1"]
        np.testing.assert_array_equal(f["data/ip1/0"][()], net.params["ip1"][0].data)
        np.testing.assert_array_equal(f["diff/ip1/1"][()], net.params["ip1"][1].diff)
        assert sorted(f["data/ip3"]) == ["1"]  # the shared weight is written by its owner, ip2
        assert len(f["data/relu"]) == 0
    other = make()
    for blobs in other.params.values():
        for b in blobs:
            b.data[...] = 0
    other.load_hdf5(str(path))
    for name in net.params:
        for a, b in zip(net.params[name], other.params[name]):
            np.testing.assert_array_equal(a.data, b.data)
    third = netdef.Net(NET, netdef.TEST, dtype=np.float64, weights=str(path))  # copy_from takes .h5
    np.testing.assert_array_equal(third.params["ip2"][0].data, net.params["ip2"][0].data)


def test_load_hdf5_errors_name_file_and_layer(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/ip1/0", data=np.zeros((5, 3)))
        f.create_dataset("data/gone/0", data=np.zeros(1))
    with pytest.raises(netdef.ShapeError, match=r"ip1.*\(4, 3\).*\(5, 3\)"):
        make().load_hdf5(str(path))
    with h5py.File(tmp_path / "no.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(1))
    with pytest.raises(netdef.NetdefError, match="no group 'data'"):
        make().load_hdf5(str(tmp_path / "no.h5"))
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(netdef.NetdefError, match="text.h5"):
        make().load_hdf5(str(tmp_path / "text.h5"))


def test_hdf5_without_h5py_is_a_clear_error(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "h5py":
            raise ImportError("no h5py")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(netdef.NetdefError, match=r"netdef\[hdf5\]"):
        make().save_hdf5(str(tmp_path / "x.h5"))


def test_private_forward_backward_by_index():
    net = make()
    loss = net._forward(0, len(net.layers) - 1)
    assert loss == pytest.approx(float(net.blobs["loss"].data))
    expected = net.backward()["data"].copy()
    for blob in net.blobs.values():
        blob.diff[...] = 0
    net._backward(len(net.layers) - 1, 0)
    np.testing.assert_allclose(net.blobs["data"].diff, expected)
