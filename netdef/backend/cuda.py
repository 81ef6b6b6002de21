"""GPU backend: cupy for array operations and cuBLAS, one cached RawModule per kernel file and
dtype compiled by NVRTC from the same kernels/*.cu the CPU extension is built from. What it
decides (products, reductions, budgets) is gpu_policy.GPUPolicy's; this module is CuPy."""
import contextlib
import hashlib
import re
from importlib import resources

import numpy as np

from ..errors import BackendError
from . import _FLOAT_DTYPES, tf32_enabled
from .gpu_policy import GPUPolicy

_BLOCK = 256
_MAX_GRID = 65535 * 32
_CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def _import_cupy():
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install
        raise BackendError(
            f"GPU mode needs cupy ({e}); install netdef with the extra matching your CUDA: "
            "pip install '.[cuda12]' or '.[cuda13]'") from None
    return cupy


def check_available(device):
    cupy = _import_cupy()
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        raise BackendError(f"GPU mode: no usable CUDA device ({e})") from None
    if count == 0:
        raise BackendError("GPU mode: no CUDA device found")
    if device >= count:
        raise BackendError(f"GPU mode: device {device} requested but only {count} device(s) present")


def apply_tf32(enabled):
    """Switch CuPy's compute type for float32 products (see netdef.set_tf32). CuPy keeps it in
    cupy._core._routines_linalg (the switch behind CUPY_TF32); a CuPy without it gets a clear
    error rather than a silent fp32."""
    import cupy
    try:
        from cupy._core import _routines_linalg as linalg

        kind = linalg.COMPUTE_TYPE_TF32 if enabled else linalg.COMPUTE_TYPE_DEFAULT
        setter = linalg.set_compute_type
    except (ImportError, AttributeError) as e:
        if not enabled:
            return
        raise BackendError(f"TF32: CuPy {getattr(cupy, '__version__', '?')} has no compute-type switch "
                           f"({e}); set CUPY_TF32=1 in the environment before starting instead") from None
    setter(np.float32, kind)


def kernel_source(family):
    """The text of kernels/<family>.cu with its headers (common.cuh, and kernels/*.cuh such as
    conv_taps.cuh) inlined, each once: CuPy's disk cache hashes only the code string, so an
    #include'd header edit would otherwise reuse a stale cubin."""
    files = resources.files("netdef.kernels")
    try:
        src = (files / f"{family}.cu").read_text()
    except FileNotFoundError:
        raise BackendError(f"no kernel file kernels/{family}.cu") from None
    done = set()

    def inline(match):
        name = match.group(1)
        if name in done:
            return ""
        done.add(name)
        try:
            text = (files / name).read_text()
        except FileNotFoundError:
            raise BackendError(f"kernels/{family}.cu includes {name}, which kernels/ lacks") from None
        return _INCLUDE.sub(inline, text)

    return _INCLUDE.sub(inline, src)


_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([\w.]+\.cuh)"[ \t]*$', re.M)


def compile_options(src, dtype):
    """NVRTC options for one (kernel file, dtype) module; the source hash keeps CuPy's disk
    cache honest even if a future change includes headers by path."""
    return ("--std=c++17", f"-DDtype={_CTYPE[np.dtype(dtype)]}",
            "-DNETDEF_SRC_HASH=" + hashlib.sha1(src.encode()).hexdigest()[:12])


