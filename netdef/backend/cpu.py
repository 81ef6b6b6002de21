"""CPU backend: numpy for array operations and BLAS, the pybind11 extension `_cpu_kernels`
(kernels/*.cu compiled as C++) for everything per-element.

Products (tuned for numpy's OpenBLAS on few cores): those that accumulate (dW +=, db +=) or
write a band of rows go straight to BLAS's GEMM (blas.gemm) with beta = 1 / a leading
dimension, so that a train step allocates nothing the size of a weight or an output; the bias
gradient is a GEMV with a vector of ones; tiny products stay with numpy's matmul (a ctypes call
costs more than they do); and two shapes that OpenBLAS runs slowly are computed transposed (see
transposed_adjoint_min_weights and transposed_grad_max_rows). The BLAS is the one blas.library()
selected (NETDEF_BLAS); when that is not numpy's own, the plain products go to it through
blas.gemm too, not to numpy's matmul.
"""
import os

import numpy as np

from ..errors import BackendError
from . import _FLOAT_DTYPES, Backend, blas, bounded_matmul

_SUFFIX = {np.dtype(np.float32): "_f32", np.dtype(np.float64): "_f64"}
#: Fewest iterations a row-tiled kernel should have: a few per OpenMP thread.
PARALLEL_ROWS = 4 * (os.cpu_count() or 1)


def _load_extension():
    try:
        from .. import _cpu_kernels
    except ImportError as e:
        raise BackendError(
            f"the CPU kernel extension netdef._cpu_kernels is not built ({e}); "
            "install netdef with `pip install .` so that CMake builds it") from None
    # BLAS on the kernels' OpenMP threads, not a second spinning pool (see backend/blas.py)
    blas.share_threads(_cpu_kernels.__file__)
    blas.register_extension(_cpu_kernels.__file__)
    blas.library()  # NETDEF_BLAS: chosen (and logged) now, so that a missing library fails here
    return _cpu_kernels


def _matrices(a, b, out):
    """(a_i, b_i, out_i) for each index i of out's leading (batch) axes; a and b may have fewer
    leading axes, broadcast along out's last ones."""
    na, nb = a.ndim - 2, b.ndim - 2
    for idx in np.ndindex(*out.shape[:-2]):
        yield (a[idx[len(idx) - na:]] if na else a, b[idx[len(idx) - nb:]] if nb else b, out[idx])


