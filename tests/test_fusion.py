"""The Net's inference fusion (netdef/core/fusion.py): fused and unfused nets agree on every
blob, nothing the user sees changes, and only what may be fused is."""

import numpy as np
import pytest

import netdef
from netdef.errors import NetdefError
from zoo_nets import ZOO, thin_zoo


def L(name, type_, bottoms, tops, extra=""):
    b = "".join(f' bottom: "{x}"' for x in bottoms)
    t = "".join(f' top: "{x}"' for x in tops)
    return f'layer {{ name: "{name}" type: "{type_}"{b}{t} {extra} }}\n'


def net_text(shape, body, force_backward=False):
    dims = " ".join(f"dim: {d}" for d in shape)
    head = "force_backward: true\n" if force_backward else ""
    return head + f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n' + body


def conv(name, bottom, top, n, k=3, extra=""):
    return L(name, "Convolution", [bottom], [top],
             f"convolution_param {{ num_output: {n} kernel_size: {k} pad: {k // 2} {extra} }}")


def bn(name, blob):
    return L(name, "BatchNorm", [blob], [blob])


def scale(name, blob, bias=True):
    return L(name, "Scale", [blob], [blob], f"scale_param {{ bias_term: {str(bias).lower()} }}")


def relu(name, blob, slope=0.0):
    return L(name, "ReLU", [blob], [blob], f"relu_param {{ negative_slope: {slope} }}" if slope else "")


def with_loss(shape, body, top):
    """The net of `body` trained through a classifier on `top` (labels from an Input)."""
    head = L("label", "Input", [], ["label"], f"input_param {{ shape {{ dim: {shape[0]} }} }}")
    tail = (L("fc", "InnerProduct", [top], ["fc"], "inner_product_param { num_output: 3 }")
            + L("loss", "SoftmaxWithLoss", ["fc", "label"], ["loss"]))
    return net_text(shape, head + body + tail)


