"""BatchNorm: batch statistics (TRAIN) and global statistics against numpy references written
here, the running-sum update in Caffe's layout checked against numbers computed here, gradient
checks in both modes, in-place runs, lr_mult handling, errors, a ResNet-style snippet loading a
caffemodel, GPU against CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, forward
from netdef import netdef_pb2 as pb
from netdef.errors import NetdefError
from netdef.proto import blob_to_proto, write_binary


def f32(v):
    return float(np.float32(v))


def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _channel_view(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2)) if x.ndim > 1 else v


def bn_ref(x, mean, var, eps):
    return (x - _channel_view(mean, x)) / np.sqrt(_channel_view(var, x) + eps)


def batch_stats(x):
    return x.mean(axis=_axes(x)), x.var(axis=_axes(x))


SHAPES = [(2, 3, 4, 5), (5, 4), (7,), (2, 3, 2, 1, 3), (1, 2, 3, 3), (3, 1, 1, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_train_forward_uses_batch_statistics(shape):
    x = np.random.default_rng(0).standard_normal(shape) * 3 + 1.5
    layer, b, t = build_layer("type: 'BatchNorm' batch_norm_param { eps: 1e-3 }", [x])
    (y,) = forward(layer, b, t)
    mean, var = batch_stats(x)
    np.testing.assert_allclose(y, bn_ref(x, mean, var, f32(1e-3)), rtol=1e-10, atol=1e-12)
    channels = 1 if len(shape) == 1 else shape[1]
    assert [p.shape for p in layer.blobs] == [(channels,), (channels,), (1,)]


def test_running_sums_follow_caffes_update():
    rng = np.random.default_rng(1)
    shape = (3, 4, 2, 5)
    m = 3 * 2 * 5
    maf = f32(0.9)
    x1, x2 = rng.standard_normal(shape), rng.standard_normal(shape) * 2 - 1
    layer, b, t = build_layer("type: 'BatchNorm' batch_norm_param { moving_average_fraction: 0.9 }", [x1])
    assert all(np.all(p.data == 0) for p in layer.blobs)
    forward(layer, b, t)
    mean1, var1 = batch_stats(x1)
    np.testing.assert_allclose(layer.blobs[0].data, mean1, rtol=1e-12)
    np.testing.assert_allclose(layer.blobs[1].data, var1 * m / (m - 1), rtol=1e-12)
    np.testing.assert_allclose(layer.blobs[2].data, [1.0])
    b[0].data[...] = x2
    (y2,) = forward(layer, b, t)
    mean2, var2 = batch_stats(x2)
    np.testing.assert_allclose(y2, bn_ref(x2, mean2, var2, f32(1e-5)), rtol=1e-10)
    np.testing.assert_allclose(layer.blobs[0].data, maf * mean1 + mean2, rtol=1e-12)
    np.testing.assert_allclose(layer.blobs[1].data, (maf * var1 + var2) * m / (m - 1), rtol=1e-12)
    np.testing.assert_allclose(layer.blobs[2].data, [maf + 1], rtol=1e-12)

    # the same sums, now used as global statistics: mean = blob0 / blob2, var = blob1 / blob2
    g, gb, gt = build_layer("type: 'BatchNorm' batch_norm_param { use_global_stats: true }", [x1])
    for dst, src in zip(g.blobs, layer.blobs):
        dst.data[...] = src.data
    (y,) = forward(g, gb, gt)
    f = 1 / (maf + 1)
    want = bn_ref(x1, f * (maf * mean1 + mean2), f * (maf * var1 + var2) * m / (m - 1), f32(1e-5))
    np.testing.assert_allclose(y, want, rtol=1e-10)
    assert g.blobs[2].data[0] == maf + 1  # global mode leaves the sums alone


def test_batch_of_one_value_per_channel_has_no_bias_correction():
    x = np.array([[1.0, -2.0, 3.0]])  # m = 1
    layer, b, t = build_layer("type: 'BatchNorm'", [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_array_equal(y, 0 * x)
    np.testing.assert_array_equal(layer.blobs[0].data, x[0])
    np.testing.assert_array_equal(layer.blobs[1].data, [0, 0, 0])


@pytest.mark.parametrize("phase, setting, global_stats", [
    (netdef.TRAIN, "", False),
    (netdef.TEST, "", True),
    (netdef.TRAIN, "use_global_stats: true", True),
    (netdef.TEST, "use_global_stats: false", False),
])
def test_use_global_stats_default_follows_the_phase(phase, setting, global_stats):
    x = np.random.default_rng(2).standard_normal((4, 2, 3))
    layer, b, t = build_layer(f"type: 'BatchNorm' batch_norm_param {{ {setting} }}", [x], phase=phase)
    layer.blobs[0].data[...] = [2.0, -4.0]
    layer.blobs[1].data[...] = [8.0, 0.5]
    layer.blobs[2].data[...] = 2.0
    (y,) = forward(layer, b, t)
    if global_stats:
        np.testing.assert_allclose(y, bn_ref(x, np.array([1.0, -2.0]), np.array([4.0, 0.25]), f32(1e-5)),
                                   rtol=1e-12)
        np.testing.assert_array_equal(layer.blobs[2].data, [2.0])
    else:
        np.testing.assert_allclose(y, bn_ref(x, *batch_stats(x), f32(1e-5)), rtol=1e-10)
        np.testing.assert_allclose(layer.blobs[2].data, [2.0 * f32(0.999) + 1])


def test_zero_scale_factor_means_zero_statistics():
    x = np.random.default_rng(3).standard_normal((2, 3, 2))
    layer, b, t = build_layer("type: 'BatchNorm' batch_norm_param { eps: 0.25 }", [x], phase=netdef.TEST)
    layer.blobs[0].data[...] = 5  # ignored while blob2 is 0
    layer.blobs[1].data[...] = 7
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, x / 0.5, rtol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 3, 4), (5, 4), (6,), (2, 2, 3, 1, 2), (1, 2, 3, 3)], ids=str)
def test_gradient_batch_statistics(shape):
    x = np.random.default_rng(4).standard_normal(shape) * 2 + 0.5
    check_gradients("type: 'BatchNorm' batch_norm_param { eps: 1e-3 }", [x], max_checks=40)


@pytest.mark.parametrize("shape", [(2, 3, 3, 4), (5, 4)], ids=str)
def test_gradient_global_statistics(shape):
    x = np.random.default_rng(5).standard_normal(shape)
    layer_text = "type: 'BatchNorm' batch_norm_param { use_global_stats: true eps: 0.1 }"
    # blobs are zero here (mean 0, var 0, y = x / sqrt(eps)); nonzero statistics below
    check_gradients(layer_text, [x], check_params=False)
    layer, b, t = build_layer(layer_text, [x])
    C = shape[1]
    layer.blobs[0].data[...] = np.arange(C) * 0.5
    layer.blobs[1].data[...] = np.arange(C) + 1.0
    layer.blobs[2].data[...] = 3.0
    forward(layer, b, t)
    dy = np.random.default_rng(6).standard_normal(shape)
    t[0].diff[...] = dy
    layer.backward(t, [True], b)
    np.testing.assert_allclose(b[0].diff, dy / np.sqrt(_channel_view((np.arange(C) + 1.0) / 3, dy) + f32(0.1)),
                               rtol=1e-12)
    assert all(np.all(p.diff == 0) for p in layer.blobs)  # statistics get no gradient


def test_backward_matches_the_closed_form():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 4))
    dy = rng.standard_normal(x.shape)
    layer, b, t = build_layer("type: 'BatchNorm'", [x])
    (y,) = forward(layer, b, t)
    t[0].diff[...] = dy
    layer.backward(t, [True], b)
    mean, var = batch_stats(x)
    ax = _axes(x)
    want = (dy - dy.mean(axis=ax, keepdims=True) - y * (dy * y).mean(axis=ax, keepdims=True)) \
        / np.sqrt(_channel_view(var, x) + f32(1e-5))
    np.testing.assert_allclose(b[0].diff, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("phase", [netdef.TRAIN, netdef.TEST])
def test_in_place_survives_a_later_in_place_layer(phase):
    """Backward reads its own copy of y: a following in-place layer (Scale, ReLU) rewrites the top."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4))
    dy = rng.standard_normal(x.shape)
    layer, b, t = build_layer("type: 'BatchNorm'", [x], phase=phase)
    layer.blobs[1].data[...] = 1
    layer.blobs[2].data[...] = 1
    (want_y,) = forward(layer, b, t)
    t[0].diff[...] = dy
    layer.backward(t, [True], b)
    want_dx = b[0].diff.copy()

    layer2, b2, _ = build_layer("type: 'BatchNorm'", [x], phase=phase)
    layer2.blobs[1].data[...] = 1
    layer2.blobs[2].data[...] = 1
    layer2.reshape(b2, b2)
    layer2.forward(b2, b2)
    np.testing.assert_allclose(b2[0].data, want_y, rtol=1e-14)
    b2[0].data[...] = 123.0  # what a later in-place layer would do
    b2[0].diff[...] = dy
    layer2.backward(b2, [True], b2)
    np.testing.assert_allclose(b2[0].diff, want_dx, rtol=1e-12, atol=1e-14)


