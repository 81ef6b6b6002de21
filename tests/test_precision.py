"""What reduced precision computes (netdef/core/precision.py, kernels/precision.cu).

* The rounding kernels against independent references: numpy's float16 cast, and a bf16
  rounding written here in float64 (quantum 2^(e - 8), ties to even, float32's subnormal
  quantum 2^-133, beyond bf16's largest value inf).
* Each GEMM layer in bf16 / fp16, forward and backward, on every product path, two ways:
  (a) exactly what the float32 layer computes from the rounded operands (inputs and weights
      forward; top diffs, inputs and weights backward; the bias gradient from the unrounded
      top diff) - bit for bit, since the product paths are the same;
  (b) within the bound the format gives against the float32 result: a product of two operands
      rounded with unit roundoff u is off by at most (2u + u^2) |x| |w|, so an output is within
      (2u + u^2) sum |x| |w| + K 2^-24 sum |x| |w| (the float32 sum's own error) of the float32
      output, with u = 2^-8 for bf16 (8 significant bits) and 2^-11 for fp16 (11); and it does
      differ from it (the rounding happens).
* fp16's range: an operand beyond 65504 becomes inf.
* Loss scaling in the solver: a static scale (a power of 2) changes nothing; a dynamic one grows
  after its interval of clean steps, skips an overflowing step (params untouched) and halves;
  its state resumes bit-identically; master weights stay float32 and save as Caffe's floats.
"""
import logging

import numpy as np
import pytest

import netdef
from gradcheck import build_layer
from netdef.backend import blas
from netdef.core.precision import FP32, LayerPrecision
from netdef.layers.base_conv import BaseConvolutionLayer

UNIT = {"bf16": 2.0 ** -8, "fp16": 2.0 ** -11}


def bf16_reference(x):
    x = np.asarray(x, dtype=np.float64)
    out = np.full_like(x, np.nan)
    ok = np.isfinite(x)
    e = np.frexp(np.abs(x[ok]))[1]
    quantum = np.ldexp(1.0, np.maximum(e - 8, -133))
    r = np.rint(x[ok] / quantum) * quantum  # rint: ties to even
    r[np.abs(r) > 3.3895313892515355e38] = np.inf * np.sign(r[np.abs(r) > 3.3895313892515355e38])
    out[ok] = r
    out[np.isinf(x)] = x[np.isinf(x)]
    return out.astype(np.float32)


def fp16_reference(x):
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


REFERENCE = {"bf16": bf16_reference, "fp16": fp16_reference}


def round_with_kernel(fmt, x, tile=None):
    be = netdef.get_backend("cpu")
    y = np.empty_like(x)
    tile = tile or x.size
    getattr(be.kernels("precision"), "round_" + fmt)(-(-x.size // tile), x, y, x.size, tile)
    return y


def awkward_values():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(20011) * 10.0 ** rng.integers(-12, 9, 20011)).astype(np.float32)
    f32 = np.finfo(np.float32)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, f32.max, -f32.max, f32.tiny, f32.tiny / 3,
               1e-45, 65504.0, 65519.996, 65520.0, -65520.0, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26,
               2.0 ** -14, 6.1e-5, 1 + 2.0 ** -8, 1 + 3 * 2.0 ** -9, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -12]
    ties = [np.float32(1 + k * 2.0 ** -8 + 2.0 ** -9) for k in range(8)]  # bf16 ties, both ways
    return np.concatenate([np.array(special + ties, dtype=np.float32), x])


@pytest.mark.parametrize("fmt", ["bf16", "fp16"])
@pytest.mark.parametrize("tile", [None, 7, 4096])
def test_rounding_kernels_match_independent_references(fmt, tile):
    x = awkward_values()
    y = round_with_kernel(fmt, x, tile)
    ref = REFERENCE[fmt](x)
    np.testing.assert_array_equal(y, ref)
    assert np.array_equal(np.signbit(y), np.signbit(ref))  # -0 stays -0
    assert np.isnan(y[4])


def test_rounding_in_place_and_representable():
    x = awkward_values()[np.isfinite(awkward_values())]
    y = x.copy()
    be = netdef.get_backend("cpu")
    be.kernels("precision").round_bf16(1, y, y, y.size, y.size)
    np.testing.assert_array_equal(y.view(np.uint32) & 0xFFFF, 0)  # bf16: the top 16 bits only
    np.testing.assert_array_equal(y, bf16_reference(x))


