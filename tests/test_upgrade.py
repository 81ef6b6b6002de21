"""Legacy nets and solvers to today's format: graph.upgrade_net on V0 nets (flat fields → *_param,
padding layers folded into conv/pool pad) and V1 data layers (transformation fields →
transform_param), the same upgrade when a net is loaded, and the `netdef upgrade-net` /
`upgrade-solver` commands on text and binary files, with errors naming the file and line."""
import numpy as np
import pytest
from google.protobuf import text_format

import netdef
from netdef import graph, proto
from netdef import netdef_pb2 as pb
from netdef.cli import main
from netdef.errors import ParseError

# A V0 net in the style of Caffe's 2013 imagenet.prototxt, every V0 field family used once.
V0_NET = """name: "tiny_v0"
input: "data"
input_dim: 2
input_dim: 3
input_dim: 11
input_dim: 11
layers {
  layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 stride: 2 biasterm: true
          weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "constant" value: 0.1 }
          blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 }
  bottom: "data" top: "conv1" }
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers { layer { name: "pad1" type: "padding" pad: 1 } bottom: "conv1" top: "pad1" }
layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 3 stride: 1 } bottom: "pad1" top: "pool1" }
layers { layer { name: "norm1" type: "lrn" local_size: 3 alpha: 0.001 beta: 0.5 k: 2 } bottom: "pool1" top: "norm1" }
layers { layer { name: "pad2" type: "padding" pad: 2 } bottom: "norm1" top: "pad2" }
layers { layer { name: "conv2" type: "conv" num_output: 4 kernelsize: 5 group: 2
                 weight_filler { type: "gaussian" std: 0.1 } } bottom: "pad2" top: "conv2" }
layers { layer { name: "fc" type: "innerproduct" num_output: 3 biasterm: false
                 weight_filler { type: "xavier" } } bottom: "conv2" top: "fc" }
layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.25 } bottom: "fc" top: "fc" }
layers { layer { name: "prob" type: "softmax" } bottom: "fc" top: "prob" }
"""

