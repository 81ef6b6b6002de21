"""netdef.graph's passes on small NetParameters: Split insertion (a top read twice, a
loss-weighted top read again), NetState filtering (phase, stage, not_stage, level), and the
upgrade of a V1 net (layers {} with enum types, blobs_lr, weight_decay) and of net inputs."""
import pytest
from google.protobuf import text_format

from netdef import netdef_pb2 as pb
from netdef import graph
from netdef.errors import ParseError


def net(text):
    return text_format.Parse(text, pb.NetParameter())


def layer_names(n):
    return [l.name for l in n.layer]


def test_a_top_read_twice_goes_through_a_split():
    n = graph.insert_splits(net("""
        layer { name: "in" type: "Input" top: "x" }
        layer { name: "a" type: "ReLU" bottom: "x" top: "a" }
        layer { name: "b" type: "Sigmoid" bottom: "x" top: "b" }"""))
    assert layer_names(n) == ["in", graph.split_layer_name("x", "in", 0), "a", "b"]
    split = n.layer[1]
    assert split.type == "Split" and list(split.bottom) == ["x"]
    assert list(split.top) == [graph.split_blob_name("x", "in", 0, k) for k in (0, 1)] \
        == ["x_in_0_split_0", "x_in_0_split_1"]
    assert list(n.layer[2].bottom) == ["x_in_0_split_0"] and list(n.layer[3].bottom) == ["x_in_0_split_1"]


def test_a_top_read_once_gets_no_split():
    text = """layer { name: "in" type: "Input" top: "x" }
              layer { name: "a" type: "ReLU" bottom: "x" top: "a" }"""
    assert graph.insert_splits(net(text)) == net(text)


def test_a_loss_weighted_top_read_again_keeps_its_weight_on_the_splits_last_top():
    n = graph.insert_splits(net("""
        layer { name: "in" type: "Input" top: "x" }
        layer { name: "l" type: "EuclideanLoss" bottom: "x" bottom: "x" top: "loss" loss_weight: 2 }
        layer { name: "p" type: "Power" bottom: "loss" top: "p" }"""))
    split = {l.name: l for l in n.layer}
    sp = split["loss_l_0_split"]
    assert list(sp.top) == ["loss_l_0_split_0", "loss_l_0_split_1"]
    assert list(sp.loss_weight) == [0, 2]
    assert list(split["l"].loss_weight) == [0]  # moved onto the split
    assert list(split["p"].bottom) == ["loss_l_0_split_0"]
    # x is read twice by the same layer: a split of two tops too
    assert list(split["l"].bottom) == ["x_in_0_split_0", "x_in_0_split_1"]


RULES = """
    layer { name: "train_only" type: "ReLU" include { phase: TRAIN } }
    layer { name: "test_only" type: "ReLU" include { phase: TEST } }
    layer { name: "not_test" type: "ReLU" exclude { phase: TEST } }
    layer { name: "deploy" type: "ReLU" include { stage: "deploy" } }
    layer { name: "not_deploy" type: "ReLU" include { not_stage: "deploy" } }
    layer { name: "level2" type: "ReLU" include { min_level: 2 } }
    layer { name: "upto1" type: "ReLU" include { max_level: 1 } }
    layer { name: "either" type: "ReLU" include { phase: TEST } include { stage: "x" } }
    layer { name: "always" type: "ReLU" }"""


@pytest.mark.parametrize("phase, stages, level, kept", [
    (pb.TRAIN, [], 0, ["train_only", "not_test", "not_deploy", "upto1", "always"]),
    (pb.TEST, [], 0, ["test_only", "not_deploy", "upto1", "either", "always"]),
    (pb.TRAIN, ["deploy"], 2, ["train_only", "not_test", "deploy", "level2", "always"]),
    (pb.TRAIN, ["x"], 1, ["train_only", "not_test", "not_deploy", "upto1", "either", "always"]),
])
def test_netstate_rules(phase, stages, level, kept):
    state = pb.NetState(phase=phase, level=level, stage=stages)
    out = graph.filter_net(net(RULES), state)
    assert layer_names(out) == kept
    assert out.state == state


def test_include_and_exclude_together_is_an_error():
    with pytest.raises(ParseError, match="include or exclude rules, not both"):
        graph.filter_net(net('layer { name: "a" include { phase: TRAIN } exclude { phase: TEST } }'),
                         pb.NetState(), "n.prototxt")


def test_a_v1_net_is_upgraded():
    n = graph.upgrade_net(net("""
        name: "old"
        layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" blobs_lr: 1 blobs_lr: 2
                 weight_decay: 1 weight_decay: 0 param: "w"
                 convolution_param { num_output: 4 kernel_size: 3 } }
        layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
        layers { name: "loss" type: SOFTMAX_LOSS bottom: "conv" bottom: "label" top: "loss"
                 include { phase: TRAIN } loss_weight: 0.5 }"""))
    assert not n.layers and n.name == "old"
    assert [(l.name, l.type) for l in n.layer] == [("conv", "Convolution"), ("relu", "ReLU"),
                                                    ("loss", "SoftmaxWithLoss")]
    conv = n.layer[0]
    assert [(p.name, p.lr_mult, p.decay_mult) for p in conv.param] == [("w", 1, 1), ("", 2, 0)]
    assert conv.convolution_param.num_output == 4 and list(conv.bottom) == ["data"]
    loss = n.layer[2]
    assert list(loss.loss_weight) == [0.5] and loss.include[0].phase == pb.TRAIN


def test_v1_and_v2_layers_together_are_refused():
    with pytest.raises(ParseError, match="both 'layer' and legacy 'layers'"):
        graph.upgrade_net(net('layer { name: "a" } layers { name: "b" }'))


def test_net_inputs_become_an_input_layer():
    n = graph.upgrade_net(net('input: "x" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4 '
                              'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }'))
    assert layer_names(n) == ["input", "r"] and not n.input and not n.input_dim
    assert list(n.layer[0].input_param.shape[0].dim) == [1, 2, 3, 4]


def test_proto_keeps_the_old_names_of_the_passes_it_uses():
    from netdef import proto
    assert proto.filter_net is graph.filter_net and proto.upgrade_net is graph.upgrade_net
