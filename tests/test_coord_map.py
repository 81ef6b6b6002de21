import os

import pytest

import netdef
from netdef import coord_map, proto


def _strip_offsets(net):
    for l in net.layer:
        if l.type == "Crop":
            del l.crop_param.offset[:]
    return net


@pytest.mark.parametrize("model,offsets", [("voc-fcn32s", [19]), ("voc-fcn16s", [5, 27]),
                                           ("voc-fcn8s", [5, 9, 31])])
def test_published_crop_offsets_are_computed(fcn_reference, model, offsets):
    net, _ = proto.read_net_text(os.path.join(fcn_reference, model, "train.prototxt"))
    published = [list(l.crop_param.offset) for l in net.layer if l.type == "Crop"]
    assert published == [[o] for o in offsets]
    coord_map.fill_crop_offsets(_strip_offsets(net))
    assert [list(l.crop_param.offset) for l in net.layer if l.type == "Crop"] == published


VGG = "\n".join(
    ['layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } } }'] +
    [f'layer {{ name: "conv{s}_{k}" type: "Convolution" bottom: "{b}" top: "conv{s}_{k}" '
     f'convolution_param {{ num_output: 1 kernel_size: 3 pad: 1 }} }}'
     for s, n in enumerate([2, 2, 3, 3, 3], 1) for k, b in
     [(k, (f"conv{s}_{k - 1}" if k > 1 else ("data" if s == 1 else f"pool{s - 1}"))) for k in range(1, n + 1)]] +
    [f'layer {{ name: "pool{s}" type: "Pooling" bottom: "conv{s}_{n}" top: "pool{s}" '
     f'pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}' for s, n in enumerate([2, 2, 3, 3, 3], 1)])


def test_vgg16_receptive_fields_and_strides():
    net, _ = proto.read_net_text(VGG)
    # layer order: convs are listed before the pools in VGG; sort so each bottom precedes its use
    order = sorted(net.layer, key=lambda l: ("data conv1 pool1 conv2 pool2 conv3 pool3 conv4 pool4 conv5 pool5"
                                              .split().index(l.name.split("_")[0])))
    del net.layer[:]
    net.layer.extend(order)
    maps = coord_map.compute(net)
    expected = {"conv1_2": (5, 1), "pool1": (6, 2), "conv2_2": (14, 2), "pool2": (16, 4), "conv3_3": (40, 4),
                "pool3": (44, 8), "conv4_3": (92, 8), "pool4": (100, 16), "conv5_3": (196, 16), "pool5": (212, 32)}
    for blob, (rf, jump) in expected.items():
        assert (maps[blob][0].rf, maps[blob][0].jump) == (rf, jump), blob


def test_dilation_and_deconvolution_compose():
    net, _ = proto.read_net_text("""
      layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 9 dim: 9 } } }
      layer { name: "a" type: "Convolution" bottom: "data" top: "a" convolution_param { num_output: 1 kernel_size: 3 dilation: 2 stride: 2 } }
      layer { name: "b" type: "Deconvolution" bottom: "a" top: "b" convolution_param { num_output: 1 kernel_size: 7 stride: 2 } }
      layer { name: "c" type: "Crop" bottom: "b" bottom: "data" top: "c" }
    """)
    maps = coord_map.compute(net, fill_crops=True)
    assert maps["a"][0].rf == 5 and maps["a"][0].jump == 2 and maps["a"][0].offset == 2
    assert maps["b"][0].jump == 1 and maps["b"][0].offset == -1
    assert list(net.layer[3].crop_param.offset) == [1]
    assert maps["c"][0] == maps["data"][0]


def test_unalignable_crop_is_an_error():
    net, _ = proto.read_net_text("""
      layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 9 dim: 9 } } }
      layer { name: "a" type: "Pooling" bottom: "data" top: "a" pooling_param { kernel_size: 2 stride: 2 } }
      layer { name: "c" type: "Crop" bottom: "data" bottom: "a" top: "c" }
    """)
    with pytest.raises(netdef.LayerSetupError, match="strides"):
        coord_map.compute(net, fill_crops=True)