NET_HEAD = "input: 'x' input_shape { dim: 2 dim: 3 dim: 2 dim: 2 }\n"


def test_statistics_are_not_learned_in_a_net():
    net = netdef.Net(NET_HEAD + "layer { name: 'bn' type: 'BatchNorm' bottom: 'x' top: 'y' }", netdef.TRAIN)
    bn = net.layer_dict["bn"]
    assert bn.param_propagate_down == [False, False, False]
    assert net.params_lr == [0, 0, 0]
    assert [p.lr_mult for p in bn.layer_param.param] == [0, 0, 0]
    assert len(net.params["bn"]) == 3


def test_three_param_specs_are_zeroed_as_caffes_upgrade_does():
    net = netdef.Net(NET_HEAD + """layer { name: 'bn' type: 'BatchNorm' bottom: 'x' top: 'y'
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 1 } param { lr_mult: 2 } }""", netdef.TRAIN)
    assert net.params_lr == [0, 0, 0]
    assert net.params_weight_decay == [0, 0, 0]


def test_a_learned_statistic_is_an_error():
    with pytest.raises(NetdefError, match=r"bn.*param 0 has lr_mult 1.*cannot be learned"):
        netdef.Net(NET_HEAD + """layer { name: 'bn' type: 'BatchNorm' bottom: 'x' top: 'y'
                                         param { lr_mult: 1 } }""", netdef.TRAIN)
    net = netdef.Net(NET_HEAD + """layer { name: 'bn' type: 'BatchNorm' bottom: 'x' top: 'y'
                                           param { lr_mult: 0 } }""", netdef.TRAIN)
    assert net.params_lr == [0, 0, 0]


