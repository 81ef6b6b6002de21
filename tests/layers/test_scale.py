"""Scale: one-bottom (learned scale) and two-bottom forms, axis / num_axes, bias_term, fillers,
against numpy broadcasting written here; gradient checks for bottoms and params; in place;
errors; GPU against CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError


def bcast(v, shape, axis):
    """v (covering shape[axis : axis + v.ndim]) reshaped to broadcast against shape."""
    axis = axis % len(shape) if v.ndim else 0
    return v.reshape((1,) * axis + v.shape + (1,) * (len(shape) - axis - v.ndim))


ONE_BOTTOM = [  # (bottom shape, axis, num_axes) -> param shape shape[axis : axis + num_axes]
    ((2, 3, 4, 5), 1, 1),
    ((2, 3, 4, 5), 0, -1),
    ((2, 3, 4, 5), 1, 2),
    ((2, 3, 4, 5), -1, 1),
    ((2, 3, 4, 5), 2, 0),   # a scalar
    ((3, 5), 1, 1),
    ((4, 3, 1, 5), 2, -1),
    ((2, 7, 3), 0, 2),
]


def _axis_params(axis, num_axes):
    return f"axis: {axis} num_axes: {num_axes}"


@pytest.mark.parametrize("shape, axis, num_axes", ONE_BOTTOM)
@pytest.mark.parametrize("bias", [False, True])
def test_one_bottom_forward(shape, axis, num_axes, bias):
    x = np.random.default_rng(0).standard_normal(shape)
    text = (f"type: 'Scale' scale_param {{ {_axis_params(axis, num_axes)} bias_term: {str(bias).lower()} "
            "filler { type: 'gaussian' } bias_filler { type: 'uniform' min: -1 max: 1 } }")
    layer, b, t = build_layer(text, [x])
    a = axis % len(shape)
    want_shape = shape[a:] if num_axes == -1 else shape[a:a + num_axes]
    assert [p.shape for p in layer.blobs] == [want_shape] * (2 if bias else 1)
    (y,) = forward(layer, b, t)
    s = layer.blobs[0].to_numpy()
    want = x * bcast(s, shape, axis)
    if bias:
        want = want + bcast(layer.blobs[1].to_numpy(), shape, axis)
    np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-13)


def test_default_fillers_make_the_identity():
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    layer, b, t = build_layer("type: 'Scale' scale_param { bias_term: true }", [x])
    np.testing.assert_array_equal(layer.blobs[0].data, [1, 1, 1])
    np.testing.assert_array_equal(layer.blobs[1].data, [0, 0, 0])
    np.testing.assert_array_equal(forward(layer, b, t)[0], x)


TWO_BOTTOMS = [  # (bottom shape, scale shape, axis)
    ((2, 3, 4, 5), (3,), 1),
    ((2, 3, 4, 5), (3, 4), 1),
    ((2, 3, 4, 5), (2, 3, 4, 5), 0),
    ((2, 3, 4, 5), (), 1),         # scalar: axis is irrelevant
    ((2, 3, 4, 5), (4, 5), -2),
    ((6, 4), (4,), 1),
]


@pytest.mark.parametrize("shape, sshape, axis", TWO_BOTTOMS)
@pytest.mark.parametrize("bias", [False, True])
def test_two_bottom_forward(shape, sshape, axis, bias):
    rng = np.random.default_rng(2)
    x, s = rng.standard_normal(shape), rng.standard_normal(sshape)
    text = (f"type: 'Scale' scale_param {{ axis: {axis} num_axes: 3 bias_term: {str(bias).lower()} "
            "bias_filler { type: 'gaussian' } }")  # num_axes is not used with two bottoms
    layer, b, t = build_layer(text, [x, s])
    assert [p.shape for p in layer.blobs] == ([sshape] if bias else [])
    (y,) = forward(layer, b, t)
    want = x * bcast(s, shape, axis)
    if bias:
        want = want + bcast(layer.blobs[0].to_numpy(), shape, axis)
    np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("shape, axis, num_axes", ONE_BOTTOM[:6])
def test_gradient_one_bottom(shape, axis, num_axes):
    x = np.random.default_rng(3).standard_normal(shape)
    check_gradients(f"type: 'Scale' scale_param {{ {_axis_params(axis, num_axes)} bias_term: true "
                    "filler { type: 'gaussian' } bias_filler { type: 'gaussian' } }", [x], max_checks=40)


@pytest.mark.parametrize("shape, sshape, axis", TWO_BOTTOMS)
def test_gradient_two_bottoms(shape, sshape, axis):
    rng = np.random.default_rng(4)
    x, s = rng.standard_normal(shape), rng.standard_normal(sshape)
    check_gradients(f"type: 'Scale' scale_param {{ axis: {axis} bias_term: true bias_filler {{ type: 'gaussian' }} }}",
                    [x, s], max_checks=40)


def test_param_gradients_accumulate_and_bottom1_gradient_is_written():
    rng = np.random.default_rng(5)
    x, s = rng.standard_normal((2, 3, 4)), rng.standard_normal(3)
    dy = rng.standard_normal(x.shape)
    layer, b, t = build_layer("type: 'Scale' scale_param { bias_term: true }", [x, s])
    forward(layer, b, t)
    t[0].diff[...] = dy
    layer.blobs[0].diff[...] = 1.0
    b[1].diff[...] = 99.0
    layer.backward(t, [True, True], b)
    np.testing.assert_allclose(b[1].diff, (dy * x).sum(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(layer.blobs[0].diff, 1.0 + dy.sum(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(b[0].diff, dy * s.reshape(1, 3, 1), rtol=1e-12)


@pytest.mark.parametrize("text, bottoms", [
    ("type: 'Scale' scale_param { bias_term: true filler { type: 'gaussian' } bias_filler { type: 'gaussian' } }",
     [(2, 3, 4, 5)]),
    ("type: 'Scale' scale_param { axis: 0 num_axes: 0 filler { type: 'gaussian' } }", [(2, 3, 4)]),
    ("type: 'Scale' scale_param { bias_term: true bias_filler { type: 'gaussian' } }", [(2, 3, 4), (3, 4)]),
])
def test_in_place_equals_out_of_place(text, bottoms):
    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal(s) for s in bottoms]
    dy = rng.standard_normal(bottoms[0])
    prop = [True] * len(bottoms)
    layer, b, t = build_layer(text, arrays)
    (want_y,) = forward(layer, b, t)
    t[0].diff[...] = dy
    for p in layer.blobs:
        p.diff[...] = 0
    layer.backward(t, prop, b)
    want = [x.diff.copy() for x in b] + [p.diff.copy() for p in layer.blobs]

    layer2, b2, _ = build_layer(text, arrays)
    layer2.reshape(b2, b2[:1])
    layer2.forward(b2, b2[:1])
    np.testing.assert_allclose(b2[0].data, want_y, rtol=1e-14)
    b2[0].diff[...] = dy
    for p in layer2.blobs:
        p.diff[...] = 0
    layer2.backward(b2[:1], prop, b2)
    for got, w in zip([x.diff for x in b2] + [p.diff for p in layer2.blobs], want):
        np.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-14)


def test_in_place_in_a_net():
    net = netdef.Net("""
      force_backward: true
      input: 'x' input_shape { dim: 2 dim: 3 }
      layer { name: 's' type: 'Scale' bottom: 'x' top: 'x'
              scale_param { bias_term: true filler { type: 'constant' value: 2 } } }
      layer { name: 'loss' type: 'InnerProduct' bottom: 'x' top: 'loss' loss_weight: 1
              inner_product_param { num_output: 1 weight_filler { type: 'constant' value: 1 } } }
    """, netdef.TRAIN, dtype=np.float64)
    x = np.arange(6.0).reshape(2, 3)
    net.forward(x=x)
    np.testing.assert_allclose(net.blobs["x"].data, 2 * x)
    net.backward()
    np.testing.assert_allclose(net.params["s"][0].diff, x.sum(axis=0))  # from the kept input
    np.testing.assert_allclose(net.params["s"][1].diff, [2, 2, 2])


@pytest.mark.parametrize("text, bottoms, match", [
    ("type: 'Scale' scale_param { num_axes: -2 }", [(2, 3)], "num_axes must be >= 0"),
    ("type: 'Scale' scale_param { axis: 1 num_axes: 3 }", [(2, 3, 4)], r"\(2, 3, 4\) has no 3 axes from axis 1"),
    ("type: 'Scale' scale_param { axis: 4 }", [(2, 3, 4)], "axis 4 is out of range"),
    ("type: 'Scale'", [(2, 3, 4), (4,)], r"scale of shape \(4,\) does not match bottom\[0\] shape \(2, 3, 4\)"),
    ("type: 'Scale' scale_param { axis: 2 }", [(2, 3, 4), (4, 2)], r"\(4, 2\) does not match"),
    ("type: 'Scale'", [(2, 3), (3,), (3,)], "at most 2 bottom"),
])
def test_errors(text, bottoms, match):
    with pytest.raises(NetdefError, match=match):
        build_layer(text, [np.ones(s) for s in bottoms])


def test_reshape_keeps_checking_the_param_shape():
    layer, b, t = build_layer("type: 'Scale'", [np.ones((2, 3, 4))])
    b[0].reshape(2, 5, 4)
    with pytest.raises(NetdefError, match=r"\(3,\) does not match bottom\[0\] shape \(2, 5, 4\)"):
        layer.reshape(b, t)


@pytest.mark.gpu
@pytest.mark.parametrize("shape, sshape, axis", [((2, 16, 13, 11), (16,), 1), ((4, 3, 200, 300), (3,), 1),
                                                 ((5, 7), (), 0), ((3, 6, 4), (3, 6), 0)])
def test_gpu_matches_cpu(shape, sshape, axis):
    rng = np.random.default_rng(7)
    x, s = rng.standard_normal(shape), rng.standard_normal(sshape)
    compare_devices(f"type: 'Scale' scale_param {{ axis: {axis} bias_term: true bias_filler {{ type: 'gaussian' }} }}",
                    [x, s], rtol=2e-4, atol=2e-4)
    compare_devices(f"type: 'Scale' scale_param {{ axis: {axis} num_axes: {len(sshape)} bias_term: true "
                    "filler { type: 'gaussian' } }", [x], rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("parts", [2, 7, 64])
def test_strided_partial_sums_as_the_gpu_uses_them(monkeypatch, parts):
    """On a GPU the first reduction stage splits every row into `parts` strided slices; run
    that path on the CPU (parts > row length included) for Scale, Bias, BatchNorm and PReLU."""
    import netdef.layers

    netdef.layers.known_types()  # load every layer module before importing one directly
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 5, 6))
    dy = rng.standard_normal(x.shape)
    texts = ["type: 'Scale' scale_param { bias_term: true filler { type: 'gaussian' } }",
             "type: 'Scale' scale_param { axis: 0 num_axes: 0 filler { type: 'gaussian' } }",
             "type: 'Bias' bias_param { axis: 2 num_axes: 1 }",
             "type: 'BatchNorm'",
             "type: 'PReLU' prelu_param { filler { type: 'gaussian' } }",
             "type: 'PReLU' prelu_param { channel_shared: true }"]

    def run(text):
        layer, b, t = build_layer(text, [x])
        y = forward(layer, b, t)[0]
        t[0].diff[...] = dy
        for p in layer.blobs:
            p.diff[...] = 0
        layer.backward(t, [True], b)
        return [y, b[0].diff.copy()] + [p.data.copy() for p in layer.blobs] + [p.diff.copy() for p in layer.blobs]

    want = [run(text) for text in texts]
    monkeypatch.setattr(netdef.get_backend("cpu"), "reduce_parts", lambda rows, inner: parts)
    for text, w in zip(texts, want):
        for got, ref in zip(run(text), w):
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13, err_msg=text)