def randomize(nets, seed=0):
    """The same random params in every net: BatchNorm statistics with a scale factor != 1 and
    positive variances, so that every coefficient matters."""
    rng = np.random.default_rng(seed)
    ref = nets[0]
    for lname, blobs in ref.params.items():
        kind = ref.layer_dict[lname].type
        for i, b in enumerate(blobs):
            v = rng.standard_normal(b.shape)
            if kind == "BatchNorm":
                v = [v, np.abs(v) * 2 + 0.1, np.array([rng.uniform(0.5, 3)])][i]
            elif kind == "Convolution" and i == 0:
                v = v / np.sqrt(max(1, b.count // b.shape[0]))
            for net in nets:
                net.params[lname][i].data[...] = v


def run(net, x):
    net.blobs["data"].data[...] = x
    net.forward()
    return {name: blob.data.copy() for name, blob in net.blobs.items()}


def assert_same_blobs(fused, plain, rtol=1e-5):
    assert fused.keys() == plain.keys()
    for name in plain:
        ref = plain[name]
        scale_ = max(np.abs(ref).max(), 1e-30)
        err = np.abs(fused[name] - ref).max() / scale_
        assert err <= rtol, f"blob {name}: max error {err:.3g} of its largest value"


def pair(text, **kw):
    nets = [netdef.Net(text, netdef.TEST, fuse=True, **kw), netdef.Net(text, netdef.TEST, fuse=False, **kw)]
    randomize(nets)
    return nets


def chains(net):
    return [(net._layer_names[g.head], [net._layer_names[m] for m in g.members]) for g in net.fused]


# ---- what is fused, and the same values -------------------------------------------------------

CASES = {
    # ResNet's conv -> BatchNorm -> Scale -> ReLU, all in place, conv without bias
    "resnet_unit": ((2, 3, 9, 7), conv("c1", "data", "c1", 6, extra="bias_term: false")
                    + bn("bn1", "c1") + scale("sc1", "c1") + relu("r1", "c1")
                    + conv("c2", "c1", "c2", 5, k=1) + bn("bn2", "c2") + scale("sc2", "c2"),
                    [("c1", ["bn1", "sc1", "r1"]), ("c2", ["bn2", "sc2"])]),
    # CaffeNet / GoogLeNet / SqueezeNet: bias + ReLU, stride > kernel, a leaky ReLU
    "conv_relu": ((1, 2, 13, 11), L("c", "Convolution", ["data"], ["c"],
                                    "convolution_param { num_output: 4 kernel_size: 2 stride: 3 }")
                  + relu("r", "c", 0.1), [("c", ["r"])]),
    # MobileNet: depthwise (group = channels) with a channel multiplier, dilation, then BN + Scale
    "depthwise": ((2, 4, 10, 9), L("dw", "Convolution", ["data"], ["dw"],
                                   "convolution_param { num_output: 8 group: 4 kernel_size: 3 pad: 3 dilation: 2 }")
                  + bn("bn", "dw") + scale("s", "dw", bias=False) + relu("r", "dw"),
                  [("dw", ["bn", "s", "r"])]),
    # fully connected: InnerProduct -> BatchNorm -> Scale -> ReLU over (N, C)
    "inner_product": ((3, 2, 3, 3), L("fc", "InnerProduct", ["data"], ["fc"], "inner_product_param { num_output: 7 }")
                      + bn("bn", "fc") + scale("s", "fc") + relu("r", "fc"), [("fc", ["bn", "s", "r"])]),
    # a Deconvolution (FCN's upsampling) takes its ReLU; a Bias layer is a per-channel map too
    "deconv_bias": ((1, 3, 5, 6), L("up", "Deconvolution", ["data"], ["up"],
                                    "convolution_param { num_output: 2 kernel_size: 4 stride: 2 }")
                    + L("b", "Bias", ["up"], ["up"]) + relu("r", "up"), [("up", ["b", "r"])]),
    # pre-activation: BatchNorm after a Concat heads its own chain (Scale and ReLU fold into it)
    "bn_head": ((2, 3, 6, 5), conv("a", "data", "a", 3) + conv("b", "data", "b", 2)
                + L("cat", "Concat", ["a", "b"], ["cat"]) + bn("bn", "cat") + scale("s", "cat")
                + relu("r", "cat"), [("bn", ["s", "r"])]),
    # MobileNet v2 (shicai): BatchNorm writes a top of its own, Scale and ReLU in place on it;
    # the conv writes its own top and the chain's result (with its bias, a GEMM conv, and a
    # depthwise one in its kernel); a second non-in-place link ends the chain
    "own_top": ((1, 3, 8, 8), conv("c", "data", "c", 4) + L("bn", "BatchNorm", ["c"], ["bn_out"])
                + scale("s", "bn_out") + relu("r", "bn_out")
                + L("dw", "Convolution", ["bn_out"], ["dw"],
                    "convolution_param { num_output: 4 group: 4 kernel_size: 3 stride: 2 pad: 1 bias_term: false }")
                + L("bn2", "BatchNorm", ["dw"], ["dw_bn"]) + scale("s2", "dw_bn") + relu("r2", "dw_bn")
                + L("dwb", "Convolution", ["dw_bn"], ["dwb"],
                    "convolution_param { num_output: 4 group: 4 kernel_size: 3 pad: 1 }")
                + L("bn3", "BatchNorm", ["dwb"], ["dwb_bn"]) + L("s3", "Scale", ["dwb_bn"], ["s3_out"])
                + L("r3", "ReLU", ["s3_out"], ["r3_out"]),
                [("c", ["bn", "s", "r"]), ("dw", ["bn2", "s2", "r2"]), ("dwb", ["bn3"]), ("s3", ["r3"])]),
    # the conv's top is read by two layers (Caffe's Split between): the conv keeps its top
    "split_after": ((1, 3, 8, 8), conv("c", "data", "c", 4) + L("p", "Pooling", ["c"], ["p"],
                                                                "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
                    + L("bn", "BatchNorm", ["c"], ["c_bn"]) + relu("r", "c_bn"), [("bn", ["r"])]),
    # layers of another branch between the conv and its chain leave it whole
    "branch_between": ((1, 3, 8, 8), conv("c", "data", "c", 4) + conv("d", "data", "d", 2)
                       + bn("bn", "c") + relu("r", "c") + relu("rd", "d"),
                       [("c", ["bn", "r"]), ("d", ["rd"])]),
    # ResNet's shortcut: Eltwise SUM then ReLU in place (the kernel's pass); MAX with a ReLU
    # writing a top of its own
    "eltwise_relu": ((2, 3, 7, 5), conv("a", "data", "a", 4) + bn("bna", "a") + conv("b", "data", "b", 4)
                     + L("sum", "Eltwise", ["a", "b"], ["sum"], "eltwise_param { coeff: 0.5 coeff: -2 }")
                     + relu("r", "sum")
                     + L("mx", "Eltwise", ["sum", "b"], ["mx"], "eltwise_param { operation: MAX }")
                     + L("rm", "ReLU", ["mx"], ["rm"], "relu_param { negative_slope: 0.2 }"),
                     [("a", ["bna"]), ("sum", ["r"]), ("mx", ["rm"])]),
    # a Scale by a second bottom is no fixed per-channel map: the chain stops before it
    "two_bottom_scale": ((1, 2, 5, 5), conv("c", "data", "c", 2) + conv("g", "data", "g", 2)
                         + L("s", "Scale", ["c", "g"], ["c"], "scale_param { axis: 0 }") + relu("r", "c"),
                         []),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_matches_unfused(case):
    shape, body, expected = CASES[case]
    fused, plain = pair(net_text(shape, body))
    assert chains(fused) == expected
    assert plain.fused == []
    x = np.random.default_rng(1).standard_normal(shape)
    assert_same_blobs(run(fused, x), run(plain, x))


@pytest.mark.parametrize("name", ZOO)
def test_zoo_nets_fused_match_unfused(name):
    param = thin_zoo(name, 8)
    param.layer[0].input_param.shape[0].dim[0] = 2  # the nets' own sizes (fixed global pools)
    text = str(param)
    fused, plain = pair(text)
    has_bn = any(lp.type == "BatchNorm" for lp in param.layer)
    folded = sum(len(g.members) for g in fused.fused)
    relus = sum(lp.type == "ReLU" for lp in param.layer)
    assert folded >= relus // 2 and (not has_bn or any(len(g.affine) for g in fused.fused))
    x = np.random.default_rng(2).standard_normal(fused.blobs["data"].shape)
    assert_same_blobs(run(fused, x), run(plain, x))


# ---- what the user sees ------------------------------------------------------------------------

RESNET = CASES["resnet_unit"]


def test_params_are_never_written_and_changes_take_effect():
    shape, body, _ = RESNET
    fused, plain = pair(net_text(shape, body))
    before = {k: [b.data.copy() for b in v] for k, v in fused.params.items()}
    x = np.random.default_rng(3).standard_normal(shape)
    run(fused, x)
    for k, blobs in fused.params.items():
        for b, old in zip(blobs, before[k]):
            assert np.array_equal(b.data, old), k
    # what a pycaffe user does between forwards: write params in place, load others
    for net in (fused, plain):
        net.params["bn1"][1].data[...] *= 4
        net.params["sc1"][0].data[...] = -net.params["sc1"][0].data
        net.params["c1"][0].data[:2] = 0
    assert_same_blobs(run(fused, x), run(plain, x))


def test_shared_weights_of_a_train_net():
    # a solver's test net sees its train net's params (share_with): a step there shows here
    shape, body, _ = RESNET
    train = netdef.Net(net_text(shape, body), netdef.TRAIN)
    fused, plain = pair(net_text(shape, body))
    for net in (fused, plain):
        net.share_with(train)
    randomize([train])
    x = np.random.default_rng(4).standard_normal(shape)
    assert_same_blobs(run(fused, x), run(plain, x))
    train.params["sc2"][1].data[...] += 1
    assert_same_blobs(run(fused, x), run(plain, x))


def test_forward_range_that_cuts_a_chain_runs_it_layer_by_layer():
    shape, body, _ = RESNET
    fused, plain = pair(net_text(shape, body))
    x = np.random.default_rng(5).standard_normal(shape)
    for net in (fused, plain):
        net.blobs["data"].data[...] = x
    for end in ("c1", "bn1", "sc1", "r1", "c2"):
        a = fused.forward(end=end)
        b = plain.forward(end=end)
        np.testing.assert_allclose(a["c1" if end != "c2" else "c2"], b["c1" if end != "c2" else "c2"],
                                   rtol=1e-5, atol=1e-6, err_msg=end)
    # and started in the middle: from bn1 on, c1's chain is cut
    plain.forward(end="c1")
    fused.forward(end="c1")
    np.testing.assert_allclose(fused.forward(start="bn1")["c2"], plain.forward(start="bn1")["c2"],
                               rtol=1e-5, atol=1e-6)


def test_reshaped_input():
    shape, body, _ = RESNET
    fused, plain = pair(net_text(shape, body))
    for net in (fused, plain):
        net.blobs["data"].reshape(3, 3, 5, 12)
    x = np.random.default_rng(6).standard_normal((3, 3, 5, 12))
    assert_same_blobs(run(fused, x), run(plain, x))


# ---- only where no backward can run ------------------------------------------------------------

def test_no_fusion_where_a_backward_can_run():
    shape, body, _ = RESNET
    assert netdef.Net(net_text(shape, body, force_backward=True), netdef.TEST).fused == []
    # a loss under learnable params: its layers keep their backward, in TRAIN and TEST
    text = with_loss(shape, body, "c2")
    assert netdef.Net(text, netdef.TRAIN).fused == []
    assert netdef.Net(text, netdef.TEST).fused == []
    # ... unless the caller says it only runs forward (netdef test, extract-features)
    net = netdef.Net(text, netdef.TEST, forward_only=True)
    assert [h for h, _ in chains(net)] == ["c1", "c2"]
    with pytest.raises(NetdefError, match="forward_only"):
        net.backward()


def test_frozen_bottom_of_a_train_net():
    # fine-tuning the top only: lr_mult 0 and global statistics below -> no backward reaches
    shape = (2, 3, 6, 6)
    frozen = "param { lr_mult: 0 } param { lr_mult: 0 }"
    body = (L("c1", "Convolution", ["data"], ["c1"], f"{frozen} convolution_param {{ num_output: 4 kernel_size: 3 }}")
            + L("bn1", "BatchNorm", ["c1"], ["c1"], "batch_norm_param { use_global_stats: true }")
            + L("s1", "Scale", ["c1"], ["c1"], "param { lr_mult: 0 } param { lr_mult: 0 } scale_param { bias_term: true }")
            + relu("r1", "c1")
            + conv("c2", "c1", "c2", 3) + relu("r2", "c2"))
    text = with_loss(shape, body, "c2")
    net = netdef.Net(text, netdef.TRAIN)
    assert chains(net) == [("c1", ["bn1", "s1", "r1"])]
    plain = netdef.Net(text, netdef.TRAIN, fuse=False)
    randomize([net, plain])
    x = np.random.default_rng(7).standard_normal(shape)
    for n in (net, plain):
        n.blobs["label"].data[...] = [0, 2]
    assert_same_blobs(run(net, x), run(plain, x))
    # and the training step through the layers above is the same
    for n in (net, plain):
        n.clear_param_diffs()
        n.backward()
    np.testing.assert_allclose(net.params["c2"][0].diff, plain.params["c2"][0].diff, rtol=1e-5, atol=1e-6)


def test_switches(monkeypatch):
    shape, body, _ = RESNET
    text = net_text(shape, body)
    assert netdef.Net(text, netdef.TEST).fused
    assert netdef.Net(text, netdef.TEST, fuse=False).fused == []
    monkeypatch.setenv("NETDEF_FUSE", "0")
    assert netdef.Net(text, netdef.TEST).fused == []
    assert netdef.Net(text, netdef.TEST, fuse=True).fused


def test_time_and_info_show_the_fusion(tmp_path, capsys):
    from netdef.cli import main
    shape, body, _ = RESNET
    path = tmp_path / "n.prototxt"
    path.write_text(net_text(shape, body))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "inference fusion: 2 chains" in out and "c1 <- bn1, sc1, r1" in out
    assert main(["info", str(path), "--no-fuse"]) == 0
    assert "inference fusion: none" in capsys.readouterr().out
    assert main(["time", str(path), "--phase", "test", "--iterations", "2"]) == 0


# ---- the GPU's kernels (emulated without a device) ---------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("case", ["resnet_unit", "inner_product", "conv_relu", "depthwise", "own_top", "eltwise_relu"])
def test_gpu_fused_matches_cpu(case):
    shape, body, expected = CASES[case]
    text = net_text(shape, body)
    x = np.random.default_rng(8).standard_normal(shape)
    cpu = netdef.Net(text, netdef.TEST, fuse=False)
    gpu = netdef.Net(text, netdef.TEST, backend=netdef.get_backend("gpu"))
    assert chains(gpu) == expected
    randomize([cpu, gpu])
    gpu.blobs["data"].data[...] = gpu.backend.asarray(x, dtype=np.float32)
    gpu.forward()
    out = {n: b.to_numpy().copy() for n, b in gpu.blobs.items()}
    assert_same_blobs(out, run(cpu, x), rtol=1e-4)
