"""What a GPU backend decides, apart from CuPy itself: GEMMs through cuBLAS with beta (weight
gradients accumulate in place, bands of rows are written where they lie), a bounded-temporary
fallback where an operand's layout cannot go to cuBLAS, reductions shaped to fill the device,
the workspace budget, and (inherited from Backend) one element per row-tiled kernel iteration,
numpy-style fill, and a device generator whose state is not read back but reseeded.

CUDABackend (cuda.py) is this policy with CuPy arrays and a cuBLAS call; the test suite's
emulated GPU (tests/conftest.py) is this policy with numpy arrays, the CPU-compiled kernels and
a numpy stand-in for that one cuBLAS call, so CI runs every decision made here.

cuBLAS is column-major. A row-major m x n matrix with rows ld apart is, read column-major, its
n x m transpose with the same ld, so out = a @ b is asked as out^T = b^T a^T: the operands
swap places, and an operand that is itself a transposed view (column-major) takes op T.
"""
import contextlib

import numpy as np

from . import Backend, bounded_matmul

_INT32_MAX = (1 << 31) - 1


def _matrix(x):
    """('N' | 'T', ld) of the last two axes of x as cuBLAS sees them in the swapped product
    (N: row-major, rows ld apart; T: column-major, columns ld apart), or None when they have no
    unit stride or ld would not be valid."""
    isz = x.itemsize
    s0, s1 = x.strides[-2], x.strides[-1]
    if s0 % isz or s1 % isz:
        return None
    s0, s1 = s0 // isz, s1 // isz
    rows, cols = x.shape[-2:]
    if s1 == 1 or cols == 1:
        ld = s0 if rows > 1 else cols
        if ld >= max(cols, 1):
            return "N", ld
    if s0 == 1 or rows == 1:
        ld = s1 if cols > 1 else rows
        if ld >= max(rows, 1):
            return "T", ld
    return None


def gemm_plan(a, b, out):
    """The cuBLAS calls that compute out = a @ b (+ beta out) in place: a list of
    (op_a, op_b, m, n, k, A, lda, stride_a, B, ldb, stride_b, C, ldc, stride_c, batch) in
    cuBLAS's own (column-major) terms, one strided-batched call per index of out's leading axes
    but the last, which is the batch; None when some operand cannot be read in place (zero or
    negative strides, an operand broadcast along the batch axis, int32 overflow)."""
    if out.ndim < 2 or a.ndim < 2 or b.ndim < 2 or max(a.ndim, b.ndim) > out.ndim:
        return None
    m, n = out.shape[-2:]
    k = a.shape[-1]
    if not (m and n and k) or a.shape[-2] != m or b.shape[-2:] != (k, n):
        return None
    if out.dtype != a.dtype or out.dtype != b.dtype:
        return None
    mc, ma, mb = _matrix(out), _matrix(a), _matrix(b)
    if mc is None or mc[0] != "N" or ma is None or mb is None:
        return None
    lead = out.shape[:-2]
    batch = lead[-1] if lead else 1
    isz = out.itemsize

    def batch_stride(x):
        if batch == 1:
            return 0
        if x.ndim < out.ndim or x.shape[-3] != batch or x.strides[-3] <= 0 or x.strides[-3] % isz:
            return None
        return x.strides[-3] // isz

    strides = [batch_stride(x) for x in (b, a, out)]
    if None in strides or max(m, n, k, ma[1], mb[1], mc[1], batch) > _INT32_MAX:
        return None
    calls = []
    outer = lead[:-1]
    for idx in np.ndindex(*outer):
        def pick(x, idx=idx):
            extra = max(0, x.ndim - 3) if lead else 0  # x's leading axes before the batch axis
            return x[idx[len(idx) - extra:]] if extra else x

        A, B, C = pick(b), pick(a), pick(out)
        # out^T (n x m) = b^T (n x k) @ a^T (k x m): b is cuBLAS's A, a its B
        calls.append((mb[0], ma[0], n, m, k, A, mb[1], strides[0], B, ma[1], strides[1],
                      C, mc[1], strides[2], batch))
    return calls


class GPUPolicy(Backend):
    name = "gpu"
    #: Most elements of a temporary product that the fallback accumulation takes at once.
    accumulate_temp = 1 << 22

    # One GEMM call in cuBLAS's terms; first elements of A, B, C are where the matrices start.
    def _gemm(self, op_a, op_b, m, n, k, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
              stride_c, batch):
        raise NotImplementedError

    def _gemm_ok(self, dtype):
        """Whether products of this dtype go to _gemm (float32 / float64)."""
        return np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64))

    def _gemm_in_place(self, a, b, out, beta):
        if not self._gemm_ok(out.dtype):
            return False
        calls = gemm_plan(a, b, out)
        if calls is None:
            return False
        for (op_a, op_b, m, n, k, A, lda, sa, B, ldb, sb, C, ldc, sc, batch) in calls:
            self._gemm(op_a, op_b, m, n, k, 1.0, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch)
        return True

    def _reduced_products(self):
        """The block in which products of reduced-precision operands run (Backend.operands);
        CUDABackend's puts them on tensor cores. Nothing here: float32 products."""
        return contextlib.nullcontext()

    def _products_into(self, out):
        """The block for a product into `out`: _reduced_products() while the operands are
        reduced and out is float32, else nothing."""
        if self.operand_format is not None and out.dtype == np.float32:
            return self._reduced_products()
        return contextlib.nullcontext()

    def matmul(self, a, b, out, accumulate=False):
        with self._products_into(out):
            return self._matmul(a, b, out, accumulate)

    def _matmul(self, a, b, out, accumulate):
        # a plain product into a contiguous out is the array library's own (cuBLAS underneath)
        if not accumulate and out.flags.c_contiguous:
            self.xp.matmul(a, b, out=out)
            return out
        if self._gemm_in_place(a, b, out, 1.0 if accumulate else 0.0):
            return out
        return bounded_matmul(self.xp, a, b, out, accumulate, self.accumulate_temp)

    def matmul_sum(self, a, b, out):
        with self._products_into(out):
            return self._matmul_sum(a, b, out)

    def _matmul_sum(self, a, b, out):
        nb = a.shape[0]
        if nb > 1 and nb * out.size <= self.accumulate_temp:
            out += self.xp.matmul(a, b).sum(axis=0)  # one batched product: fewer launches
            return out
        for i in range(nb):
            self.matmul(a[i], b[i], out, accumulate=True)
        return out

    def reduce_parts(self, rows, inner):
        """Enough threads (~64k) to fill the device, each summing >= 32 values."""
        if inner < 64:
            return 1
        return int(max(1, min(inner // 32, 65536 // max(rows, 1), 1024)))