class CUDABackend(GPUPolicy):
    name = "gpu"

    def __init__(self, device=0):
        check_available(device)
        self.cupy = _import_cupy()
        self.xp = self.cupy
        self.device_id = device
        self._modules = {}
        self._functions = {}
        self._cublas = None
        super().__init__()

    def _seed_device(self, seed):
        with self.cupy.cuda.Device(self.device_id):
            self.rng = self.cupy.random.default_rng(seed)

    def _gemm_ok(self, dtype):
        # A direct sgemm ignores CuPy's compute-type switch: with TF32 on, float32 products
        # stay with cupy.matmul (and the bounded-temporary accumulation) so that TF32 applies.
        if np.dtype(dtype) == np.float32 and (tf32_enabled() or self._tensor_cores):
            return False
        return super()._gemm_ok(dtype)

    _tensor_cores = False

    @contextlib.contextmanager
    def _reduced_products(self):
        """Products of bf16 / fp16 operands on TF32 tensor cores. TF32 keeps 11 significant
        bits and float32's exponent, so a bf16 (8 bits) or fp16 (11 bits, a narrower exponent)
        number is a TF32 number: the tensor cores multiply those operands exactly and add in
        float32 - a bf16 / fp16 GEMM's result at TF32's rate, on float32 arrays."""
        if tf32_enabled() or self._tensor_cores:
            yield
            return
        apply_tf32(True)
        self._tensor_cores = True
        try:
            yield
        finally:
            self._tensor_cores = False
            apply_tf32(False)

    def _gemm(self, op_a, op_b, m, n, k, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
              stride_c, batch):
        """cublas<s|d>gemm[StridedBatched] on CuPy's handle for this device, scalars from the
        host (the handle's pointer mode is set for the call and restored)."""
        cp = self.cupy
        if self._cublas is None:
            from cupy_backends.cuda.libs import cublas  # also reachable as cupy.cuda.cublas

            self._cublas = cublas
        cublas = self._cublas
        single = C.dtype == np.float32
        scalars = np.array([alpha, beta], dtype=C.dtype)  # read by cuBLAS during the call
        alpha_ptr = scalars.ctypes.data
        beta_ptr = alpha_ptr + scalars.itemsize
        ops = {"N": cublas.CUBLAS_OP_N, "T": cublas.CUBLAS_OP_T}
        with cp.cuda.Device(self.device_id):
            handle = cp.cuda.device.get_cublas_handle()
            mode = cublas.getPointerMode(handle)
            cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
            try:
                if batch == 1:
                    fn = cublas.sgemm if single else cublas.dgemm
                    fn(handle, ops[op_a], ops[op_b], m, n, k, alpha_ptr, A.data.ptr, lda,
                       B.data.ptr, ldb, beta_ptr, C.data.ptr, ldc)
                else:
                    fn = cublas.sgemmStridedBatched if single else cublas.dgemmStridedBatched
                    fn(handle, ops[op_a], ops[op_b], m, n, k, alpha_ptr, A.data.ptr, lda, stride_a,
                       B.data.ptr, ldb, stride_b, beta_ptr, C.data.ptr, ldc, stride_c, batch)
            finally:
                cublas.setPointerMode(handle, mode)

    def _function(self, family, name, dtype):
        key = (family, name, dtype)
        fn = self._functions.get(key)
        if fn is None:
            mkey = (family, dtype)
            mod = self._modules.get(mkey)
            if mod is None:
                src = kernel_source(family)
                mod = self._modules[mkey] = self.cupy.RawModule(code=src, options=compile_options(src, dtype))
            try:
                fn = mod.get_function(name)
            except Exception as e:
                raise BackendError(f"kernel {family}.{name} ({dtype}): {e}") from None
            self._functions[key] = fn
        return fn

    def launch(self, family, name, dtype, n, args):
        cp = self.cupy
        fn = self._function(family, name, dtype)
        real = np.float32 if dtype == np.float32 else np.float64
        conv = [np.int64(n)]
        for i, a in enumerate(args):
            if isinstance(a, cp.ndarray):
                if not a.flags.c_contiguous:
                    raise BackendError(f"kernel {name}: argument {i + 1} is not C-contiguous")
                if a.dtype in _FLOAT_DTYPES and a.dtype != dtype:
                    raise BackendError(f"kernel {name}: argument {i + 1} is {a.dtype}, expected {dtype}")
                conv.append(a)
            elif isinstance(a, np.ndarray):
                raise BackendError(f"kernel {name}: argument {i + 1} is a numpy array on the GPU backend")
            elif isinstance(a, (bool, np.bool_, int, np.integer)):
                conv.append(np.int64(a))
            elif isinstance(a, (float, np.floating)):
                conv.append(real(a))
            else:
                raise BackendError(f"kernel {name}: argument {i + 1} of type {type(a).__name__} "
                                   "is not an array or a number")
        grid = min((n + _BLOCK - 1) // _BLOCK, _MAX_GRID)
        with cp.cuda.Device(self.device_id):
            fn((grid,), (_BLOCK,), tuple(conv))

    def available_memory(self):
        cp = self.cupy
        with cp.cuda.Device(self.device_id):
            free, _ = cp.cuda.runtime.memGetInfo()
            pool = cp.get_default_memory_pool()
            return free + pool.free_bytes()

    def to_numpy(self, array):
        return self.cupy.asnumpy(array)

    def asarray(self, array, dtype=None):
        with self.cupy.cuda.Device(self.device_id):
            return self.cupy.ascontiguousarray(self.cupy.asarray(array, dtype=dtype))

    def synchronize(self):
        self.cupy.cuda.Device(self.device_id).synchronize()
