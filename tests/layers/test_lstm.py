"""LSTM and RNN (Caffe's recurrent layers unrolled into an internal net): against independent
numpy loops over T with cont = 0 resets, batch > 1, a static input and exposed hidden state;
the state carried between forwards; Caffe's param order and shapes, loading from a
caffemodel-style NetParameter; the finite-difference gradient (T = 1, resets, expose_hidden);
errors; a net with an LSTM that trains; GPU against CPU."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef import netdef_pb2 as pb
from netdef import proto as nproto
from netdef.errors import LayerSetupError, NetdefError, ShapeError


def sig(v):
    return 1 / (1 + np.exp(-v))


def lstm_ref(x, cont, W_xc, b_c, W_hc, xs=None, W_s=None, h=None, c=None):
    """Independent loop: returns (h for every step, h_T, c_T)."""
    T, N = cont.shape
    D = W_hc.shape[1]
    h = np.zeros((N, D)) if h is None else h.copy()
    c = np.zeros((N, D)) if c is None else c.copy()
    out = np.zeros((T, N, D))
    for t in range(T):
        for n in range(N):
            k = cont[t, n]
            a = W_xc @ x[t, n].reshape(-1) + b_c + W_hc @ (k * h[n])
            if xs is not None:
                a = a + W_s @ xs[n].reshape(-1)
            i, f, o, g = sig(a[:D]), sig(a[D:2 * D]), sig(a[2 * D:3 * D]), np.tanh(a[3 * D:])
            c[n] = k * f * c[n] + i * g
            h[n] = o * np.tanh(c[n])
        out[t] = h
    return out, h, c


def rnn_ref(x, cont, W_xh, b_h, W_hh, W_ho, b_o, xs=None, W_s=None, h=None):
    T, N = cont.shape
    D = W_hh.shape[0]
    h = np.zeros((N, D)) if h is None else h.copy()
    out = np.zeros((T, N, D))
    for t in range(T):
        for n in range(N):
            a = W_xh @ x[t, n].reshape(-1) + b_h + W_hh @ (cont[t, n] * h[n])
            if xs is not None:
                a = a + W_s @ xs[n].reshape(-1)
            h[n] = np.tanh(a)
            out[t, n] = np.tanh(W_ho @ h[n] + b_o)
    return out, h


def proto(kind="LSTM", D=3, expose=False, bottoms=2):
    tops = "top: 'y'" + (" top: 'hT'" + (" top: 'cT'" if kind == "LSTM" else "") if expose else "")
    return f"""name: 'rec' type: '{kind}' {tops}
      recurrent_param {{ num_output: {D} weight_filler {{ type: 'gaussian' std: 0.5 }}
                        bias_filler {{ type: 'uniform' min: -0.5 max: 0.5 }}
                        expose_hidden: {str(expose).lower()} }}"""


def data(T, N, K, seed, static=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, N, K))
    cont = np.ones((T, N))
    cont[0] = 0
    if T > 2:
        cont[2, 0] = 0  # a new sequence starts in stream 0 at step 2
    return [x, cont] + ([rng.standard_normal((N, 2))] if static else [])


@pytest.mark.parametrize("static", [False, True])
def test_lstm_against_numpy_loop(static):
    bottoms = data(4, 3, 5, 0, static)
    layer, b, top = build_layer(proto("LSTM", 3), bottoms)
    (y,) = forward(layer, b, top)
    P = [layer.backend.to_numpy(p.data) for p in layer.blobs]
    shapes = [(12, 5), (12,)] + ([(12, 2)] if static else []) + [(12, 3)]
    assert [p.shape for p in P] == shapes  # Caffe's order: W_xc, b_c, [W_xc_static], W_hc
    W_s = P[2] if static else None
    ref, hT, cT = lstm_ref(bottoms[0], bottoms[1], P[0], P[1], P[-1],
                           bottoms[2] if static else None, W_s)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
    # without expose_hidden, the next forward starts from this one's final state
    x2 = np.random.default_rng(9).standard_normal((4, 3, 5))
    cont2 = np.ones((4, 3))
    b[0].data[...] = x2
    b[1].data[...] = cont2
    (y2,) = forward(layer, b, top)
    ref2, _, _ = lstm_ref(x2, cont2, P[0], P[1], P[-1], bottoms[2] if static else None, W_s, hT, cT)
    np.testing.assert_allclose(y2, ref2, rtol=1e-10, atol=1e-12)


def test_lstm_expose_hidden():
    x, cont = data(3, 2, 4, 1)
    rng = np.random.default_rng(2)
    h0, c0 = rng.standard_normal((1, 2, 3)), rng.standard_normal((1, 2, 3))
    cont[0] = 1  # carry the given state in
    layer, b, top = build_layer(proto("LSTM", 3, expose=True), [x, cont, h0, c0])
    y, hT, cT = forward(layer, b, top)
    P = [layer.backend.to_numpy(p.data) for p in layer.blobs]
    ref, rh, rc = lstm_ref(x, cont, P[0], P[1], P[2], h=h0[0], c=c0[0])
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hT[0], rh, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cT[0], rc, rtol=1e-10, atol=1e-12)
    check_gradients(proto("LSTM", 2, expose=True), [x, cont, h0[..., :2], c0[..., :2]],
                    max_checks=12)


@pytest.mark.parametrize("static", [False, True])
def test_rnn_against_numpy_loop(static):
    bottoms = data(3, 2, 4, 3, static)
    layer, b, top = build_layer(proto("RNN", 3), bottoms)
    (y,) = forward(layer, b, top)
    P = [layer.backend.to_numpy(p.data) for p in layer.blobs]
    shapes = [(3, 4), (3,)] + ([(3, 2)] if static else []) + [(3, 3), (3, 3), (3,)]
    assert [p.shape for p in P] == shapes  # W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o
    s = 1 if static else 0
    ref, _ = rnn_ref(bottoms[0], bottoms[1], P[0], P[1], P[2 + s], P[3 + s], P[4 + s],
                     bottoms[2] if static else None, P[2] if static else None)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind,T,static", [("LSTM", 3, False), ("LSTM", 1, True), ("RNN", 3, True),
                                           ("RNN", 1, False)])
def test_gradient(kind, T, static):
    check_gradients(proto(kind, 2), data(T, 2, 3, 4, static), max_checks=10)


def test_loads_caffe_param_blobs():
    """A caffemodel holds the layer's blobs in Caffe's order; the unrolled net uses them."""
    x, cont = data(3, 2, 4, 5)
    rng = np.random.default_rng(6)
    W_xc, b_c, W_hc = rng.standard_normal((8, 4)), rng.standard_normal(8), rng.standard_normal((8, 2))
    text = """layer { name: 'in' type: 'Input' top: 'x' top: 'cont'
                      input_param { shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 dim: 2 } } }
              layer { name: 'lstm' type: 'LSTM' bottom: 'x' bottom: 'cont' top: 'h'
                      recurrent_param { num_output: 2 } }"""
    model = pb.NetParameter()
    lp = model.layer.add(name="lstm", type="LSTM")
    for a in (W_xc, b_c, W_hc):
        nproto.blob_to_proto(a, lp.blobs.add())
    net = netdef.Net(text, netdef.TEST, dtype=np.float64)
    net.copy_from(model)
    net.blobs["x"].data[...] = x
    net.blobs["cont"].data[...] = cont
    np.testing.assert_allclose(net.forward()["h"], lstm_ref(x, cont, W_xc, b_c, W_hc)[0], rtol=1e-10)
    assert list(net.params) == ["lstm"] and len(net.params["lstm"]) == 3


def test_errors():
    x, cont = data(3, 2, 4, 7)
    with pytest.raises(LayerSetupError, match="num_output must be positive"):
        build_layer("type: 'LSTM' recurrent_param { num_output: 0 }", [x, cont])
    with pytest.raises(ShapeError, match=r"cont \(bottom\[1\]\)"):
        build_layer(proto(), [x, cont[:, :1]])
    with pytest.raises(LayerSetupError, match="takes 4 or 5 bottom"):
        build_layer(proto(expose=True), [x, cont], num_tops=3)
    layer, b, top = build_layer(proto(), [x, cont])
    b[0].reshape((4, 2, 4))
    b[1].reshape((4, 2))
    with pytest.raises(ShapeError, match="time steps changed from 3 to 4"):
        layer.reshape(b, top)
    layer, b, top = build_layer(proto(), [x, cont])
    forward(layer, b, top)
    with pytest.raises(NetdefError, match="continuation"):
        layer.backward(top, [True, True], b)


def test_net_with_lstm_trains(tmp_path):
    net = """name: 'seq'
      layer { name: 'in' type: 'Input' top: 'x' top: 'cont' top: 'target'
        input_param { shape { dim: 5 dim: 4 dim: 3 } shape { dim: 5 dim: 4 } shape { dim: 5 dim: 4 dim: 1 } } }
      layer { name: 'lstm' type: 'LSTM' bottom: 'x' bottom: 'cont' top: 'h'
        recurrent_param { num_output: 6 weight_filler { type: 'uniform' min: -0.3 max: 0.3 }
                          bias_filler { type: 'constant' value: 0 } } }
      layer { name: 'fc' type: 'InnerProduct' bottom: 'h' top: 'pred'
        inner_product_param { num_output: 1 axis: 2 weight_filler { type: 'gaussian' std: 0.3 } } }
      layer { name: 'loss' type: 'EuclideanLoss' bottom: 'pred' bottom: 'target' top: 'loss' }"""
    (tmp_path / "net.prototxt").write_text(net)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.2\nmomentum: 0.9\nlr_policy: "fixed"\nmax_iter: 40\n'
        'random_seed: 3\nsnapshot_after_train: false\nsolver_mode: CPU\n')
    solver = netdef.get_solver(str(tmp_path / "solver.prototxt"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4, 3))
    cont = np.ones((5, 4))
    cont[0] = 0
    n = solver.net
    n.blobs["x"].data[...] = x
    n.blobs["cont"].data[...] = cont
    n.blobs["target"].data[...] = np.cumsum(x[..., :1], axis=0) * 0.3  # needs memory over time
    first = n.forward()["loss"].item()
    solver.step(40)
    last = n.forward()["loss"].item()
    assert last < 0.5 * first, (first, last)


@pytest.mark.gpu
def test_gpu_matches_cpu():
    compare_devices(proto("LSTM", 3), data(3, 2, 4, 8, True), rtol=1e-4, atol=1e-5)