# ---- the layers -------------------------------------------------------------------------------
CONV_CASES = [  # (type, convolution_param, bottom shape): each product path
    ("Convolution", "num_output: 5 kernel_size: 3 pad: 1", (2, 4, 9, 7)),             # im2col
    ("Convolution", "num_output: 6 kernel_size: 1", (3, 8, 5, 5)),                     # 1x1
    ("Convolution", "num_output: 6 kernel_size: 3 group: 2 stride: 2 dilation: 2 pad: 3", (2, 4, 11, 9)),
    ("Convolution", "num_output: 8 kernel_size: 3 group: 4 pad: 1", (2, 4, 7, 6)),     # depthwise x2
    ("Convolution", "num_output: 7 kernel_size: 3 pad: 1", (2, 6, 10, 10)),            # Winograd
    ("Deconvolution", "num_output: 3 kernel_size: 4 stride: 2 pad: 1", (2, 5, 6, 5)),
]
IP_CASES = [("InnerProduct", "num_output: 7", (5, 3, 4, 2)),
            ("InnerProduct", "num_output: 6 transpose: true", (4, 13))]


def case_arrays(kind, text, shape, seed):
    """A random bottom, params and top diff for the layer of (kind, text) on `shape`."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    probe, _, top = build_layer(_param(kind, text), [x], dtype=np.float32)
    params = [rng.standard_normal(p.shape).astype(np.float32) for p in probe.blobs]
    dy = rng.standard_normal(top[0].shape).astype(np.float32)
    return x, params, dy


def _param(kind, text):
    field = "inner_product_param" if kind == "InnerProduct" else "convolution_param"
    return f"type: '{kind}' {field} {{ {text} bias_filler {{ type: 'gaussian' std: 0.5 }} }}"


def _run(kind, text, x, params, dy, precision, abs_values=False):
    """forward + backward of one layer: (top, bottom diff, param diffs...)."""
    layer, b, t = build_layer(_param(kind, text), [x], dtype=np.float32)
    layer.precision = precision
    for p, v in zip(layer.blobs, params):
        p.data[...] = np.abs(v) if abs_values else v
        p.diff[...] = 0
    if abs_values:
        b[0].data[...] = np.abs(x)
        layer.blobs[1].data[...] = 0
    layer.forward(b, t)
    t[0].diff[...] = np.abs(dy) if abs_values else dy
    layer.backward(t, [True], b)
    return layer, [t[0].data.copy(), b[0].diff.copy()] + [p.diff.copy() for p in layer.blobs]


@pytest.fixture
def winograd_everywhere(monkeypatch):
    monkeypatch.setattr(BaseConvolutionLayer, "winograd_min_channels", 1)
    monkeypatch.setattr(BaseConvolutionLayer, "winograd_min_tiles", 1)
    monkeypatch.setattr(BaseConvolutionLayer, "winograd_min_work", 1)


@pytest.mark.parametrize("fmt", ["bf16", "fp16"])
@pytest.mark.parametrize("kind,text,shape", CONV_CASES + IP_CASES, ids=lambda v: str(v))
def test_layer_in_reduced_precision(kind, text, shape, fmt, winograd_everywhere):
    x, params, dy = case_arrays(kind, text, shape, 11)
    r = REFERENCE[fmt]
    layer, reduced = _run(kind, text, x, params, dy, LayerPrecision(fmt, fmt))
    if "pad: 1" in text and "group" not in text and kind == "Convolution" and shape[2] == 10:
        assert layer.winograd
    # (a) the float32 layer on the rounded operands, bit for bit; the bias gradient unrounded
    _, on_rounded = _run(kind, text, r(x), [r(params[0]), params[1]], r(dy), FP32)
    _, exact = _run(kind, text, x, params, dy, FP32)
    for k, (got, want) in enumerate(zip(reduced[:3], on_rounded[:3])):
        if fmt == "bf16" and blas.bf16_gemm() is not None:  # another GEMM: another order of sums
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=f"array {k}")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"array {k}")
    np.testing.assert_allclose(reduced[3], exact[3], rtol=1e-6, atol=1e-5)
    # (b) within the format's bound of the float32 result, and not equal to it
    _, bound = _run(kind, text, x, params, dy, FP32, abs_values=True)
    u = UNIT[fmt]
    K = max(x.size // x.shape[0], dy.size // dy.shape[0])
    for k in range(3):
        limit = (2 * u + u * u + K * 2.0 ** -24) * bound[k] + 1e-6
        err = np.abs(reduced[k] - exact[k])
        assert (err <= limit).all(), f"array {k}: {err.max()} over {limit[err > limit].min()}"
        assert err.max() > 0, f"array {k}: no rounding happened"


@pytest.fixture
def mkl_bf16(monkeypatch):
    """MKL's bf16 GEMM as the bf16 product (as on a CPU with AMX), where the mkl extra is here."""
    try:
        lib = blas.select("mkl")
    except netdef.BackendError:
        pytest.skip("the mkl extra is not installed")
    monkeypatch.setitem(blas._state, "bf16", blas.Bf16Gemm(lib))


