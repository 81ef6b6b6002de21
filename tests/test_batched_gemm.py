"""netdef's own batched float32 GEMM (src/f32_gemm.cpp, netdef/backend/blas.py OwnBatchedGemm)
against float64 products: sizes off its 12 x 32 tile and 128-deep K block (one row, one column,
17 - 31 column edges, K past a block), beta (and C not read at beta 0), an operand shared by
every product, row-strided operands, few products (the row and column splits) and many, and the
CPU backend routing the Winograd path's batches to it. Skipped where the CPU has no AVX-512F."""
import numpy as np
import pytest

import netdef
from netdef.backend import blas
from netdef.backend.cpu import CPUBackend


@pytest.fixture(scope="module")
def gemm():
    netdef.get_backend("cpu")  # loads the extension
    own = blas.batched_gemm()
    if own is None:
        pytest.skip("netdef's batched GEMM cannot run here (no AVX-512F, or no extension)")
    return own


SIZES = [(1, 1, 1, 1), (3, 1, 300, 1), (2, 12, 32, 32), (5, 13, 17, 33), (36, 64, 64, 49),
         (16, 25, 129, 17), (1, 100, 300, 200), (9, 7, 5, 31), (4, 40, 257, 16), (2, 3, 2, 700)]


def _bound(a, b, c0, beta, k):
    """Each output's rounding bound: k float32 additions of products, plus beta C's rounding."""
    return (np.abs(a) @ np.abs(b)) * (k + 2) * 2.0 ** -24 + np.abs(beta * c0) * 2.0 ** -23 + 1e-30


@pytest.mark.parametrize("batch,m,k,n", SIZES, ids=str)
@pytest.mark.parametrize("shared", ["none", "a", "b"])
def test_batched_gemm_against_float64(gemm, batch, m, k, n, shared):
    rng = np.random.default_rng(batch * 7 + m * 7919 + k * 31 + n)
    a = rng.standard_normal((m, k) if shared == "a" else (batch, m, k), dtype=np.float32)
    b = rng.standard_normal((k, n) if shared == "b" else (batch, k, n), dtype=np.float32)
    c0 = rng.standard_normal((batch, m, n), dtype=np.float32)
    for beta in (0.0, 0.5, 1.0):
        c = c0.copy()
        if beta == 0.0:
            c[0, 0, 0] = np.nan  # C is not read
        assert gemm(a, b, c, beta)
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        want = np.matmul(a64, b64) + beta * c0
        err = np.abs(c - want)
        bound = _bound(a64, b64, c0, beta, k)
        assert (err <= bound).all(), f"beta {beta}: error {err.max()} over its bound"


def test_batched_gemm_row_strided_operands(gemm):
    """A and B as column blocks of wider arrays (rows contiguous, leading dimension larger than
    the width): only the blocks are read."""
    rng = np.random.default_rng(5)
    A = rng.standard_normal((10, 30, 70), dtype=np.float32)
    B = rng.standard_normal((10, 70, 90), dtype=np.float32)
    a, b = A[:, :, 3:50], B[:, 3:50, 10:55]
    c = np.empty((10, 30, 45), np.float32)
    assert gemm(a, b, c)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert np.abs(c - want).max() <= _bound(a.astype(np.float64), b.astype(np.float64), 0 * c, 0, 47).max()


def test_batched_gemm_refuses_what_it_cannot_take(gemm):
    """Refusals (False, nothing written) rather than wrong answers: another dtype, columns not
    contiguous, an output that is not one contiguous batch."""
    a = np.ones((4, 3, 5), np.float32)
    b = np.ones((4, 5, 6), np.float32)
    c = np.zeros((4, 3, 6), np.float32)
    assert not gemm(a.astype(np.float64), b.astype(np.float64), c.astype(np.float64))
    assert not gemm(np.ones((4, 5, 3), np.float32).transpose(0, 2, 1), b, c)
    wide = np.zeros((4, 3, 12), np.float32)
    assert not gemm(a, b, wide[:, :, :6])
    assert (wide == 0).all()


def test_cpu_backend_routes_batches_to_it(gemm, monkeypatch):
    """The CPU backend's matmul takes a batch of >= batched_min thin products to the batched GEMM
    (and gets numpy's answer), and leaves short batches and wide products to the BLAS."""
    be = netdef.get_backend("cpu")
    calls = []
    real = blas.OwnBatchedGemm.__call__

    def spy(self, a, b, c, beta=0.0):
        calls.append(c.shape)
        return real(self, a, b, c, beta)

    monkeypatch.setattr(blas.OwnBatchedGemm, "__call__", spy)
    rng = np.random.default_rng(2)
    for batch, n, taken in [(16, 49, True), (CPUBackend.batched_min - 1, 49, False),
                            (16, CPUBackend.batched_max_columns + 1, False)]:
        a = rng.standard_normal((batch, 40, 30), dtype=np.float32)
        b = rng.standard_normal((batch, 30, n), dtype=np.float32)
        out = np.empty((batch, 40, n), np.float32)
        calls.clear()
        be.matmul(a, b, out)
        assert bool(calls) == taken, (batch, n)
        np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-5, atol=1e-4)
        be.matmul(a, b, out, accumulate=True)
        np.testing.assert_allclose(out, 2 * np.matmul(a, b), rtol=1e-5, atol=2e-4)
