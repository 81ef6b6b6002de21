"""LSTMUnit against a numpy cell, cont = 0 resets, the finite-difference gradient of c_prev and
the gates, shape errors, GPU against CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError, ShapeError

PROTO = "name: 'lstm_unit' type: 'LSTMUnit' top: 'c' top: 'h'"


def sig(v):
    return 1 / (1 + np.exp(-v))


def data(seed, N=3, D=5):
    rng = np.random.default_rng(seed)
    cont = (np.arange(N) % 3 != 1).astype(float).reshape(1, N)  # some rows start a sequence
    return rng.standard_normal((1, N, D)), rng.standard_normal((1, N, 4 * D)) * 1.5, cont


def test_against_numpy_cell():
    c_prev, x, cont = data(0)
    layer, b, top = build_layer(PROTO, [c_prev, x, cont])
    c, h = forward(layer, b, top)
    D = c_prev.shape[2]
    for n in range(c_prev.shape[1]):
        g = x[0, n]
        i, f, o, gg = sig(g[:D]), sig(g[D:2 * D]), sig(g[2 * D:3 * D]), np.tanh(g[3 * D:])
        cc = cont[0, n] * f * c_prev[0, n] + i * gg
        np.testing.assert_allclose(c[0, n], cc, rtol=1e-12)
        np.testing.assert_allclose(h[0, n], o * np.tanh(cc), rtol=1e-12)
    np.testing.assert_allclose(c[0, 1], sig(x[0, 1, :D]) * np.tanh(x[0, 1, 3 * D:]), rtol=1e-12)  # reset


@pytest.mark.parametrize("N,D", [(3, 5), (1, 1), (4, 2)])
def test_gradient(N, D):
    check_gradients(PROTO, list(data(N + D, N, D)))


def test_errors():
    c_prev, x, cont = data(1)
    with pytest.raises(ShapeError, match="4D"):
        build_layer(PROTO, [c_prev, x[:, :, :-1], cont])
    with pytest.raises(ShapeError, match="1 x N x D"):
        build_layer(PROTO, [c_prev.reshape(3, 5), x, cont])
    with pytest.raises(ShapeError, match="cont"):
        build_layer(PROTO, [c_prev, x, cont.reshape(3)])
    layer, b, top = build_layer(PROTO, [c_prev, x, cont])
    forward(layer, b, top)
    with pytest.raises(NetdefError, match="continuation"):
        layer.backward(top, [True, True, True], b)


@pytest.mark.gpu
def test_gpu_matches_cpu():
    compare_devices(PROTO, list(data(2, 4, 7)))
