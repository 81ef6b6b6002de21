"""The elementwise layers Sigmoid, TanH, AbsVal, Power, Exp, Log, BNLL, ELU and PReLU:
forward against numpy references written here, float64 gradient checks, in-place runs equal to
out-of-place ones, error cases, GPU against CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError


def f32(v):
    """A prototxt float parameter as the layer sees it (float32 in the schema)."""
    return float(np.float32(v))


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))


def _prelu_ref(slope_of_channel):
    def ref(x):
        a = np.asarray(slope_of_channel(x.shape[1]), dtype=np.float64)
        a = a.reshape((1, -1) + (1,) * (x.ndim - 2)) if a.ndim else a
        return np.where(x > 0, x, a * x)
    return ref


# (prototxt, numpy reference, input domain) -- domain "pos" draws x > 0 (Log, fractional Power),
# "kink" keeps |x| >= 0.05 where the derivative jumps at 0.
CASES = {
    "sigmoid": ("type: 'Sigmoid'", _sigmoid, None),
    "tanh": ("type: 'TanH'", np.tanh, None),
    "absval": ("type: 'AbsVal'", np.abs, "kink"),
    "power_default": ("type: 'Power'", lambda x: x, None),
    "power_square": ("type: 'Power' power_param { power: 2 scale: 0.5 shift: -1 }",
                     lambda x: (-1 + 0.5 * x) ** 2, None),
    "power_cube": ("type: 'Power' power_param { power: 3 scale: -1.5 shift: 0.25 }",
                   lambda x: (0.25 - 1.5 * x) ** 3, None),
    "power_sqrt": ("type: 'Power' power_param { power: 0.5 scale: 2 shift: 0.5 }",
                   lambda x: np.sqrt(0.5 + 2 * x), "pos"),
    "power_neg": ("type: 'Power' power_param { power: -1.5 scale: 1 shift: 1 }",
                  lambda x: (1 + x) ** -1.5, "pos"),
    "power_zero": ("type: 'Power' power_param { power: 0 scale: 3 shift: 2 }",
                   lambda x: np.ones_like(x), None),
    "power_scale0": ("type: 'Power' power_param { power: 2 scale: 0 shift: 3 }",
                     lambda x: np.full_like(x, 9.0), None),
    "power_linear": ("type: 'Power' power_param { power: 1 scale: -2 shift: 0.5 }",
                     lambda x: 0.5 - 2 * x, None),
    "exp_default": ("type: 'Exp'", np.exp, None),
    "exp_e_scaled": ("type: 'Exp' exp_param { scale: -0.5 shift: 0.3 }",
                     lambda x: np.exp(f32(0.3) - 0.5 * x), None),
    "exp_base2": ("type: 'Exp' exp_param { base: 2 scale: 1.5 shift: -1 }",
                  lambda x: 2.0 ** (-1 + 1.5 * x), None),
    "log_default": ("type: 'Log'", np.log, "pos"),
    "log_base10": ("type: 'Log' log_param { base: 10 scale: 2 shift: 0.5 }",
                   lambda x: np.log10(0.5 + 2 * x), "pos"),
    "log_base_half": ("type: 'Log' log_param { base: 0.5 scale: 1 shift: 0 }",
                      lambda x: np.log(x) / np.log(0.5), "pos"),
    "bnll": ("type: 'BNLL'", lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0), None),
    "elu_default": ("type: 'ELU'", lambda x: np.where(x > 0, x, np.exp(x) - 1), "kink"),
    "elu_alpha": ("type: 'ELU' elu_param { alpha: 0.4 }", lambda x: np.where(x > 0, x, f32(0.4) * (np.exp(x) - 1)),
                  "kink"),
    "elu_zero": ("type: 'ELU' elu_param { alpha: 0 }", lambda x: np.maximum(x, 0), "kink"),
    "elu_negative": ("type: 'ELU' elu_param { alpha: -0.7 }",
                     lambda x: np.where(x > 0, x, f32(-0.7) * (np.exp(x) - 1)), "kink"),
    "prelu_default": ("type: 'PReLU'", _prelu_ref(lambda c: [0.25] * c), "kink"),
    "prelu_filler": ("type: 'PReLU' prelu_param { filler { type: 'constant' value: -0.3 } }",
                     _prelu_ref(lambda c: [f32(-0.3)] * c), "kink"),
    "prelu_shared": ("type: 'PReLU' prelu_param { channel_shared: true filler { type: 'constant' value: 0.6 } }",
                     _prelu_ref(lambda c: f32(0.6)), "kink"),
    "prelu_random": ("type: 'PReLU' prelu_param { filler { type: 'uniform' min: -1 max: 1 } }", None, "kink"),
}


def _input(rng, shape, domain):
    x = rng.standard_normal(shape)
    if domain == "pos":
        return np.abs(x) + 0.2
    if domain == "kink":
        return np.where(np.abs(x) < 0.05, 0.1, x)
    return x


SHAPES = [(2, 3, 5, 7), (1, 1, 1, 1), (3, 4), (2, 5, 3), (4, 2, 1, 3, 2)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_matches_numpy(case, shape):
    proto, ref, domain = CASES[case]
    x = _input(np.random.default_rng(hash(case) % 1000), shape, domain)
    layer, b, t = build_layer(proto, [x])
    (y,) = forward(layer, b, t)
    if ref is None:  # random slopes: the reference reads them from the layer
        a = layer.blobs[0].to_numpy()
        ref = _prelu_ref(lambda c: a)
    np.testing.assert_allclose(y, ref(x), rtol=1e-12, atol=1e-12)


def test_saturating_inputs_stay_finite():
    x = np.array([[-800.0, -60.0, -20.0, 0.0, 20.0, 60.0, 800.0]])
    for proto in ("type: 'Sigmoid'", "type: 'TanH'", "type: 'BNLL'", "type: 'ELU'"):
        for dt in (np.float32, np.float64):
            layer, b, t = build_layer(proto, [x], dtype=dt)
            (y,) = forward(layer, b, t)
            assert np.all(np.isfinite(y)), (proto, dt, y)
            t[0].diff[...] = 1
            layer.backward(t, [True], b)
            assert np.all(np.isfinite(b[0].diff)), (proto, dt, b[0].diff)
    layer, b, t = build_layer("type: 'BNLL'", [x])
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, [[0, 8.75651e-27, 2.0611536e-9, np.log(2), 20.0000000021, 60, 800]], rtol=1e-6)
    t[0].diff[...] = 1
    layer.backward(t, [True], b)
    np.testing.assert_allclose(b[0].diff, _sigmoid(x), rtol=1e-9)  # tiny slopes stay exact


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient(case):
    proto, _, domain = CASES[case]
    x = _input(np.random.default_rng(5), (2, 3, 3, 4), domain)
    check_gradients(proto, [x])


@pytest.mark.parametrize("shape", [(3, 4), (2, 1, 5), (1, 3, 2, 2, 3)], ids=str)
@pytest.mark.parametrize("shared", [False, True])
def test_prelu_gradient_shapes(shape, shared):
    x = _input(np.random.default_rng(6), shape, "kink")
    check_gradients("type: 'PReLU' prelu_param { channel_shared: %s filler { type: 'gaussian' } }"
                    % str(shared).lower(), [x])


def test_prelu_param_shape_and_slope_gradient_by_hand():
    x = np.array([[[1.0, -2.0], [-3.0, 4.0]], [[-1.0, -1.0], [2.0, -5.0]]])  # (N=2, C=2, 2)
    layer, b, t = build_layer("type: 'PReLU'", [x])
    assert layer.blobs[0].shape == (2,)
    np.testing.assert_array_equal(layer.blobs[0].data, [0.25, 0.25])
    forward(layer, b, t)
    t[0].diff[...] = np.arange(8.0).reshape(x.shape) + 1
    layer.blobs[0].diff[...] = 10  # param gradients accumulate
    layer.backward(t, [True], b)
    dy = t[0].diff
    neg = x <= 0
    want = [(dy * x * neg)[:, c].sum() for c in range(2)]
    np.testing.assert_allclose(layer.blobs[0].diff, 10 + np.array(want))
    np.testing.assert_allclose(b[0].diff, np.where(x > 0, dy, 0.25 * dy))
    shared, b2, t2 = build_layer("type: 'PReLU' prelu_param { channel_shared: true }", [x])
    assert shared.blobs[0].shape == ()  # Caffe stores the shared slope as a 0-axis blob


IN_PLACE = [c for c in sorted(CASES) if not c.startswith("absval")]


@pytest.mark.parametrize("case", IN_PLACE)
def test_in_place_equals_out_of_place(case):
    proto, _, domain = CASES[case]
    rng = np.random.default_rng(9)
    x = _input(rng, (2, 3, 4, 3), domain)
    dy = rng.standard_normal(x.shape)
    layer, b, t = build_layer(proto, [x])
    (want_y,) = forward(layer, b, t)
    t[0].diff[...] = dy
    for p in layer.blobs:
        p.diff[...] = 0
    layer.backward(t, [True], b)
    want_dx = b[0].diff.copy()
    want_dp = [p.diff.copy() for p in layer.blobs]

    layer2, b2, _ = build_layer(proto, [x])
    layer2.reshape(b2, b2)
    layer2.forward(b2, b2)  # top is the bottom
    np.testing.assert_allclose(b2[0].data, want_y, rtol=1e-13, atol=1e-13)
    b2[0].diff[...] = dy
    for p in layer2.blobs:
        p.diff[...] = 0
    layer2.backward(b2, [True], b2)
    np.testing.assert_allclose(b2[0].diff, want_dx, rtol=1e-12, atol=1e-12)
    for got, want in zip(layer2.blobs, want_dp):
        np.testing.assert_allclose(got.diff, want, rtol=1e-12, atol=1e-12)


def test_in_place_chain_in_a_net():
    net = netdef.Net("""
      force_backward: true
      input: 'x' input_shape { dim: 2 dim: 3 dim: 2 dim: 2 }
      layer { name: 'p' type: 'Power' bottom: 'x' top: 'x' power_param { power: 2 shift: 1 } }
      layer { name: 'l' type: 'Log' bottom: 'x' top: 'x' }
      layer { name: 'a' type: 'PReLU' bottom: 'x' top: 'x' }
      layer { name: 's' type: 'Sigmoid' bottom: 'x' top: 'x' }
      layer { name: 'loss' type: 'InnerProduct' bottom: 'x' top: 'loss' loss_weight: 1
              inner_product_param { num_output: 1 weight_filler { type: 'constant' value: 1 } } }
    """, netdef.TRAIN, dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((2, 3, 2, 2))
    net.forward(x=x)
    dx = net.backward()["x"]
    # y = sigmoid(prelu(log((1 + x)^2))), PReLU slope 0.25
    z = np.log((1 + x) ** 2)
    slope = np.where(z > 0, 1.0, 0.25)
    s = _sigmoid(slope * z)
    np.testing.assert_allclose(net.blobs["x"].data, s, rtol=1e-12)
    np.testing.assert_allclose(dx, s * (1 - s) * slope * 2 / (1 + x), rtol=1e-9)


@pytest.mark.parametrize("proto, match", [
    ("type: 'Exp' exp_param { base: 0 }", "strictly positive"),
    ("type: 'Exp' exp_param { base: -2 }", "strictly positive"),
    ("type: 'Log' log_param { base: -0.5 }", "strictly positive"),
    ("type: 'Log' log_param { base: 1 }", "base 1"),
])
def test_bad_parameters(proto, match):
    with pytest.raises(NetdefError, match=match):
        build_layer(proto, [np.ones((2, 2))])


def test_prelu_shape_errors():
    with pytest.raises(NetdefError, match=r"fewer than 2 axes"):
        build_layer("type: 'PReLU'", [np.ones(5)])
    layer, b, t = build_layer("type: 'PReLU'", [np.ones((2, 3, 4))])
    b[0].reshape(2, 4, 4)
    with pytest.raises(NetdefError, match=r"\(2, 4, 4\).*3 channels"):
        layer.reshape(b, t)


def test_absval_refuses_in_place():
    with pytest.raises(NetdefError, match="AbsVal.*in place"):
        netdef.Net("""input: 'x' input_shape { dim: 2 dim: 3 }
                      layer { name: 'a' type: 'AbsVal' bottom: 'x' top: 'x' }""")


def test_prelu_loads_caffe_shaped_params():
    from netdef import netdef_pb2 as pb
    from netdef.proto import blob_to_proto

    text = """input: 'x' input_shape { dim: 1 dim: 3 dim: 2 dim: 2 }
              layer { name: 'pc' type: 'PReLU' bottom: 'x' top: 'y' }
              layer { name: 'ps' type: 'PReLU' bottom: 'y' top: 'z' prelu_param { channel_shared: true } }"""
    model = pb.NetParameter()
    for name, value in (("pc", np.array([0.1, -0.2, 0.3], np.float32)), ("ps", np.array(0.5, np.float32))):
        lp = model.layer.add(name=name, type="PReLU")
        blob_to_proto(value, lp.blobs.add())
    net = netdef.Net(text, netdef.TEST, weights=model)
    x = -np.ones((1, 3, 2, 2), np.float32)
    np.testing.assert_allclose(net.forward(x=x)["z"][0, :, 0, 0], [-0.05, 0.2, -0.15], rtol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("case", sorted(CASES))
def test_gpu_matches_cpu(case):
    proto, _, domain = CASES[case]
    x = _input(np.random.default_rng(3), (2, 3, 9, 11), domain)
    compare_devices(proto, [x], rtol=2e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["power_sqrt", "log_base10", "prelu_random", "elu_negative"])
def test_gpu_in_place(case):
    proto, _, domain = CASES[case]
    x = _input(np.random.default_rng(4), (2, 3, 5, 4), domain)
    dy = np.random.default_rng(5).standard_normal(x.shape)
    outs = []
    for which in ("cpu", "gpu"):
        backend = netdef.get_backend(which)
        layer, b, _ = build_layer(proto, [x], dtype=np.float32, backend=backend)
        layer.reshape(b, b)
        layer.forward(b, b)
        b[0].diff[...] = backend.asarray(dy, dtype=np.float32)
        for p in layer.blobs:
            p.diff[...] = 0
        layer.backward(b, [True], b)
        outs.append([b[0].to_numpy(), b[0].to_numpy(diff=True)] + [p.to_numpy(diff=True) for p in layer.blobs])
    for c, g in zip(*outs):
        np.testing.assert_allclose(g, c, rtol=2e-4, atol=1e-5)
