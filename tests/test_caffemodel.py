"""Caffemodel I/O: netdef's own files round-trip bit-exactly, and files encoded here byte by
byte from Caffe's wire format (V2 and legacy V1 layers) load with the right shapes and values."""
import os
import subprocess
import sys

import numpy as np
import pytest

import netdef
from netdef import netdef_pb2 as pb
from netdef import proto
from wire import f32, ld, packed_f32, packed_f64, packed_varint, v

NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "relu" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
        inner_product_param { num_output: 2 bias_term: false weight_filler { type: "xavier" } } }
"""


def test_netdef_caffemodel_round_trips_bit_exactly(tmp_path):
    netdef.set_random_seed(3)
    a = netdef.Net(NET)
    path = tmp_path / "tiny.caffemodel"
    a.save(path)
    netdef.set_random_seed(99)
    b = netdef.Net(NET, weights=str(path))
    for name in a.params:
        for pa, pb_ in zip(a.params[name], b.params[name]):
            assert pa.data.tobytes() == pb_.data.tobytes()
    # float64 nets write double_data and read it back exactly too
    c = netdef.Net(NET, dtype=np.float64)
    c.save(tmp_path / "d.caffemodel")
    msg = proto.read_caffemodel(tmp_path / "d.caffemodel")
    assert len(msg.layer[1].blobs[0].double_data) == 12
    d = netdef.Net(NET, dtype=np.float64, weights=str(tmp_path / "d.caffemodel"))
    assert d.params["fc1"][0].data.tobytes() == c.params["fc1"][0].data.tobytes()


def _blob_v2(shape, values, packed=True):
    body = ld(7, packed_varint(1, shape))
    body += packed_f32(5, values) if packed else b"".join(f32(5, x) for x in values)
    return body


def test_caffemodel_from_raw_wire_bytes(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    bias = np.array([1.5, -2, 0.25, 8], dtype=np.float32)
    w2 = np.arange(8, dtype=np.float32).reshape(2, 4) - 3
    layer1 = ld(1, "fc1") + ld(2, "InnerProduct") + ld(7, _blob_v2([4, 3], w.ravel())) \
        + ld(7, _blob_v2([4], bias, packed=False))
    layer2 = ld(1, "fc2") + ld(2, "InnerProduct") + ld(7, _blob_v2([2, 4], w2.ravel()))
    extra = ld(1, "not_in_net") + ld(2, "InnerProduct") + ld(7, _blob_v2([1], [1.0]))
    data = ld(1, "caffe-written") + ld(100, layer1) + ld(100, extra) + ld(100, layer2)
    path = tmp_path / "raw.caffemodel"
    path.write_bytes(data)
    net = netdef.Net(NET)
    ignored = net.copy_from(str(path))
    assert ignored == ["not_in_net"]
    np.testing.assert_array_equal(net.params["fc1"][0].data, w)
    np.testing.assert_array_equal(net.params["fc1"][1].data, bias)
    np.testing.assert_array_equal(net.params["fc2"][0].data, w2)


def test_legacy_v1_caffemodel_with_4d_blobs(tmp_path):
    # V1LayerParameter: name 4, type 5 (INNER_PRODUCT = 14), blobs 6; BlobProto legacy num/channels/
    # height/width 1-4 and double_data 8.
    w = np.linspace(-1, 1, 12).reshape(4, 3)
    bias = np.array([0.5, 1, 2, 4])
    blob_w = v(1, 1) + v(2, 1) + v(3, 4) + v(4, 3) + packed_f64(8, w.ravel())
    blob_b = v(1, 1) + v(2, 1) + v(3, 1) + v(4, 4) + packed_f32(5, bias)
    v1 = ld(4, "fc1") + v(5, 14) + ld(6, blob_w) + ld(6, blob_b) + f32(7, 1.0) + f32(7, 2.0)
    relu = ld(4, "relu") + v(5, 18)
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(ld(1, "old") + ld(2, v1) + ld(2, relu))
    msg = proto.read_caffemodel(path)
    assert [l.type for l in msg.layer] == ["InnerProduct", "ReLU"]
    assert [p.lr_mult for p in msg.layer[0].param] == [1.0, 2.0]
    net = netdef.Net(NET)
    net.copy_from(str(path))
    np.testing.assert_allclose(net.params["fc1"][0].data, w, rtol=1e-7)
    np.testing.assert_array_equal(net.params["fc1"][1].data, bias)


def test_shape_mismatch_names_layer_and_both_shapes(tmp_path):
    layer = ld(1, "fc1") + ld(2, "InnerProduct") + ld(7, _blob_v2([3, 4], np.zeros(12))) \
        + ld(7, _blob_v2([4], np.zeros(4)))
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(ld(100, layer))
    with pytest.raises(netdef.ShapeError, match=r"fc1.*\(4, 3\).*\(3, 4\)"):
        netdef.Net(NET, weights=str(path))


def test_data_length_disagreeing_with_shape(tmp_path):
    layer = ld(1, "fc1") + ld(2, "InnerProduct") + ld(7, _blob_v2([4, 3], np.zeros(11))) \
        + ld(7, _blob_v2([4], np.zeros(4)))
    path = tmp_path / "short.caffemodel"
    path.write_bytes(ld(100, layer))
    with pytest.raises(netdef.ParseError, match=r"fc1.*\(4, 3\).*12 values.*holds 11"):
        netdef.Net(NET, weights=str(path))


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"),
    (None, "truncated|corrupt|not a valid"),
    (b"\x0a\x05ab", "truncated|corrupt|not a valid"),
    (b"hello world, this is not protobuf", "not a valid|no layers"),
    (ld(1, "just a name"), "no layers"),
])
def test_bad_caffemodel_files(tmp_path, content, match):
    path = tmp_path / "bad.caffemodel"
    if content is None:  # a real file cut in half
        netdef.Net(NET).save(path)
        content = path.read_bytes()[: len(path.read_bytes()) // 2]
    path.write_bytes(content)
    with pytest.raises(netdef.ParseError, match=match) as e:
        netdef.Net(NET, weights=str(path))
    assert str(path) in str(e.value)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(netdef.ParseError, match="nothere.caffemodel"):
        netdef.Net(NET, weights=str(tmp_path / "nothere.caffemodel"))


def test_saved_caffemodel_loads_in_a_fresh_process(tmp_path):
    netdef.set_random_seed(5)
    net = netdef.Net(NET)
    net.save(tmp_path / "m.caffemodel")
    np.save(tmp_path / "w.npy", net.params["fc2"][0].data)
    code = ("import netdef, numpy as np, sys; n = netdef.Net(sys.argv[1], weights=sys.argv[2]);"
            "assert (n.params['fc2'][0].data == np.load(sys.argv[3])).all()")
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(NET)
    subprocess.run([sys.executable, "-c", code, str(net_file), str(tmp_path / "m.caffemodel"),
                    str(tmp_path / "w.npy")], check=True, cwd=os.path.dirname(__file__))


def test_written_caffemodel_uses_caffe_field_numbers(tmp_path):
    netdef.set_random_seed(1)
    net = netdef.Net(NET)
    net.save(tmp_path / "m.caffemodel")
    raw = (tmp_path / "m.caffemodel").read_bytes()
    # NetParameter.name (1) first, then layers under field 100 (key 0xa2 0x06)
    assert raw.startswith(ld(1, "tiny"))
    assert b"\xa2\x06" in raw
    msg = pb.NetParameter.FromString(raw)
    fc1 = [l for l in msg.layer if l.name == "fc1"][0]
    assert list(fc1.blobs[0].shape.dim) == [4, 3]
    np.testing.assert_array_equal(np.array(fc1.blobs[0].data, np.float32).reshape(4, 3), net.params["fc1"][0].data)