def test_channel_change_is_a_shape_error():
    layer, b, t = build_layer("type: 'BatchNorm'", [np.ones((2, 3, 4))])
    b[0].reshape(2, 5, 4)
    with pytest.raises(NetdefError, match=r"\(2, 5, 4\).*3 channels"):
        layer.reshape(b, t)


# ---- a ResNet-style snippet with weights in Caffe's layout ------------------------------------

SNIPPET = """
name: 'resnet_snippet'
layer { name: 'data' type: 'Input' top: 'conv1' input_param { shape { dim: 2 dim: 4 dim: 3 dim: 5 } } }
layer { name: 'bn_conv1' type: 'BatchNorm' bottom: 'conv1' top: 'conv1' }
layer { name: 'scale_conv1' type: 'Scale' bottom: 'conv1' top: 'conv1' scale_param { bias_term: true } }
layer { name: 'conv1_relu' type: 'ReLU' bottom: 'conv1' top: 'conv1' }
layer { name: 'fc' type: 'InnerProduct' bottom: 'conv1' top: 'fc' inner_product_param { num_output: 2 } }
"""


def _snippet_model(legacy_bn_shape=False):
    rng = np.random.default_rng(9)
    C = 4
    factor = np.float32(3.5)
    mean = rng.standard_normal(C).astype(np.float32)
    var = (rng.random(C) + 0.5).astype(np.float32)
    gamma = rng.standard_normal(C).astype(np.float32)
    beta = rng.standard_normal(C).astype(np.float32)
    model = pb.NetParameter(name="resnet_snippet")
    bn = model.layer.add(name="bn_conv1", type="BatchNorm")
    for values in (mean * factor, var * factor):
        bp = bn.blobs.add()
        if legacy_bn_shape:  # old files: (1, C, 1, 1) in the legacy fields
            bp.num, bp.channels, bp.height, bp.width = 1, C, 1, 1
            bp.data.extend(values.tolist())
        else:
            blob_to_proto(values, bp)
    blob_to_proto(np.array([factor]), bn.blobs.add())
    sc = model.layer.add(name="scale_conv1", type="Scale")
    blob_to_proto(gamma, sc.blobs.add())
    blob_to_proto(beta, sc.blobs.add())
    model.layer.add(name="extra", type="Convolution").blobs.add()  # not in the net: ignored
    return model, mean, var, gamma, beta


