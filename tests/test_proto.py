"""Prototxt reading and writing, legacy upgrades and NetState filtering."""
import glob
import os

import pytest
from google.protobuf import text_format

import netdef
from netdef import netdef_pb2 as pb
from netdef import proto


def test_syntax_error_gives_file_line_and_column(tmp_path):
    p = tmp_path / "bad.prototxt"
    p.write_text('name: "x"\nlayer {\n  name: "a"\n  type: "ReLU"\n  bottom "b"\n}\n')
    with pytest.raises(netdef.ParseError) as e:
        netdef.Net(str(p))
    assert e.value.file == str(p) and e.value.line == 5 and e.value.column
    assert f"{p}:5:" in str(e.value)


def test_unknown_field_is_an_error_naming_it(tmp_path):
    p = tmp_path / "u.prototxt"
    p.write_text('layer {\n  name: "r"\n  type: "ReLU"\n  relu_param { negative_slop: 0.1 }\n}\n')
    with pytest.raises(netdef.ParseError, match=r"u.prototxt:4:.*negative_slop"):
        netdef.Net(str(p))


def test_wrong_enum_name_is_an_error(tmp_path):
    with pytest.raises(netdef.ParseError, match="SUMM"):
        netdef.Net('layer { name: "e" type: "Eltwise" eltwise_param { operation: SUMM } }')


def test_missing_file_is_named():
    with pytest.raises(netdef.ParseError, match="no/such.prototxt"):
        netdef.Net("no/such.prototxt")


def test_unknown_layer_type_lists_known_types(tmp_path):
    p = tmp_path / "t.prototxt"
    p.write_text('layer {\n name: "data" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
                 'layer {\n  name: "weird"\n  type: "Frobnicate" bottom: "x" top: "y" }\n')
    with pytest.raises(netdef.LayerSetupError) as e:
        netdef.Net(str(p))
    msg = str(e.value)
    assert "Frobnicate" in msg and "weird" in msg and "ReLU" in msg and "InnerProduct" in msg
    assert f"{p}:4" in msg  # the line of the layer's name


def test_every_published_fcn_prototxt_parses_and_round_trips(fcn_reference):
    files = sorted(glob.glob(os.path.join(fcn_reference, "*", "*.prototxt")))
    assert len(files) >= 10
    for f in files:
        msg_type = pb.SolverParameter if os.path.basename(f) == "solver.prototxt" else pb.NetParameter
        msg, _ = proto.read_text(f, msg_type)
        again = proto.parse_text(text_format.MessageToString(msg), msg_type())
        assert again == msg, f
        if msg_type is pb.NetParameter:
            assert len(msg.layer) > 20


def test_v1_layers_upgrade_to_v2():
    text = """
    name: "old"
    input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
    layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
             blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
             convolution_param { num_output: 4 kernel_size: 3 } }
    layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
    layers { name: "loss" type: SOFTMAX_LOSS bottom: "conv" bottom: "label" top: "loss"
             include { phase: TRAIN } }
    """
    net, _ = proto.read_net_text(text)
    assert [l.type for l in net.layer] == ["Input", "Convolution", "ReLU", "SoftmaxWithLoss"]
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 3, 8, 8]
    conv = net.layer[1]
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    assert conv.convolution_param.num_output == 4
    assert net.layer[3].include[0].phase == pb.TRAIN
    assert not net.layers and not net.input


def test_input_shape_upgrade_and_errors():
    net, _ = proto.read_net_text('input: "a" input: "b" input_shape { dim: 2 } input_shape { dim: 3 dim: 4 }')
    assert [list(s.dim) for s in net.layer[0].input_param.shape] == [[2], [3, 4]]
    with pytest.raises(netdef.ParseError, match="input_dim"):
        proto.read_net_text('input: "a" input_dim: 1 input_dim: 2')


def test_v0_format_is_upgraded_when_read():
    net, _ = proto.read_net_text('input: "data" input_dim: 1 input_dim: 1 input_dim: 5 input_dim: 5 '
                                 'layers { bottom: "data" top: "c" layer { name: "conv1" type: "conv" '
                                 'num_output: 2 kernelsize: 3 } }')
    assert [(l.name, l.type) for l in net.layer] == [("input", "Input"), ("conv1", "Convolution")]
    assert net.layer[1].convolution_param.num_output == 2
    with pytest.raises(netdef.ParseError, match="unknown V0 layer type 'convolution'"):
        proto.read_net_text('layers { layer { name: "conv1" type: "convolution" } }')


RULES = """
layer { name: "always" type: "Input" top: "a" input_param { shape { dim: 1 } } }
layer { name: "train" type: "ReLU" bottom: "a" top: "t" include { phase: TRAIN } }
layer { name: "test" type: "ReLU" bottom: "a" top: "u" include { phase: TEST } }
layer { name: "not_test" type: "ReLU" bottom: "a" top: "v" exclude { phase: TEST } }
layer { name: "lvl" type: "ReLU" bottom: "a" top: "w" include { min_level: 2 max_level: 3 } }
layer { name: "stage" type: "ReLU" bottom: "a" top: "x" include { stage: "deploy" } }
layer { name: "notstage" type: "ReLU" bottom: "a" top: "y" include { not_stage: "deploy" } }
layer { name: "either" type: "ReLU" bottom: "a" top: "z" include { phase: TRAIN } include { stage: "deploy" } }
"""


@pytest.mark.parametrize("phase,level,stages,expected", [
    (pb.TRAIN, 0, [], ["always", "train", "not_test", "notstage", "either"]),
    (pb.TEST, 0, [], ["always", "test", "notstage"]),
    (pb.TEST, 2, ["deploy"], ["always", "test", "lvl", "stage", "either"]),
    (pb.TRAIN, 4, ["deploy"], ["always", "train", "not_test", "stage", "either"]),
])
def test_netstate_filtering(phase, level, stages, expected):
    net = netdef.Net(RULES, phase, level=level, stages=stages)
    assert [n for n in net.layer_dict if not n.endswith("_split")] == expected


def test_include_and_exclude_together_is_an_error():
    with pytest.raises(netdef.ParseError, match="include or exclude"):
        netdef.Net('layer { name: "x" type: "Input" top: "a" include { phase: TRAIN } exclude { phase: TEST } }')


def test_write_text_round_trip(tmp_path):
    net, _ = proto.read_net_text(RULES)
    proto.write_text(net, tmp_path / "out.prototxt")
    again, _ = proto.read_net_text(str(tmp_path / "out.prototxt"))
    assert again == net
