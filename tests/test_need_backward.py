"""Layers in a net that plans no backward (TEST phase without force_backward) keep nothing for
one: no copy of an in-place input (Scale, PReLU), no argmax mask (Eltwise MAX, Pooling MAX), no
normalized copy (BatchNorm); their forward results equal the TRAIN-phase ones, and with
force_backward the gradients are still right (finite differences against numpy)."""
import numpy as np
import pytest

import netdef

SHAPE = (3, 5, 7, 9)  # batch > 1, odd sizes


def _net(body, phase, force, bottoms=1, in_place=True):
    inputs = "".join(f"layer {{ name: 'in{i}' type: 'Input' top: 'x{i}' input_param {{ shape {{ "
                     + " ".join(f"dim: {d}" for d in SHAPE) + " } } }\n" for i in range(bottoms))
    b = " ".join(f"bottom: 'x{i}'" for i in range(bottoms))
    top = "top: 'x0'" if in_place else "top: 'y'"
    text = ("force_backward: true\n" if force else "") + inputs + f"layer {{ name: 'L' {b} {top} {body} }}\n"
    return netdef.Net(text, phase, dtype=np.float64) if _takes_dtype() else netdef.Net(text, phase)


def _takes_dtype():
    import inspect
    return "dtype" in inspect.signature(netdef.Net.__init__).parameters


CASES = [
    ("type: 'Scale' scale_param { bias_term: true filler { type: 'uniform' min: 0.5 max: 2 } "
     "bias_filler { type: 'uniform' } }", 1, True, "x_copy"),
    ("type: 'PReLU' prelu_param { filler { type: 'uniform' min: 0.1 max: 0.5 } }", 1, True, "_x_copy"),
    ("type: 'Eltwise' eltwise_param { operation: MAX }", 3, False, "mask"),
    ("type: 'Pooling' pooling_param { pool: MAX kernel_size: 3 stride: 2 }", 1, False, "mask"),
    ("type: 'BatchNorm' batch_norm_param { use_global_stats: false }", 1, True, "x_norm"),
]


@pytest.mark.parametrize("body, bottoms, in_place, kept", CASES)
def test_test_phase_keeps_nothing_and_matches_train(body, bottoms, in_place, kept):
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal(SHAPE) for _ in range(bottoms)]
    outs = {}
    for phase, force in ((netdef.TEST, False), (netdef.TRAIN, True)):
        net = _net(body, phase, force, bottoms, in_place)
        src = net.layers[-1]
        if src.blobs and phase == netdef.TRAIN:
            for p, q in zip(src.blobs, outs["params"]):
                p.data[...] = q
        for i, x in enumerate(xs):
            net.blobs[f"x{i}"].data[...] = x
        net.forward()
        out = net.blobs["x0" if in_place else "y"].data.copy()
        layer = net.layers[-1]
        if phase == netdef.TEST:
            assert not layer.need_backward
            assert getattr(layer, kept) is None
            outs["params"] = [p.data.copy() for p in layer.blobs]
            outs["test"] = out
        else:
            assert layer.need_backward
            assert getattr(layer, kept) is not None
            np.testing.assert_allclose(out, outs["test"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("body, bottoms, in_place, kept", CASES[:4])
def test_force_backward_gradient_in_test_phase(body, bottoms, in_place, kept):
    """TEST phase with force_backward: the copies are kept and the bottom gradient is right."""
    rng = np.random.default_rng(4)
    net = _net(body, netdef.TEST, True, bottoms, in_place)
    xs = [rng.standard_normal(SHAPE) for _ in range(bottoms)]
    top = "x0" if in_place else "y"
    r = None

    def J():
        for i, x in enumerate(xs):
            net.blobs[f"x{i}"].data[...] = x
        net.forward()
        return float((net.blobs[top].data.astype(np.float64) * r).sum())

    net.forward()
    r = rng.standard_normal(net.blobs[top].shape)
    J()
    net.blobs[top].diff[...] = r
    net.backward()
    grads = [net.blobs[f"x{i}"].diff.copy() for i in range(bottoms)] if not in_place else None
    if in_place:
        return  # in place, the bottom's diff is the top's: checked through the layer tests
    h = 1e-2
    for i in range(bottoms):
        for idx in [(0, 0, 0, 0), (2, 4, 6, 8), (1, 2, 3, 4)]:
            xs[i][idx] += h
            jp = J()
            xs[i][idx] -= 2 * h
            jm = J()
            xs[i][idx] += h
            num = (jp - jm) / (2 * h)
            assert abs(num - grads[i][idx]) <= 5e-2 * max(1.0, abs(num)), (i, idx, num, grads[i][idx])


def test_eltwise_sum_three_bottoms_coeff_float64():
    from gradcheck import build_layer, check_gradients, forward
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((2, 3, 5, 7)) for _ in range(3)]
    text = "type: 'Eltwise' eltwise_param { operation: SUM coeff: 1.5 coeff: -0.5 coeff: 2 }"
    layer, b, t = build_layer(text, xs)
    (y,) = forward(layer, b, t)
    np.testing.assert_allclose(y, 1.5 * xs[0] - 0.5 * xs[1] + 2 * xs[2], rtol=1e-13, atol=1e-13)
    check_gradients(text, xs)
    for op, ref in (("PROD", xs[0] * xs[1] * xs[2]), ("MAX", np.maximum(np.maximum(xs[0], xs[1]), xs[2]))):
        layer, b, t = build_layer(f"type: 'Eltwise' eltwise_param {{ operation: {op} }}", xs)
        np.testing.assert_allclose(forward(layer, b, t)[0], ref, rtol=1e-13, atol=1e-13)
        check_gradients(f"type: 'Eltwise' eltwise_param {{ operation: {op} }}", xs)
