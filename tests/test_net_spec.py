import numpy as np
import pytest

import netdef
from netdef.net_spec import L, NetSpec, P


def test_netspec_builds_a_runnable_net():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 6]))
    n.fc = L.InnerProduct(n.data, num_output=3, param=[dict(lr_mult=1), dict(lr_mult=2, decay_mult=0)],
                          weight_filler=dict(type="constant", value=1))
    n.relu = L.ReLU(n.fc, in_place=True)
    n.sum = L.Eltwise(n.relu, n.fc, operation=P.Eltwise.SUM, loss_weight=1)
    proto = n.to_proto("spec")
    assert [l.name for l in proto.layer] == ["data", "fc", "relu", "sum"]
    assert list(proto.layer[2].top) == ["fc"]
    assert proto.layer[1].param[1].decay_mult == 0
    net = netdef.Net(n.to_prototxt("spec"), netdef.TRAIN)
    out = net.forward(data=np.ones((2, 6)))
    np.testing.assert_allclose(out["sum"], np.full((2, 3), 12.0))
    assert net.params_lr == [1, 2]


def test_netspec_unknown_field_is_an_error():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1]))
    n.fc = L.InnerProduct(n.data, num_outputs=3)
    with pytest.raises(netdef.NetdefError, match="num_outputs"):
        n.to_proto()


def test_netspec_multiple_tops_and_deconvolution_params():
    n = NetSpec()
    n.a, n.b = L.Input(ntop=2, shape=dict(dim=[1, 2, 3, 3]))
    n.up = L.Deconvolution(n.a, convolution_param=dict(num_output=2, group=2, kernel_size=4, stride=2))
    n.up2 = L.Deconvolution(n.b, num_output=2, kernel_size=4)
    proto = n.to_proto()
    assert list(proto.layer[0].top) == ["a", "b"]
    assert proto.layer[1].convolution_param.group == 2
    assert list(proto.layer[2].convolution_param.kernel_size) == [4]


def test_netspec_pycaffe_edge_cases():
    from netdef.net_spec import to_proto

    n = NetSpec()
    n.data, n.label = L.Input(ntop=2, shape=[dict(dim=[1, 2, 4, 4]), dict(dim=[1, 1, 4, 4])])
    conv = L.Convolution(n.data, num_output=2, kernel_size=1)  # unnamed: pycaffe's autonames
    relu = L.ReLU(conv, in_place=True)
    n.out = L.Convolution(relu, num_output=1, kernel_size=1)
    n.silence = L.Silence(n.label, ntop=0)  # a layer without tops, named by the spec
    proto = n.to_proto()
    assert [(l.name, list(l.bottom), list(l.top)) for l in proto.layer] == [
        ("data", [], ["data", "label"]),
        ("Convolution1", ["data"], ["Convolution1"]),
        ("ReLU1", ["Convolution1"], ["Convolution1"]),
        ("out", ["Convolution1"], ["out"]),
        ("silence", ["label"], []),
    ]
    net = netdef.Net(proto, netdef.TEST)
    assert list(net.outputs) == ["out"]
    # the module function over several tops; an unassigned zero-top layer gets an autoname
    sil = L.Silence(n.out, ntop=0)
    p2 = to_proto(n.out, sil)
    assert [l.name for l in p2.layer][-1] == "Silence1" and p2.layer[-1].type == "Silence"
    assert [l.name for l in p2.layer][:2] == ["Input1", "Convolution1"]
    with pytest.raises(TypeError, match="input 1 is not a Top"):
        L.Eltwise(n.out, np.ones(3))
    with pytest.raises(TypeError, match="without tops"):
        L.ReLU(sil)
    n.pair = L.Input(ntop=2, shape=[dict(dim=[1]), dict(dim=[1])])  # a tuple, not a Top
    with pytest.raises(netdef.NetdefError, match="pair"):
        n.to_proto()
    del n["pair"]
    assert n.keys()[-1] == "silence" and n.vals()[0] is n.data