@pytest.mark.parametrize("kind,text,shape", [CONV_CASES[0], CONV_CASES[1], CONV_CASES[4], CONV_CASES[5]],
                         ids=str)
def test_mkl_bf16_gemm_gives_the_rounding_route_results(kind, text, shape, mkl_bf16, monkeypatch,
                                                        winograd_everywhere):
    x, params, dy = case_arrays(kind, text, shape, 4)
    monkeypatch.setattr(netdef.get_backend("cpu"), "small_product", 0)  # every product to MKL
    _, with_mkl = _run(kind, text, x, params, dy, LayerPrecision("bf16", "bf16"))
    monkeypatch.setitem(blas._state, "bf16", None)
    _, rounded = _run(kind, text, x, params, dy, LayerPrecision("bf16", "bf16"))
    for k, (got, want) in enumerate(zip(with_mkl, rounded)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=f"array {k}")


class RecordingGemm:
    """A stand-in bf16 product: checks that what it is given are bf16 numbers, computes in float64."""

    def __init__(self):
        self.calls = 0

    def __call__(self, a, b, c, beta=0.0):
        for x in (a, b):
            assert not (np.ascontiguousarray(x).view(np.uint32) & 0xFFFF).any(), "not bf16 numbers"
        c[...] = beta * c + (a.astype(np.float64) @ b.astype(np.float64))
        self.calls += 1
        return True


@pytest.mark.parametrize("fmt,case,routed", [("bf16", 1, True), ("bf16", 2, True), ("bf16", 4, True),
                                             ("bf16", 5, True), ("fp16", 2, False)])
def test_bf16_products_go_to_the_bf16_gemm(fmt, case, routed, monkeypatch, winograd_everywhere):
    """The CPU backend sends a bf16 layer's products, and only those, to the bf16 GEMM (and never
    Winograd's transformed operands, which are not bf16 numbers: RecordingGemm would fail)."""
    gemm = RecordingGemm()
    monkeypatch.setitem(blas._state, "bf16", gemm)
    monkeypatch.setattr(netdef.get_backend("cpu"), "small_product", 0)
    kind, text, shape = CONV_CASES[case]
    x, params, dy = case_arrays(kind, text, shape, 8)
    layer, got = _run(kind, text, x, params, dy, LayerPrecision(fmt, fmt))
    assert (gemm.calls > 0) == routed
    assert layer.winograd == (case == 4)  # and its forward's products are not routed
    r = REFERENCE[fmt]
    _, want = _run(kind, text, r(x), [r(params[0]), params[1]], r(dy), FP32)
    for k in range(3):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5 * np.abs(want[k]).max())
    assert netdef.get_backend("cpu").operand_format is None  # the block closed


