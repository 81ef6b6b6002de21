"""NVCaffe's precision fields and the precision rule (netdef/core/precision.py): its mixed-precision
prototxts parse with its field names and enum values and give each layer its precision as NVCaffe
resolves them (layer over net default, math over storage type), set_precision / Net(precision=)
override them, what cannot be honoured is said once, and a bad value is a located error. What
the precisions compute: tests/test_precision.py."""
import logging

import numpy as np
import pytest

import netdef
from netdef import netdef_pb2 as pb
from netdef.core.precision import FP32, LayerPrecision
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


def test_nvcaffe_prototxt_gives_each_layer_its_precision(tmp_path, caplog):
    path = _write(tmp_path, NVCAFFE_HEAD, "forward_math: FLOAT16 backward_type: BFLOAT16")
    with caplog.at_level(logging.INFO, logger="netdef"):
        net = netdef.Net(path, netdef.TRAIN)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    plan = net.precision
    # conv: its own forward_math; backward: its backward_type BFLOAT16 (the net's default math
    # FLOAT leaves the bf16 storage as the operands' format); ip: the net's FLOAT16 storage
    assert plan.of("conv") == LayerPrecision("fp16", "bf16")
    assert plan.of("ip") == LayerPrecision("fp16", "fp16")
    assert plan.of("relu") == FP32 and net.layer_dict["relu"].precision == FP32
    assert net.layer_dict["conv"].precision == plan.of("conv")
    assert plan.loss_scale == ("static", 128.0)  # global_grad_scale: a static scale
    summary = [r.getMessage() for r in caplog.records if "precision (" in r.getMessage()]
    assert len(summary) == 1 and path in summary[0]
    assert "1 GEMM layer with fp16/bf16 operands (forward/backward)" in summary[0]
    assert "1 GEMM layer with fp16 operands" in summary[0] and "loss scale static 128" in summary[0]


def test_math_type_defaults_to_the_storage_type_and_layers_override_the_net(tmp_path):
    head = "default_forward_type: BFLOAT16\n"
    net = netdef.Net(_write(tmp_path, head, "forward_type: FLOAT"), netdef.TRAIN)
    assert net.precision.of("conv") == FP32 and net.precision.of("ip") == LayerPrecision("bf16", "fp32")
    assert net.precision.loss_scale is None  # bf16 has float32's range: no loss scaling
    net = netdef.Net(_write(tmp_path, "default_backward_math: FLOAT16\n"), netdef.TRAIN)
    assert net.precision.of("ip") == LayerPrecision("fp32", "fp16")
    assert net.precision.loss_scale == ("dynamic", 2.0 ** 16)


def test_set_precision_overrides_the_file(tmp_path):
    path = _write(tmp_path, NVCAFFE_HEAD)
    try:
        netdef.set_precision("bf16")
        assert netdef.get_precision() == "bf16"
        net = netdef.Net(path, netdef.TRAIN)
        assert net.precision.of("conv") == net.precision.of("ip") == LayerPrecision("bf16", "bf16")
        assert net.precision.of("relu") == FP32
        netdef.set_precision("fp32")
        assert not netdef.Net(path, netdef.TRAIN).precision.reduced
    finally:
        netdef.set_precision(None)
    assert netdef.Net(path, netdef.TRAIN, precision="FLOAT16").precision.of("conv") == LayerPrecision("fp16", "fp16")
    with pytest.raises(netdef.NetdefError, match="'fp8' is not one netdef computes in; use one of fp32, bf16, fp16"):
        netdef.set_precision("fp8")


def test_a_non_gemm_layer_asking_for_fp16_is_told_it_computes_float32(tmp_path, caplog):
    text = (BODY % "").replace("layer { name: 'relu' type: 'ReLU'", "layer { name: 'relu' type: 'ReLU' forward_type: FLOAT16")
    path = tmp_path / "relu.prototxt"
    path.write_text(text)
    with caplog.at_level(logging.INFO, logger="netdef"):
        net = netdef.Net(str(path), netdef.TEST)
    assert net.precision.of("relu") == FP32
    assert "layers 'relu' ask for reduced precision and compute in float32" in caplog.text


@pytest.mark.parametrize("field", ["forward_type: INT", "backward_math: BOOL"])
def test_a_type_that_is_not_a_compute_type_is_an_error_naming_layer_and_field(tmp_path, field):
    path = _write(tmp_path, "", field)
    with pytest.raises(netdef.NetdefError) as e:
        netdef.Net(path, netdef.TEST)
    assert path in str(e.value) and f"layer 'conv' {field.split(':')[0]}" in str(e.value)
    assert "is not a type a layer computes in" in str(e.value)


def test_reduced_precision_in_a_float64_net_is_reported(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="netdef"):
        net = netdef.Net(_write(tmp_path, "default_forward_type: FLOAT16\n"), netdef.TEST, dtype=np.float64)
    assert not net.precision.reduced
    assert "layer 'conv' forward: fp16" in caplog.text and "float64" in caplog.text


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
