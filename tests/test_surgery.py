"""Net surgery: convolutionalize, atrous, transplant, bilinear."""
import numpy as np
import pytest

import netdef
from netdef import coord_map, proto, surgery

CLASSIFIER = """
name: "tinycls"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param { num_output: 5 kernel_size: 3 stride: 2 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "fc6" type: "InnerProduct" bottom: "conv2" top: "fc6"
        inner_product_param { num_output: 6 weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "gaussian" } } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
"""


def test_convolutionalize_keeps_scores_and_gives_score_maps(tmp_path):
    netdef.set_random_seed(4)
    cls = netdef.Net(CLASSIFIER, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12))
    scores = cls.forward(data=x)["fc7"].copy()
    param, weights = surgery.convolutionalize(cls)
    fcn = netdef.Net(param, dtype=np.float64, weights=weights)
    assert fcn.layer_dict["fc6"].type == "Convolution"
    assert fcn.params["fc6"][0].shape == (6, 5, 5, 5)
    out = fcn.forward(data=x)["fc7"]
    assert out.shape == (2, 3, 1, 1)
    np.testing.assert_allclose(out[:, :, 0, 0], scores, atol=1e-5)
    # a larger input gives a score map; its corner is the classifier's answer on the corner crop
    big = np.random.default_rng(1).standard_normal((1, 3, 20, 20))
    fcn.blobs["data"].reshape(1, 3, 20, 20)
    fcn.reshape()
    out = fcn.forward(data=big)["fc7"]
    assert out.shape == (1, 3, 5, 5)
    crop = np.concatenate([big[:, :, :12, :12]] * 2)
    np.testing.assert_allclose(out[0, :, 0, 0], cls.forward(data=crop)["fc7"][0], atol=1e-5)
    # and through the CLI, files in and out
    net_file, w_file = tmp_path / "cls.prototxt", tmp_path / "cls.caffemodel"
    net_file.write_text(CLASSIFIER)
    cls.save(w_file)
    from netdef.cli import main

    assert main(["surgery", "convolutionalize", str(net_file), "--weights", str(w_file),
                 "-o", str(tmp_path / "fcn.prototxt"), "--weights-out", str(tmp_path / "fcn.caffemodel")]) == 0
    again = netdef.Net(str(tmp_path / "fcn.prototxt"), weights=str(tmp_path / "fcn.caffemodel"), dtype=np.float64)
    np.testing.assert_allclose(again.forward(data=x)["fc7"][:, :, 0, 0], scores, atol=1e-5)


BACKBONE = """
name: "backbone"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 64 dim: 64 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3" convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "conv4" type: "Convolution" bottom: "conv3" top: "conv4" convolution_param { num_output: 3 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "conv5" type: "Convolution" bottom: "conv4" top: "conv5" convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "pool5" type: "Pooling" bottom: "conv5" top: "pool5" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "score" type: "Convolution" bottom: "pool5" top: "score" convolution_param { num_output: 2 kernel_size: 3 } }
"""


@pytest.mark.parametrize("output_stride", [4, 8])
def test_atrous_keeps_receptive_fields_and_densifies(output_stride):
    pytest.importorskip("netdef.layers.pooling")
    original, _ = proto.read_net_text(BACKBONE)
    dense = surgery.atrous(original, output_stride)
    before, after = coord_map.compute(original), coord_map.compute(dense)
    for lp in original.layer:
        if lp.type == "Convolution":
            top = lp.top[0]
            assert after[top][0].rf == before[top][0].rf, lp.name
            assert after[top][0].jump == min(before[top][0].jump, output_stride), lp.name
    a = netdef.Net(original)
    b = netdef.Net(dense)
    ha, hb = a.blobs["score"].shape[2], b.blobs["score"].shape[2]
    factor = 16 // output_stride  # BACKBONE downsamples by 16 in all
    assert hb >= (ha - 1) * factor  # denser by the removed stride (borders lose a few pixels)
    assert hb <= 64 // output_stride


def test_atrous_needs_something_to_remove():
    original, _ = proto.read_net_text(BACKBONE)
    with pytest.raises(netdef.NetdefError, match="already"):
        surgery.atrous(original, 64)


def test_transplant_and_bilinear():
    netdef.set_random_seed(2)
    src = netdef.Net(CLASSIFIER)
    dst = netdef.Net(CLASSIFIER.replace("num_output: 3 weight", "num_output: 7 weight"))
    copied, skipped = surgery.transplant(dst, src)
    assert "conv1" in copied and "fc7" in skipped
    np.testing.assert_array_equal(dst.params["conv2"][0].data, src.params["conv2"][0].data)
    up = netdef.Net("""
      layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
      layer { name: "up" type: "Deconvolution" bottom: "data" top: "up"
              convolution_param { num_output: 3 kernel_size: 4 stride: 2 bias_term: false } }
      layer { name: "upg" type: "Deconvolution" bottom: "data" top: "upg"
              convolution_param { num_output: 3 group: 3 kernel_size: 4 stride: 2 bias_term: false } }
    """)
    assert surgery.bilinear(up) == ["up", "upg"]
    k = surgery.bilinear_kernel(4)
    w = up.params["up"][0].data
    np.testing.assert_allclose(w[1, 1], k)
    assert not w[0, 1].any()
    np.testing.assert_allclose(up.params["upg"][0].data[2, 0], k)