def test_bf16_gemm_choice(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f amx_bf16 amx_tile\n")
    assert blas.cpu_bf16_flags(str(cpuinfo)) == ["amx_bf16"]
    cpuinfo.write_text("flags : fpu sse2 avx2\n")
    assert blas.cpu_bf16_flags(str(cpuinfo)) == []
    monkeypatch.delitem(blas._state, "bf16", raising=False)
    monkeypatch.setenv(blas.BF16_ENV, "off")
    assert blas.bf16_gemm() is None
    monkeypatch.delitem(blas._state, "bf16")
    monkeypatch.setenv(blas.BF16_ENV, "amx")
    with pytest.raises(netdef.BackendError, match="NETDEF_BF16_GEMM='amx': use auto, netdef, mkl or off"):
        blas.bf16_gemm()


def test_reduced_forward_only_leaves_backward_float32():
    rng = np.random.default_rng(5)
    kind, text, shape = CONV_CASES[0]
    x = rng.standard_normal(shape).astype(np.float32)
    probe, _, top = build_layer(_param(kind, text), [x], dtype=np.float32)
    params = [rng.standard_normal(p.shape).astype(np.float32) for p in probe.blobs]
    dy = rng.standard_normal(top[0].shape).astype(np.float32)
    _, mixed = _run(kind, text, x, params, dy, LayerPrecision("bf16", "fp32"))
    _, exact = _run(kind, text, x, params, dy, FP32)
    _, fwd = _run(kind, text, bf16_reference(x), [bf16_reference(params[0]), params[1]], dy, FP32)
    if blas.bf16_gemm() is not None:  # another GEMM: another order of sums
        np.testing.assert_allclose(mixed[0], fwd[0], rtol=1e-5, atol=1e-5 * np.abs(fwd[0]).max())
    else:
        np.testing.assert_array_equal(mixed[0], fwd[0])
    for k in (1, 2, 3):
        np.testing.assert_array_equal(mixed[k], exact[k])


def test_fp16_range_overflows_to_inf():
    x = np.full((1, 2, 3, 3), 70000.0, dtype=np.float32)  # beyond fp16's 65504
    kind, text = "Convolution", "num_output: 1 kernel_size: 1"
    _, out = _run(kind, text, x, [np.ones((1, 2, 1, 1), np.float32), np.zeros(1, np.float32)],
                  np.ones((1, 1, 3, 3), np.float32), LayerPrecision("fp16", "fp16"))
    assert np.isinf(out[0]).all()
    _, out = _run(kind, text, x, [np.ones((1, 2, 1, 1), np.float32), np.zeros(1, np.float32)],
                  np.ones((1, 1, 3, 3), np.float32), LayerPrecision("bf16", "bf16"))
    assert np.isfinite(out[0]).all()


def test_params_and_blobs_stay_float32_and_unrounded():
    net = netdef.Net(NET % "", netdef.TRAIN, precision="bf16")
    net.forward()
    net.backward()
    w = net.params["conv"][0].data
    assert w.dtype == np.float32 and (w.view(np.uint32) & 0xFFFF).any()  # the master copy
    assert net.blobs["data"].data.dtype == np.float32
    assert (net.blobs["data"].data.view(np.uint32) & 0xFFFF).any()  # the input itself untouched


@pytest.mark.gpu
@pytest.mark.parametrize("kind,text,shape", [CONV_CASES[0], CONV_CASES[3], IP_CASES[0]], ids=str)
def test_gpu_matches_cpu_in_bf16(kind, text, shape):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    results = []
    for which in ("cpu", "gpu"):
        be = netdef.get_backend(which)
        layer, b, t = build_layer(_param(kind, text), [x], dtype=np.float32, backend=be)
        layer.precision = LayerPrecision("bf16", "fp16")
        prng = np.random.default_rng(3)
        for p in layer.blobs:
            p.data[...] = be.asarray(prng.standard_normal(p.shape), dtype=np.float32)
        layer.forward(b, t)
        t[0].diff[...] = be.asarray(prng.standard_normal(t[0].shape), dtype=np.float32)
        layer.backward(t, [True], b)
        results.append([be.to_numpy(a) for a in (t[0].data, b[0].diff, layer.blobs[0].diff)])
    for c, g in zip(*results):
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-4)


# ---- the solver: loss scaling, resume, snapshots ----------------------------------------------
NET = """name: 'tiny' force_backward: true
layer { name: 'data' type: 'DummyData' top: 'data' top: 'label'
        dummy_data_param { shape { dim: 4 dim: 3 dim: 8 dim: 8 } shape { dim: 4 }
                           data_filler { type: 'gaussian' std: 1 } data_filler { type: 'constant' value: 1 } } }
layer { name: 'conv' type: 'Convolution' bottom: 'data' top: 'conv'
        convolution_param { num_output: 8 kernel_size: 3 weight_filler { type: 'gaussian' std: 0.3 } } }
layer { name: 'relu' type: 'ReLU' bottom: 'conv' top: 'conv' }
layer { name: 'ip' type: 'InnerProduct' bottom: 'conv' top: 'ip'
        inner_product_param { num_output: 5 weight_filler { type: 'gaussian' std: 0.1 } } }
layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'ip' bottom: 'label' top: 'loss' }
%s"""


def _solver(tmp_path, head="", precision=None, solver_type="SGD"):
    (tmp_path / "net.prototxt").write_text(head + (NET % ""))
    (tmp_path / "solver.prototxt").write_text(
        f"net: 'net.prototxt' base_lr: 0.05 lr_policy: 'fixed' momentum: 0.9 max_iter: 100 "
        f"random_seed: 3 type: '{solver_type}' snapshot_prefix: 'snap'")
    netdef.set_precision(precision)
    try:
        return netdef.get_solver(str(tmp_path / "solver.prototxt"))
    finally:
        netdef.set_precision(None)


def _params(solver):
    return [b.data.copy() for b in solver.net.learnable_params]


