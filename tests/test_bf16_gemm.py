"""netdef's own AVX512-BF16 GEMM (src/bf16_gemm.cpp, netdef/backend/blas.py OwnBf16Gemm) against a
float64 product of the bf16-rounded operands, on every layout the packing has a path for, odd
and edge sizes (M, N, K not multiples of the 8 x 32 tile or the 256-deep K block, one row, one
column), beta, and the layers' bf16 products routed to it. Skipped where the CPU has no
AVX512-BF16 (the rounding route's tests in test_precision.py cover the results there)."""
import numpy as np
import pytest

import netdef
from netdef.backend import blas
from netdef.core.precision import LayerPrecision

from test_precision import CONV_CASES, _run, bf16_reference, case_arrays


@pytest.fixture(scope="module")
def gemm():
    netdef.get_backend("cpu")  # loads the extension
    own, why = blas._own_bf16(blas.cpu_bf16_flags())
    if own is None:
        pytest.skip(f"netdef's bf16 GEMM cannot run here: {why}")
    return own


def _operand(rng, shape, layout):
    """A float32 matrix of `shape` laid out row-major, column-major or with gaps in both axes."""
    if layout == "rows":
        return rng.standard_normal(shape, dtype=np.float32)
    if layout == "cols":
        return np.asfortranarray(rng.standard_normal(shape, dtype=np.float32))
    return rng.standard_normal((shape[0] * 2, shape[1] * 3), dtype=np.float32)[::2, ::3]


SIZES = [(1, 1, 1), (1, 300, 1), (8, 32, 32), (7, 33, 5), (9, 513, 33), (17, 256, 70), (33, 257, 100),
         (64, 576, 196), (100, 1000, 25), (3, 2, 700)]


@pytest.mark.parametrize("la", ["rows", "cols", "gaps"])
@pytest.mark.parametrize("lb", ["rows", "cols", "gaps"])
@pytest.mark.parametrize("m,k,n", SIZES, ids=str)
def test_bf16_gemm_against_float64(gemm, m, k, n, la, lb):
    rng = np.random.default_rng(m * 7919 + k * 31 + n)
    a, b = _operand(rng, (m, k), la), _operand(rng, (k, n), lb)
    c0 = rng.standard_normal((m, n), dtype=np.float32)
    for beta in (0.0, 0.5):
        c = c0.copy()
        c[0, 0] = np.nan if beta == 0.0 else c[0, 0]  # beta 0: C is not read
        assert gemm(a, b, c, beta)
        ra, rb = bf16_reference(a).astype(np.float64), bf16_reference(b).astype(np.float64)
        want = ra @ rb + beta * c0
        # products exact in float32; k additions of float32 rounding each
        bound = (np.abs(ra) @ np.abs(rb)) * k * 2.0 ** -24 + np.abs(beta * c0) * 2.0 ** -23 + 1e-30
        err = np.abs(c - want)
        assert (err <= bound).all(), f"beta {beta}: error {err.max()} over its bound"


def test_bf16_gemm_writes_only_its_block(gemm):
    """C given as a block of a larger array (a band of an image's columns, as a convolution's
    bands are): nothing outside the block changes."""
    rng = np.random.default_rng(3)
    big = rng.standard_normal((40, 90), dtype=np.float32)
    keep = big.copy()
    a, b = rng.standard_normal((13, 70), dtype=np.float32), rng.standard_normal((70, 37), dtype=np.float32)
    block = big[5:18, 20:57]
    assert gemm(a, b, block, 0.0)
    outside = np.ones(big.shape, bool)
    outside[5:18, 20:57] = False
    np.testing.assert_array_equal(big[outside], keep[outside])
    want = bf16_reference(a).astype(np.float64) @ bf16_reference(b).astype(np.float64)
    np.testing.assert_allclose(block, want, rtol=1e-5, atol=1e-4)


