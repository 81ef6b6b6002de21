"""netdef/core/netdef_pb2.py is generated from protos/netdef.proto; prove they match, and that the
schema keeps Caffe's field numbers where files depend on them."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_generated_module_matches_proto(tmp_path):
    pytest.importorskip("grpc_tools")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(ROOT, "protos"),
                    f"--python_out={tmp_path}", os.path.join(ROOT, "protos", "netdef.proto")], check=True)
    generated = (tmp_path / "netdef_pb2.py").read_text()
    checked_in = open(os.path.join(ROOT, "netdef", "core", "netdef_pb2.py")).read()
    assert generated == checked_in, "regenerate netdef/core/netdef_pb2.py (see this test for the command)"


def test_caffe_field_numbers():
    from netdef import netdef_pb2 as pb

    def num(msg, field):
        return msg.DESCRIPTOR.fields_by_name[field].number

    assert num(pb.NetParameter, "layer") == 100 and num(pb.NetParameter, "layers") == 2
    assert num(pb.LayerParameter, "blobs") == 7 and num(pb.LayerParameter, "crop_param") == 144
    assert num(pb.LayerParameter, "convolution_param") == 106 and num(pb.LayerParameter, "python_param") == 130
    assert num(pb.BlobProto, "shape") == 7 and num(pb.BlobProto, "double_data") == 8
    assert pb.BlobProto.DESCRIPTOR.fields_by_name["data"].GetOptions().packed
    assert num(pb.V1LayerParameter, "blobs") == 6 and num(pb.SolverState, "history") == 3
    assert pb.LossParameter().normalization == pb.LossParameter.VALID
    assert pb.PoolingParameter().round_mode == pb.PoolingParameter.CEIL
    assert pb.SolverParameter().solver_mode == pb.SolverParameter.GPU
