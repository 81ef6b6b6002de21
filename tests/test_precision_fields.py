"""NVCaffe's precision fields (netdef/core/precision.py): its mixed-precision prototxts parse with
its field names and enum values, a bad value is a located error, and a net that asks for a
precision netdef does not compute says so once, naming the file and fields, and computes exactly
what the same net without the fields computes."""
import logging

import numpy as np
import pytest

import netdef
from netdef import netdef_pb2 as pb
from netdef.errors import ParseError

BODY = """
layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 2 dim: 3 dim: 5 dim: 5 } } }
layer { name: 'conv' type: 'Convolution' bottom: 'data' top: 'conv' %s
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: 'gaussian' std: 0.1 } } }
layer { name: 'relu' type: 'ReLU' bottom: 'conv' top: 'conv' }
layer { name: 'ip' type: 'InnerProduct' bottom: 'conv' top: 'ip'
        inner_product_param { num_output: 3 weight_filler { type: 'gaussian' std: 0.1 } } }
"""
NVCAFFE_HEAD = """name: 'nv'
default_forward_type: FLOAT16
default_backward_type: FLOAT16
default_forward_math: FLOAT
default_backward_math: FLOAT
global_grad_scale: 128
"""


def _write(tmp_path, head, layer_fields="", name="net.prototxt"):
    path = tmp_path / name
    path.write_text(head + BODY % layer_fields)
    return str(path)


def test_nvcaffe_field_numbers_and_values():
    fields = pb.NetParameter.DESCRIPTOR.fields_by_name
    assert [fields["default_" + f].number for f in ("forward_type", "backward_type", "forward_math",
                                                    "backward_math")] == [11, 12, 13, 14]
    assert fields["global_grad_scale"].number == 15
    assert [pb.Type.Value(n) for n in ("DOUBLE", "FLOAT", "FLOAT16", "INT", "UINT", "BOOL")] == list(range(6))
    # BVLC's numbers stay where NVCaffe put its per-layer types (a zoo .caffemodel depends on them)
    layer = pb.LayerParameter.DESCRIPTOR.fields_by_name
    assert [layer[f].number for f in ("parameter_param", "recurrent_param", "swish_param",
                                      "clip_param")] == [145, 146, 147, 148]
    assert pb.NetParameter().default_forward_type == pb.FLOAT and pb.LayerParameter().forward_math == pb.FLOAT


def test_nvcaffe_prototxt_builds_warns_once_and_computes_float32(tmp_path, caplog):
    path = _write(tmp_path, NVCAFFE_HEAD, "forward_math: FLOAT16 backward_type: BFLOAT16")
    with caplog.at_level(logging.WARNING, logger="netdef"):
        net = netdef.Net(path, netdef.TRAIN)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    w = warnings[0]
    assert path in w and "default_forward_type: FLOAT16" in w and "default_backward_type: FLOAT16" in w
    assert "layer 'conv' forward_math: FLOAT16" in w and "layer 'conv' backward_type: BFLOAT16" in w
    assert "global_grad_scale: 128" in w and "float32" in w
    assert "default_forward_math" not in w  # FLOAT is what it computes
    ref = netdef.Net(_write(tmp_path, "name: 'ref'\n", name="ref.prototxt"), netdef.TRAIN)
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    for n in (net, ref):
        n.params["conv"][0].data[...] = np.linspace(-1, 1, n.params["conv"][0].count).reshape(4, 3, 3, 3)
        n.params["ip"][0].data[...] = np.linspace(-0.5, 0.5, n.params["ip"][0].count).reshape(3, 36)
        n.blobs["data"].data[...] = x
        n.forward()
    np.testing.assert_array_equal(net.blobs["ip"].data, ref.blobs["ip"].data)


def test_float_everywhere_or_double_in_a_float64_net_says_nothing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="netdef"):
        netdef.Net(_write(tmp_path, "default_forward_type: FLOAT\n", "forward_type: FLOAT"), netdef.TEST)
        netdef.Net(_write(tmp_path, "default_forward_math: DOUBLE\n"), netdef.TEST, dtype=np.float64)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_double_in_a_float32_net_is_reported(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="netdef"):
        netdef.Net(_write(tmp_path, "default_forward_math: DOUBLE\n"), netdef.TEST)
    assert "default_forward_math: DOUBLE" in caplog.text and "float32" in caplog.text


@pytest.mark.parametrize("head, layer, where", [
    ("default_forward_type: FLOAT8\n", "", 1),
    ("", "forward_math: HALF", 3),
])
def test_unknown_type_is_a_located_error(tmp_path, head, layer, where):
    path = _write(tmp_path, head, layer)
    with pytest.raises(ParseError) as e:
        netdef.Net(path, netdef.TEST)
    text = str(e.value)
    assert f"{path}:{where}:" in text and ("FLOAT8" in text or "HALF" in text)