def test_bf16_gemm_rounds_unrounded_operands_to_nearest_even(gemm):
    """Operands that are not bf16 numbers are rounded as Layer.operand rounds them: ties to even,
    the largest floats to inf, NaN stays NaN."""
    x = np.array([[1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -9, 1.5 + 2 ** -9, -2.5, 7.1e-3]], np.float32)
    out = np.empty((1, 6), np.float32)
    assert gemm(x, np.eye(6, dtype=np.float32), out)
    np.testing.assert_array_equal(out, bf16_reference(x))
    for value, check in ((3.3999e38, np.isposinf), (np.nan, np.isnan)):
        one = np.empty((1, 1), np.float32)
        assert gemm(np.array([[value]], np.float32), np.ones((1, 1), np.float32), one)
        assert check(one[0, 0]), one


def test_bf16_gemm_refuses_what_it_cannot_take(gemm):
    a = np.ones((4, 4), np.float64)
    assert not gemm(a, a, np.empty((4, 4)), 0.0)  # float64: the caller's float32 GEMM instead
    c = np.empty((4, 8), np.float32)[:, ::2]  # C's columns not adjacent
    assert not gemm(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), c, 0.0)


def test_layers_bf16_products_run_on_it(gemm, monkeypatch):
    """A bf16 Convolution's forward and backward through it agree with the rounding route (the
    float32 GEMM on rounded operands) to float32 accumulation order."""
    calls = []

    def counting(a, b, c, beta=0.0):
        calls.append(a.shape)
        return gemm(a, b, c, beta)

    kind, text, shape = CONV_CASES[1]
    x, params, dy = case_arrays(kind, text, shape, 11)
    monkeypatch.setattr(netdef.get_backend("cpu"), "small_product", 0)
    monkeypatch.setitem(blas._state, "bf16", counting)
    _, own = _run(kind, text, x, params, dy, LayerPrecision("bf16", "bf16"))
    assert calls
    monkeypatch.setitem(blas._state, "bf16", None)
    _, rounded = _run(kind, text, x, params, dy, LayerPrecision("bf16", "bf16"))
    for k, (got, want) in enumerate(zip(own, rounded)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=f"array {k}")


@pytest.mark.parametrize("case", [1, 2, 5], ids=["1x1", "grouped-dilated", "deconv"])
def test_unrounded_operands_go_to_it_and_give_bf16_results(gemm, case, monkeypatch):
    """With the GEMM that rounds as it packs, the im2col / 1x1 paths hand it their operands
    unrounded (Layer.product_operand: no rounding pass), and the results are still the bf16
    rule's: those of the rounding route."""
    seen = []

    class Recording(blas.OwnBf16Gemm):
        def __call__(self, a, b, c, beta=0.0):
            seen.append(any((np.ascontiguousarray(x).view(np.uint32) & 0xFFFF).any() for x in (a, b)))
            return super().__call__(a, b, c, beta)

    own = Recording.__new__(Recording)
    own.fn = gemm.fn
    kind, text, shape = CONV_CASES[case]
    x, params, dy = case_arrays(kind, text, shape, 12)
    monkeypatch.setitem(blas._state, "bf16", own)
    layer, got = _run(kind, text, x, params, dy, LayerPrecision("bf16", "bf16"))
    assert layer.path in ("im2col", "1x1") and not layer.winograd
    assert seen and any(seen), "the operands were rounded before the GEMM"
    monkeypatch.setitem(blas._state, "bf16", None)
    _, want = _run(kind, text, bf16_reference(x), [bf16_reference(params[0]), params[1]], bf16_reference(dy),
                   LayerPrecision("fp32", "fp32"))
    for k in range(3):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5 * np.abs(want[k]).max(), err_msg=f"array {k}")


def test_round_bf16_matches_the_reference():
    x = np.random.default_rng(2).standard_normal(1000).astype(np.float32) * 10.0
    x[:4] = [1 + 2 ** -8, 1 + 3 * 2 ** -8, -0.0, 2.5]
    np.testing.assert_array_equal(blas.round_bf16(x), bf16_reference(x))
