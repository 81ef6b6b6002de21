"""Hand-made hostile inputs: each is one thing the fuzzers found or must never find."""
import os

import pytest

import fuzzlib
import netdef
import wire
from netdef import proto
from netdef.blob import set_max_blob_bytes

MLP = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "mlp.prototxt")


@pytest.mark.parametrize("depth", [100, 1000, 10000])
@pytest.mark.parametrize("field", ["layer", "a", "input_param"])
def test_deep_nesting_is_a_parse_error(depth, field):
    text = "layer { " + f"{field} {{ " * depth + "}" * (depth + 1)
    with pytest.raises(netdef.ParseError) as e:
        netdef.Net(text)
    assert len(str(e.value)) < 600  # the offending line is quoted only around the column


def test_error_on_a_megabyte_line_quotes_only_the_column():
    text = 'name: "x" ' + "layer { name: 'a' } " * 50000 + " layer { bogus: 1 }"
    with pytest.raises(netdef.ParseError, match="bogus") as e:
        netdef.Net(text)
    assert len(str(e.value)) < 600


def test_non_utf8_string_in_a_caffemodel_is_a_parse_error(tmp_path):
    layer = wire.ld(1, b"fc\xff1") + wire.ld(2, "InnerProduct")
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(wire.ld(100, layer))
    with pytest.raises(netdef.ParseError, match=r"layer\[0\]\.name is not UTF-8"):
        netdef.Net(MLP).copy_from(str(path))
    v1 = wire.ld(4, b"x") + wire.ld(3, b"\xc3")  # V1 layer with a broken top name
    path.write_bytes(wire.ld(2, v1))
    with pytest.raises(netdef.ParseError, match=r"layers\[0\]\.top is not UTF-8"):
        proto.read_caffemodel(str(path))


def test_nul_in_a_path_is_a_parse_error():
    with pytest.raises(netdef.ParseError, match="null"):
        netdef.Net("model\x00.prototxt")
    with pytest.raises(netdef.ParseError, match="null"):
        netdef.Net(MLP).copy_from("w\x00.caffemodel")


@pytest.mark.parametrize("dims", [[100000] * 3, [2**31] * 2, [2**62, 2**62], [0] * 40])
def test_input_shapes_beyond_memory_or_axes_are_refused(dims):
    shape = " ".join(f"dim: {d}" for d in dims)
    text = f'layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ {shape} }} }} }}'
    with pytest.raises(netdef.ShapeError, match="layer 'in'") as e:
        netdef.Net(text)
    assert len(str(e.value)) < 600


def test_blob_budget_from_the_environment(monkeypatch):
    text = 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1024 dim: 1024 } } }'
    netdef.Net(text)  # 4 MiB
    monkeypatch.setenv("NETDEF_MAX_BLOB_BYTES", str(1 << 20))
    with pytest.raises(netdef.ShapeError, match="allowed per blob"):
        netdef.Net(text)
    set_max_blob_bytes(8 << 20)  # an explicit setting wins over the environment
    try:
        netdef.Net(text)
    finally:
        set_max_blob_bytes(None)
    monkeypatch.setenv("NETDEF_MAX_BLOB_BYTES", "lots")
    with pytest.raises(netdef.NetdefError, match="NETDEF_MAX_BLOB_BYTES"):
        netdef.Net(text)


def test_a_layer_whose_params_exceed_the_budget_is_refused_before_filling():
    set_max_blob_bytes(1 << 20)
    try:
        text = open(MLP).read().replace("num_output: 128", "num_output: 100000")
        with pytest.raises(netdef.ShapeError, match="fc1"):
            netdef.Net(text)
    finally:
        set_max_blob_bytes(None)


def test_legacy_blob_with_negative_dims_in_a_caffemodel(tmp_path):
    net = netdef.Net(MLP)
    msg = net.to_proto()
    bp = next(lp for lp in msg.layer if lp.name == "fc2").blobs[1]
    bp.ClearField("shape")
    bp.num, bp.channels, bp.height, bp.width = 1, 1, -1, -10
    path = tmp_path / "neg.caffemodel"
    path.write_bytes(msg.SerializeToString())
    with pytest.raises(netdef.NetdefError, match="fc2"):
        net.copy_from(str(path))


def test_mutators_are_deterministic():
    text = open(MLP).read()
    a = fuzzlib.mutate_text(text, fuzzlib.rng_for("t", "s", 3))
    b = fuzzlib.mutate_text(text, fuzzlib.rng_for("t", "s", 3))
    assert a == b
    data = netdef.Net(MLP).to_proto().SerializeToString()
    assert fuzzlib.encode_fields(fuzzlib.parse_fields(data)) == data


def test_a_file_beyond_protobufs_2_gib_is_refused_unread(tmp_path):
    path = tmp_path / "huge.caffemodel"
    with open(path, "wb") as f:  # sparse: takes no disk space
        f.truncate(2**31 + 10)
    with pytest.raises(netdef.ParseError, match="2 GiB"):
        netdef.Net(MLP).copy_from(str(path))