def test_a_static_power_of_two_scale_changes_nothing(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = _solver(tmp_path / "a")
    plain.step(4)
    scaled = _solver(tmp_path / "b", "global_grad_scale: 1024\n")
    assert scaled.loss_scaler.kind == "static" and scaled.net.loss_scale == 1024
    scaled.step(4)
    for a, b in zip(_params(plain), _params(scaled)):
        np.testing.assert_array_equal(a, b)
    assert plain.losses == scaled.losses


def test_dynamic_scale_grows_skips_an_overflowing_step_and_halves(tmp_path, caplog):
    s = _solver(tmp_path, precision="fp16")
    sc = s.loss_scaler
    assert sc.kind == "dynamic" and sc.scale == 2.0 ** 16 and s.net.loss_scale == 2.0 ** 16
    sc.interval = 2
    s.step(2)
    assert sc.scale == 2.0 ** 17 and s.net.loss_scale == 2.0 ** 17 and sc.skipped == 0
    # a scale at which the loss gradient itself overflows fp16 (and inf * 0 = NaN elsewhere)
    sc.scale = s.net.loss_scale = 2.0 ** 40
    before = _params(s)
    with caplog.at_level(logging.INFO, logger="netdef"):
        s.step(1)
    assert sc.skipped == 1 and sc.scale == 2.0 ** 39 and s.net.loss_scale == 2.0 ** 39 and s.iter == 3
    for a, b in zip(before, _params(s)):
        np.testing.assert_array_equal(a, b)  # the update was skipped
    assert "Iteration 2, loss scale 1.09951e+12: gradients overflowed, update skipped; loss scale -> 5.49756e+11" \
        in caplog.text
    s.step(40)  # it comes down until the gradients fit, then training goes on
    assert sc.scale < 2.0 ** 30 and sc.skipped > 5 and sc.clean > 0 and np.isfinite(s.losses[-1])
    assert any((a != b).any() for a, b in zip(before, _params(s)))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_resume_is_bit_identical(tmp_path, monkeypatch, precision):
    monkeypatch.chdir(tmp_path)

    def solver():
        s = _solver(tmp_path, precision=precision, solver_type="Adam")
        if s.loss_scaler is not None:
            s.loss_scaler.interval = 2  # the scale changes across the snapshot
        return s

    straight = solver()
    straight.step(6)
    first = solver()
    first.step(3)
    first.snapshot()
    resumed = solver()
    resumed.restore(str(tmp_path / "snap_iter_3.solverstate"))
    if precision == "fp16":
        assert resumed.loss_scaler.get_state() == first.loss_scaler.get_state()
        assert resumed.net.loss_scale == first.loss_scaler.scale
    resumed.step(3)
    if precision == "fp16":
        assert resumed.loss_scaler.get_state() == straight.loss_scaler.get_state()
        assert straight.loss_scaler.scale == 2.0 ** 19
    for a, b in zip(_params(straight), _params(resumed)):
        np.testing.assert_array_equal(a, b)


def test_bf16_training_saves_a_float_caffemodel(tmp_path):
    s = _solver(tmp_path, precision="bf16")
    assert s.loss_scaler is None  # bf16 needs none
    s.step(3)
    path = str(tmp_path / "w.caffemodel")
    s.net.save(path)
    from netdef import netdef_pb2 as pb

    model = pb.NetParameter()
    with open(path, "rb") as f:
        model.ParseFromString(f.read())
    conv = [lp for lp in model.layer if lp.name == "conv"][0]
    assert len(conv.blobs[0].data) == 8 * 3 * 3 * 3 and not conv.blobs[0].double_data  # Caffe's floats
    fresh = netdef.Net(str(tmp_path / "net.prototxt"), netdef.TEST, weights=path)
    np.testing.assert_array_equal(fresh.params["conv"][0].data, s.net.params["conv"][0].data)


def test_cli_train_precision(tmp_path, monkeypatch, caplog):
    from netdef.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(NET % "")
    (tmp_path / "solver.prototxt").write_text(
        "net: 'net.prototxt' base_lr: 0.05 lr_policy: 'fixed' max_iter: 3 random_seed: 3 "
        "snapshot_prefix: 'snap'")
    with caplog.at_level(logging.INFO, logger="netdef"):
        assert main(["train", "solver.prototxt", "--precision", "fp16", "--progress", "off", "--log", "none"]) == 0
    assert "Precision fp16" in caplog.text
    assert "2 GEMM layers with fp16 operands, float32 accumulation" in caplog.text
    assert "loss scale dynamic 65536" in caplog.text