@pytest.mark.parametrize("legacy", [False, True])
def test_resnet_snippet_loads_a_caffemodel(tmp_path, legacy):
    model, mean, var, gamma, beta = _snippet_model(legacy)
    path = tmp_path / "snippet.caffemodel"
    write_binary(model, str(path))
    net = netdef.Net(SNIPPET, netdef.TEST, weights=str(path))
    bn = net.params["bn_conv1"]
    assert [p.shape for p in bn] == [(4,), (4,), (1,)]
    np.testing.assert_allclose(bn[2].data, [3.5])
    x = np.random.default_rng(10).standard_normal((2, 4, 3, 5)).astype(np.float32)
    net.forward(conv1=x)
    v = lambda a: a.reshape(1, -1, 1, 1)
    want = np.maximum(v(gamma) * (x - v(mean)) / np.sqrt(v(var) + f32(1e-5)) + v(beta), 0)
    np.testing.assert_allclose(net.blobs["conv1"].data, want, rtol=2e-5, atol=2e-6)
    # saved back in Caffe's layout
    saved = {lp.name: lp for lp in net.to_proto().layer}
    assert [tuple(bp.shape.dim) for bp in saved["bn_conv1"].blobs] == [(4,), (4,), (1,)]
    np.testing.assert_allclose(saved["bn_conv1"].blobs[2].data, [3.5])


def test_resnet_snippet_trains_without_touching_the_statistics_gradients():
    model, *_ = _snippet_model()
    text = SNIPPET.replace("num_output: 2 }", "num_output: 2 weight_filler { type: 'gaussian' } } loss_weight: 1")
    net = netdef.Net(text,
                     netdef.TRAIN, weights=model, dtype=np.float64)
    assert net.params_lr == [0, 0, 0, 1, 1, 1, 1]  # bn_conv1 (3), scale_conv1 (2), fc (2)
    net.forward(conv1=np.random.default_rng(11).standard_normal((2, 4, 3, 5)))
    net.backward()
    bn = net.params["bn_conv1"]
    assert bn[2].data[0] == pytest.approx(3.5 * f32(0.999) + 1)  # TRAIN updated the sums
    assert all(not p.has_diff or np.all(p.diff == 0) for p in bn)
    assert np.any(net.params["scale_conv1"][0].diff != 0)


# ---- GPU ---------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(2, 16, 13, 11), (8, 5), (1, 3, 70, 90)], ids=str)
@pytest.mark.parametrize("global_stats", [False, True])
def test_gpu_matches_cpu(shape, global_stats):
    rng = np.random.default_rng(12)
    x = rng.standard_normal(shape) * 2 + 1
    dy = rng.standard_normal(shape)
    C = shape[1]
    stats = [rng.standard_normal(C), rng.random(C) + 0.5, np.array([2.5])]
    outs = []
    for which in ("cpu", "gpu"):
        backend = netdef.get_backend(which)
        text = f"type: 'BatchNorm' batch_norm_param {{ use_global_stats: {str(global_stats).lower()} }}"
        layer, b, t = build_layer(text, [x], dtype=np.float32, backend=backend)
        for p, s in zip(layer.blobs, stats):
            p.data[...] = backend.asarray(s, dtype=np.float32)
        layer.forward(b, t)
        t[0].diff[...] = backend.asarray(dy, dtype=np.float32)
        layer.backward(t, [True], b)
        backend.synchronize()
        outs.append([t[0].to_numpy(), b[0].to_numpy(diff=True)] + [p.to_numpy() for p in layer.blobs])
    for k, (c, g) in enumerate(zip(*outs)):
        np.testing.assert_allclose(g, c, rtol=2e-4, atol=2e-5, err_msg=f"array {k}")