# What Caffe's UpgradeV0Net, UpgradeV1Net and the input upgrade make of it.
EXPECTED = """name: "tiny_v0"
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 11 dim: 11 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 4 bias_term: true kernel_size: 3 stride: 2
                            weight_filler { type: "gaussian" std: 0.1 }
                            bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: AVE kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
        lrn_param { local_size: 3 alpha: 0.001 beta: 0.5 k: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "norm1" top: "conv2"
        convolution_param { num_output: 4 kernel_size: 5 group: 2 pad: 2
                            weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "fc" type: "InnerProduct" bottom: "conv2" top: "fc"
        inner_product_param { num_output: 3 bias_term: false weight_filler { type: "xavier" } } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.25 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def parse(text):
    return text_format.Parse(text, pb.NetParameter())


def test_v0_net_upgrades_as_caffe_does():
    net = parse(V0_NET)
    assert graph.net_needs_upgrade(net) == ["V0", "V1", "input"]
    assert graph.upgrade_net(net) == parse(EXPECTED)
    assert graph.net_needs_upgrade(net) == []


def test_v0_data_layers_fields():
    net = graph.upgrade_net(parse("""
        layers { layer { name: "d" type: "data" source: "db" batchsize: 8 rand_skip: 3 scale: 0.5
                         meanfile: "m.binaryproto" cropsize: 5 mirror: true } top: "x" top: "y" }
        layers { layer { name: "w" type: "window_data" source: "w.txt" batchsize: 4
                         det_fg_threshold: 0.6 det_bg_threshold: 0.4 det_fg_fraction: 0.5
                         det_context_pad: 2 det_crop_mode: "square" } top: "a" top: "b" }
        layers { layer { name: "i" type: "images" source: "l.txt" new_height: 4 new_width: 6
                         shuffle_images: true } top: "c" top: "e" }
        layers { layer { name: "o" type: "hdf5_output" hdf5_output_param { file_name: "o.h5" } }
                 bottom: "x" bottom: "y" }
        layers { layer { name: "cat" type: "concat" concat_dim: 0 } bottom: "x" bottom: "a" top: "z" }"""))
    d, w, i, o, cat = net.layer
    assert d.type == "Data" and (d.data_param.source, d.data_param.batch_size, d.data_param.rand_skip) == ("db", 8, 3)
    assert (d.transform_param.scale, d.transform_param.mean_file, d.transform_param.crop_size,
            d.transform_param.mirror) == (0.5, "m.binaryproto", 5, True)
    wp = w.window_data_param
    assert w.type == "WindowData" and (wp.source, wp.batch_size, wp.context_pad, wp.crop_mode) == ("w.txt", 4, 2, "square")
    assert (wp.fg_threshold, wp.bg_threshold, wp.fg_fraction) == pytest.approx((0.6, 0.4, 0.5))
    assert i.type == "ImageData" and (i.image_data_param.new_height, i.image_data_param.new_width,
                                      i.image_data_param.shuffle) == (4, 6, True)
    assert o.type == "HDF5Output" and o.hdf5_output_param.file_name == "o.h5"
    assert cat.type == "Concat" and cat.concat_param.concat_dim == 0


def test_v1_data_layers_transformation_moves_to_transform_param():
    net = graph.upgrade_net(parse("""
        layers { name: "d" type: DATA top: "x" data_param { source: "db" batch_size: 2 scale: 0.25
                 mean_file: "m" crop_size: 3 mirror: true } }
        layers { name: "i" type: IMAGE_DATA top: "y" image_data_param { source: "l" crop_size: 4 } }
        layers { name: "w" type: WINDOW_DATA top: "z" window_data_param { source: "w" mirror: true } }"""))
    d, i, w = net.layer
    assert d.data_param == pb.DataParameter(source="db", batch_size=2)
    assert d.transform_param == pb.TransformationParameter(scale=0.25, mean_file="m", crop_size=3, mirror=True)
    assert not i.image_data_param.HasField("crop_size") and i.transform_param.crop_size == 4
    assert not w.window_data_param.HasField("mirror") and w.transform_param.mirror


def v0_file(tmp_path, layers, name="bad.prototxt"):
    p = tmp_path / name
    p.write_text('name: "n"\ninput: "data"\n' + layers)
    return str(p)


@pytest.mark.parametrize("layers, line, match", [
    ('layers { layer { name: "r" type: "relu" } bottom: "data" top: "r" }\n'
     'layers {\n  layer { name: "c" type: "conv" num_output: 2 kernelsize: 1 }\n  bottom: "r" top: "c" }\n'
     'layers {\n  layer { name: "p" type: "padding" pad: 1 } bottom: "c" top: "p" }\n'
     'layers {\n  layer { name: "bad" type: "relu" } bottom: "p" top: "q" }\n', 10,
     "only conv and pool layers can take their padding"),
    ('layers {\n  layer { name: "x" type: "convolution" } bottom: "data" top: "c" }\n', 4,
     "unknown V0 layer type 'convolution'"),
    ('layers {\n\n  layer { name: "r" type: "relu" num_output: 3 } bottom: "data" top: "r" }\n', 5,
     "V0 field 'num_output' does not apply to a 'relu' layer"),
    ('layers {\n  layer { name: "r" type: "relu" new_num: 3 } bottom: "data" top: "r" }\n', 4,
     "V0 field 'new_num'.*no counterpart"),
    ('layers {\n  layer { name: "r" type: "relu" } bottom: "nothing" top: "r" }\n', 4,
     "bottom 'nothing' is not the top of an earlier layer"),
    ('layers { layer { name: "r" type: "relu" } bottom: "data" top: "r" }\n'
     'layers { name: "v1" type: RELU bottom: "r" top: "s" }\n', 4,
     "V1 format while others are in the V0 format"),
])
def test_v0_errors_name_file_line_and_layer(tmp_path, layers, line, match):
    path = v0_file(tmp_path, layers)
    with pytest.raises(ParseError, match=match) as e:
        netdef.Net(path)
    assert e.value.file == path and e.value.line == line
    assert str(e.value).startswith(f"{path}:{line}, layer ")


def write_v0_caffemodel(path, rng):
    """The V0 net with weights, as a binary NetParameter of V0 layers."""
    net = parse(V0_NET)
    values = {}
    for v1 in net.layers:
        shapes = {"conv1": [(4, 3, 3, 3), (4,)], "conv2": [(4, 2, 5, 5), (4,)], "fc": [(3, 4 * 5 * 5)]}
        for shape in shapes.get(v1.layer.name, []):
            w = rng.standard_normal(shape).astype(np.float32)
            # Caffe's V0 blobs are 4-D (num, channels, height, width).
            s4 = (1,) * (4 - len(shape)) + shape
            v1.layer.blobs.add(num=s4[0], channels=s4[1], height=s4[2], width=s4[3], data=w.ravel())
            values.setdefault(v1.layer.name, []).append(w)
    with open(path, "wb") as f:
        f.write(net.SerializeToString())
    return values


def test_upgrade_net_command_text_and_binary(tmp_path, capsys):
    rng = np.random.default_rng(0)
    src = tmp_path / "old.prototxt"
    src.write_text(V0_NET)
    out = tmp_path / "new.prototxt"
    assert main(["upgrade-net", str(src), str(out)]) == 0
    assert proto.read_text(str(out), pb.NetParameter)[0] == parse(EXPECTED)
    printed = capsys.readouterr().out
    assert "V0 layers" in printed and f"Wrote upgraded NetParameter text proto to {out}" in printed
    # already current: a copy, said so
    again = tmp_path / "again.prototxt"
    assert main(["upgrade-net", str(out), str(again)]) == 0
    assert "File already in latest proto format" in capsys.readouterr().out
    assert again.read_text() == out.read_text()

    values = write_v0_caffemodel(tmp_path / "old.caffemodel", rng)
    assert main(["upgrade-net", str(tmp_path / "old.caffemodel"), str(tmp_path / "new.caffemodel")]) == 0
    new = proto.read_binary(tmp_path / "new.caffemodel", pb.NetParameter, "caffemodel")
    assert not new.layers and [l.name for l in new.layer if l.blobs] == ["conv1", "conv2", "fc"]
    # the weights come through and load into the upgraded prototxt; the V0 caffemodel loads too
    upgraded = netdef.Net(str(out), weights=str(tmp_path / "new.caffemodel"))
    legacy = netdef.Net(str(src), weights=str(tmp_path / "old.caffemodel"))
    for name, arrays in values.items():
        for k, w in enumerate(arrays):
            np.testing.assert_array_equal(upgraded.params[name][k].data, w)
    x = rng.standard_normal((2, 3, 11, 11)).astype(np.float32)
    for n in (upgraded, legacy):
        n.blobs["data"].data[...] = x
    np.testing.assert_array_equal(upgraded.forward()["prob"], legacy.forward()["prob"])
    assert upgraded.blobs["pool1"].shape == (2, 4, 5, 5)  # the folded padding keeps the size


def test_format_detected_by_content(tmp_path, capsys):
    text_no_ext = tmp_path / "net_v0"
    text_no_ext.write_text(V0_NET)
    assert main(["upgrade-net", str(text_no_ext), str(tmp_path / "a")]) == 0
    assert "text proto" in capsys.readouterr().out
    binary_no_ext = tmp_path / "weights_v0"
    write_v0_caffemodel(binary_no_ext, np.random.default_rng(1))
    assert main(["upgrade-net", str(binary_no_ext), str(tmp_path / "b")]) == 0
    assert "binary proto" in capsys.readouterr().out
    assert proto.read_binary(tmp_path / "b", pb.NetParameter, "caffemodel").layer[1].type == "Convolution"
    # --format overrides: a prototxt read as binary is not a caffemodel
    assert main(["upgrade-net", "--format", "binary", str(text_no_ext), str(tmp_path / "c")]) == 1
    assert "net_v0" in capsys.readouterr().err


def test_upgrade_net_command_errors_name_file_and_line(tmp_path, capsys):
    path = v0_file(tmp_path, 'layers {\n  layer { name: "x" type: "convolution" } bottom: "data" top: "c" }\n')
    assert main(["upgrade-net", path, str(tmp_path / "out.prototxt")]) == 1
    err = capsys.readouterr().err
    assert f"{path}:4, layer 'x': unknown V0 layer type" in err
    assert not (tmp_path / "out.prototxt").exists()
    bad = tmp_path / "syntax.prototxt"
    bad.write_text('name: "n"\nlayers { layer { name: "x" type: "conv" kernelsize: "three" } }\n')
    assert main(["upgrade-net", str(bad), str(tmp_path / "out.prototxt")]) == 1
    assert f"{bad}:2:" in capsys.readouterr().err


SOLVER = """net: "train_val.prototxt"
base_lr: 0.01
lr_policy: "step"
stepsize: 100
solver_type: NESTEROV
momentum: 0.9
"""


def test_upgrade_solver_command(tmp_path, capsys):
    src, out = tmp_path / "solver.prototxt", tmp_path / "new.prototxt"
    src.write_text(SOLVER)
    assert main(["upgrade-solver", str(src), str(out)]) == 0
    new = proto.read_text(str(out), pb.SolverParameter)[0]
    assert new.type == "Nesterov" and not new.HasField("solver_type")
    assert (new.net, new.base_lr, new.stepsize, new.momentum) == ("train_val.prototxt", pytest.approx(0.01), 100,
                                                                 pytest.approx(0.9))
    assert "Wrote upgraded SolverParameter" in capsys.readouterr().out
    assert main(["upgrade-solver", str(out), str(tmp_path / "again.prototxt")]) == 0
    assert "File already in latest proto format" in capsys.readouterr().out
    src.write_text(SOLVER + 'type: "Adam"\n')
    assert main(["upgrade-solver", str(src), str(tmp_path / "x.prototxt")]) == 1
    assert f"{src}: solver_type (NESTEROV) and type ('Adam') disagree" in capsys.readouterr().err
    src.write_text(SOLVER + "solver_type: FAST\n")
    assert main(["upgrade-solver", str(src), str(tmp_path / "x.prototxt")]) == 1
    assert f"{src}:7:" in capsys.readouterr().err