class CPUBackend(Backend):
    name = "cpu"
    xp = np
    #: Bands of 16 MB cost no measurable time on FCN-8s (its conv1_2 column matrix alone is
    #: 245 MB at 128x128), and save ~110 MB over the GPU's 1 << 25.
    col_budget = 1 << 22
    winograd = True
    #: Multiply-adds below which numpy's matmul (+ a small temporary) is kept: a direct BLAS
    #: call through ctypes costs ~10 µs, a tiny matmul ~2 µs (per-layer dispatch on small nets).
    small_product = 1 << 16
    #: Most elements of the temporary product of an accumulating small product.
    accumulate_temp = 1 << 22
    #: A product out = A @ B whose A is a transposed view (column-major, e.g. W^T in a
    #: convolution's backward-data) of at least this many elements per matrix, and whose out
    #: has few columns, is computed as (B^T A^T)^T: BLAS then streams A once as the wide operand
    #: (FCN's fc6 at batch 1, 25 columns against 100M weights: 91 -> 70 ms on 2 cores).
    transposed_adjoint_min_weights = 1 << 22
    #: A weight gradient (..., m, n) += sum_i a_i @ b_i is taken as its transpose when it has at
    #: most this many rows m and fewer rows than columns: OpenBLAS runs products of few rows and
    #: a long inner dimension slowly, and the transpose turns the long side into rows
    #: (fcn8s-mini's conv1_2, 8 x 72 over 58k pixels: 3.4 -> 1.8 ms per band; VGG's 128-channel
    #: convs ~30 % faster). Above it, adding the transposed scratch back costs more than it saves.
    transposed_grad_max_rows = 128

    def __init__(self):
        super().__init__()
        ext = _load_extension()
        self._table = ext.kernels
        self._parallel_min = ext.parallel_min_iterations
        self._cache = {}
        self._numpy_blas = blas.numpy_computes_products()

    def _seed_device(self, seed):
        self.rng = np.random.default_rng(seed)

    def _device_rng_state(self):
        return {"device": self.rng.bit_generator.state}

    def _set_device_rng_state(self, state):
        if "device" in state:
            self.rng.bit_generator.state = state["device"]
        else:
            super()._set_device_rng_state(state)

    def launch(self, family, name, dtype, n, args):
        key = (name, dtype)
        kern = self._cache.get(key)
        if kern is None:
            full = name + _SUFFIX.get(dtype, "?")
            kern = self._table.get(full)
            if kern is None:
                raise BackendError(f"no CPU kernel {name!r} for {dtype} (family {family!r}); "
                                   "was the extension built from the current kernels/?")
            self._cache[key] = kern
        try:  # the extension checks arrays itself and returns False, before the kernel runs,
            if kern(n, *args):  # for one it does not take
                return
        except (TypeError, ValueError, OverflowError):  # a number it could not convert
            pass
        # refused: find the argument and say what is wrong with it (or convert what the
        # extension does not take as it is: numpy bools, 0-d arrays)
        conv = [n]
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray):
                if not a.flags.c_contiguous:
                    raise BackendError(f"kernel {name}: argument {i + 1} is not C-contiguous")
                if a.dtype in _FLOAT_DTYPES and a.dtype != dtype:
                    raise BackendError(f"kernel {name}: argument {i + 1} is {a.dtype}, expected {dtype}")
                if a.dtype not in _FLOAT_DTYPES and a.dtype != np.int64:
                    raise BackendError(f"kernel {name}: argument {i + 1} has dtype {a.dtype}; "
                                       "kernels take float32/float64 or int64 arrays")
                conv.append(a.reshape(1) if a.ndim == 0 else a)  # its address (buffer protocol)
            elif isinstance(a, (bool, np.bool_)):
                conv.append(int(a))
            elif isinstance(a, (int, np.integer)):
                conv.append(int(a))
            elif isinstance(a, (float, np.floating)):
                conv.append(float(a))
            else:
                raise BackendError(f"kernel {name}: argument {i + 1} of type {type(a).__name__} "
                                   "is not an array or a number (is it a GPU array on the CPU backend?)")
        if not kern(*conv):
            raise BackendError(f"kernel {name}: the extension refused its arguments")

    # ---- products ------------------------------------------------------------------------
    def _bf16_products(self, a, b, out, beta):
        """out (+)= a @ b through the bf16 GEMM (blas.bf16_gemm), when the operands are bf16
        numbers and there is one; False when not taken."""
        if self.operand_format != "bf16" or out.dtype != np.float32 or a.dtype != np.float32:
            return False
        gemm = blas.bf16_gemm()
        own = isinstance(gemm, blas.OwnBf16Gemm)
        # operands handed over unrounded (rounds_operands) must reach the GEMM that rounds them
        if gemm is None or (not own and out.size * a.shape[-1] <= self.small_product):
            return False
        for ai, bi, oi in _matrices(a, b, out):
            if not gemm(ai, bi, oi, beta):
                if own:
                    ai, bi = blas.round_bf16(ai), blas.round_bf16(bi)
                oi[...] = beta * oi + np.matmul(ai, bi)
        return True

    def rounds_operands(self, fmt):
        return fmt == "bf16" and isinstance(blas.bf16_gemm(), blas.OwnBf16Gemm)

    #: Batches of at least this many products whose B (k x n) has at most batched_max_b
    #: elements (a thread's B in its 1 MB L2, at most batched_max_columns columns) go to netdef's
    #: own batched GEMM (blas.OwnBatchedGemm): one product per thread in one parallel region,
    #: where numpy's matmul splits each across the threads. On 2 Zen 4 cores, GFLOP/s numpy ->
    #: own: 36 x 64 x 64 x 196 (F(4x4) on 56 x 56) 111 -> 154, 36 x 128 x 128 x 49 109 -> 142,
    #: 16 x 512 x 512 x 16 (F(2x2) on 7 x 7) 129 -> 203, 36 x 256 x 256 x 784 142 -> 167; past
    #: the bounds OpenBLAS's packed panels win (36 x 64 x 64 x 1681 130 against 106, 36 x 512 x
    #: 512 x 441 178 against 170).
    batched_min = 8
    batched_max_columns = 1024
    batched_max_b = 210000

    def _batched(self, a, b, out, beta):
        k, n = a.shape[-1], out.shape[-1]
        if (out.ndim != 3 or out.shape[0] < self.batched_min or n > self.batched_max_columns
                or k * n > self.batched_max_b or out.size * k <= self.small_product):
            return False
        gemm = blas.batched_gemm()
        return gemm is not None and gemm(a, b, out, beta)

    def matmul(self, a, b, out, accumulate=False):
        beta = 1.0 if accumulate else 0.0
        if self.operand_format is not None and self._bf16_products(a, b, out, beta):
            return out
        if self._batched(a, b, out, beta):
            return out
        if not accumulate and out.flags.c_contiguous:
            if self._wide_transposed(a, out):
                self._transposed_product(a, b, out)
            elif self._numpy_blas or out.size * a.shape[-1] <= self.small_product:
                np.matmul(a, b, out=out)
            else:
                for ai, bi, oi in _matrices(a, b, out):
                    blas.gemm(ai, bi, oi)
            return out
        if out.size * a.shape[-1] > self.small_product:
            for ai, bi, oi in _matrices(a, b, out):
                blas.gemm(ai, bi, oi, beta=beta)
            return out
        return bounded_matmul(np, a, b, out, accumulate, self.accumulate_temp)

    def _wide_transposed(self, a, out):
        m, l = out.shape[-2:]
        column_major = a.strides[-2] == a.itemsize and a.strides[-1] >= a.shape[-2] * a.itemsize
        return a.shape[-2] * a.shape[-1] >= self.transposed_adjoint_min_weights and 16 * l <= m and column_major

    def _transposed_product(self, a, b, out):
        """out = a @ b as out^T = b^T a^T, matrix by matrix, through a scratch out^T."""
        m, l = out.shape[-2:]
        scratch = self.workspace(out.dtype, l * m, "adjoint").reshape(l, m)
        for ai, bi, oi in _matrices(a, b, out):
            blas.gemm(bi.T, ai.T, scratch)
            oi[...] = scratch.T

    def matmul_sum(self, a, b, out):
        if self.operand_format == "bf16" and blas.bf16_gemm() is not None:
            for i in range(a.shape[0]):
                self.matmul(a[i], b[i], out, accumulate=True)
            return out
        nb = a.shape[0]
        m, k = a.shape[-2:]
        n = out.shape[-1]
        small = nb * out.size * k <= self.small_product
        if not small and m < n and m <= self.transposed_grad_max_rows:
            lead = out.shape[:-2]
            scratch = self.workspace(out.dtype, out.size, "wgrad").reshape(lead + (n, m))
            for idx in np.ndindex(*lead):
                for i in range(nb):
                    blas.gemm(b[(i,) + idx].T, a[(i,) + idx].T, scratch[idx], beta=1.0 if i else 0.0)
            out += scratch.swapaxes(-1, -2)
        elif not small or nb == 1:
            for i in range(nb):
                self.matmul(a[i], b[i], out, accumulate=True)
        else:
            out += np.matmul(a, b).sum(axis=0)
        return out

    def add_channel_sums(self, x, out):
        """One GEMV per image with a vector of ones: no temporary, BLAS's threads."""
        if x.size <= self.small_product:
            return super().add_channel_sums(x, out)
        n, c = x.shape[:2]
        hw = x.size // max(n * c, 1)
        one = self.ones(x.dtype, hw).reshape(hw, 1)
        for i in range(n):
            blas.gemm(x[i].reshape(c, hw), one, out.reshape(c, 1), beta=1.0)
        return out

    def fill(self, array, value):
        """array[...] = value; big float arrays on the OpenMP team (numpy fills on one thread)."""
        if array.size > self._parallel_min and array.dtype in _SUFFIX and array.flags.c_contiguous:
            self.kernels("fill").fill(array.size, array, float(value))
        else:
            array.fill(value)

    def row_tile(self, width, rows):
        """Whole rows: an iteration's few index divisions are spread over the most elements, and
        the tiled kernels' loops go parallel by their work (KERNEL_LOOP_WORK), not their
        iteration count. Only a kernel of fewer rows than PARALLEL_ROWS takes segments, so
        that every thread gets some."""
        if rows >= PARALLEL_ROWS or rows * width <= self._parallel_min:
            return max(1, width)
        return max(1, width // -(-PARALLEL_ROWS // max(rows, 1)))

    def available_memory(self):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return 1 << 62

    def to_numpy(self, array):
        return np.asarray(array)

    def asarray(self, array, dtype=None):
        if hasattr(array, "get") and not isinstance(array, np.ndarray):
            array = array.get()  # a cupy array handed to the CPU backend
        return np.ascontiguousarray(array, dtype=dtype)
