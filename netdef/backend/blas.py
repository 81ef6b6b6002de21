"""numpy's BLAS, reached directly: one thread pool with netdef's kernels, and GEMM with beta.

Thread sharing. numpy's OpenBLAS keeps its own worker threads, which spin for a while after each
call; netdef's CPU kernels run on an OpenMP team whose threads spin after each kernel. A
convolution alternates the two, so on few cores each pool's spinning threads slow the other (on
2 cores: VGG16's convolutions forward + backward ~20% slower). OpenBLAS >= 0.3.27 accepts a
callback that runs its parallel jobs; the CPU backend registers one from its extension
(src/blas_threads.cpp) so that BLAS runs on the kernels' OpenMP team and OpenBLAS's own threads
sleep. This is process-wide: numpy's other GEMMs in the process run on that team too. Set the
environment variable NETDEF_BLAS_THREADS=openblas to leave OpenBLAS's threading alone. When the
BLAS is not such an OpenBLAS, nothing changes.

gemm(). numpy's matmul cannot accumulate into its output (C = alpha A B + beta C); the
convolution's weight gradient needs exactly that (`dW +=`), and with matmul it costs a temporary
the size of dW (FCN's fc6: 400 MB) and a pass over it. gemm() calls cblas_?gemm of the same
library when it can, and falls back to matmul otherwise (same results up to rounding).
"""
import ctypes
import os

import numpy as np

_state = {"lib": None, "searched": False, "shared": False, "gemm": {}}


def _loaded_openblas_paths():
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and "openblas" in os.path.basename(parts[5]).lower():
                    if parts[5] not in paths:
                        paths.append(parts[5])
    except OSError:
        pass
    # numpy's own copy first: scipy (imported by scikit-learn, say) brings a second OpenBLAS,
    # and sharing threads with or calling into that one would leave numpy's copy untouched
    numpy_dir = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    mine = (os.path.join(numpy_dir, "numpy.libs"), os.path.join(numpy_dir, "numpy"))
    return sorted(paths, key=lambda p: not p.startswith(mine))


def _symbol(lib, base):
    """(function, ilp64) for an OpenBLAS entry point under its known manglings, or (None, _)."""
    for prefix in ("scipy_", ""):
        for suffix, ilp64 in (("64_", True), ("", None)):
            fn = getattr(lib, prefix + base + suffix, None) if lib is not None else None
            if fn is not None:
                return fn, ilp64
    return None, None


def openblas():
    """The ctypes handle of the OpenBLAS that numpy has loaded, or None."""
    if not _state["searched"]:
        _state["searched"] = True
        mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 1)
        for path in _loaded_openblas_paths():
            try:
                lib = ctypes.CDLL(path, mode=mode)
            except OSError:
                continue
            if _symbol(lib, "cblas_sgemm")[0] is not None:
                _state["lib"] = lib
                break
    return _state["lib"]


def _ilp64(lib, hint):
    if hint is not None:
        return hint
    cfg, _ = _symbol(lib, "openblas_get_config")
    if cfg is None:
        return False
    cfg.restype = ctypes.c_char_p
    return b"USE64BITINT" in (cfg() or b"")


def share_threads(extension_path):
    """Make OpenBLAS run its parallel jobs on the OpenMP team of the extension at
    `extension_path` (netdef._cpu_kernels). Returns True when done (or already done)."""
    if _state["shared"]:
        return True
    if os.environ.get("NETDEF_BLAS_THREADS", "").lower() == "openblas":
        return False
    lib = openblas()
    setter, _ = _symbol(lib, "openblas_set_threads_callback_function")
    if setter is None:
        return False
    try:
        ext = ctypes.CDLL(extension_path, mode=getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 1))
        install = ext.netdef_share_blas_threads
    except (OSError, AttributeError):
        return False
    install.argtypes = [ctypes.c_void_p]
    install.restype = ctypes.c_int
    install(ctypes.cast(setter, ctypes.c_void_p))
    _state["shared"] = True
    _state["extension"] = ext
    return True


def shared_thread_calls():
    """Parallel BLAS calls that ran on netdef's threads so far (None when not shared)."""
    ext = _state.get("extension")
    if ext is None:
        return None
    fn = ext.netdef_blas_thread_calls
    fn.restype = ctypes.c_longlong
    return fn()


_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _cblas_gemm(dtype):
    dtype = np.dtype(dtype)
    if dtype not in _state["gemm"]:
        fn = None
        lib = openblas()
        base = {np.dtype(np.float32): "cblas_sgemm", np.dtype(np.float64): "cblas_dgemm"}.get(dtype)
        if lib is not None and base is not None:
            fn, hint = _symbol(lib, base)
            if fn is not None:
                integer = ctypes.c_int64 if _ilp64(lib, hint) else ctypes.c_int32
                real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, integer, integer, integer, real,
                               ctypes.c_void_p, integer, ctypes.c_void_p, integer, real, ctypes.c_void_p,
                               integer]
                fn.restype = None
        _state["gemm"][dtype] = fn
    return _state["gemm"][dtype]


def _as_matrix(a):
    """(transposed, leading dimension) for a 2-D array that BLAS can read in place, or None."""
    if a.ndim != 2 or a.strides[0] % a.itemsize or a.strides[1] % a.itemsize:
        return None
    s0, s1 = a.strides[0] // a.itemsize, a.strides[1] // a.itemsize
    rows, cols = a.shape
    if s1 == 1 or cols == 1:  # row-major, rows s0 apart
        ld = s0 if rows > 1 else cols
        if ld >= max(cols, 1):
            return False, ld
    if s0 == 1 or rows == 1:  # the transpose of a row-major (cols, rows), columns s1 apart
        ld = s1 if cols > 1 else rows
        if ld >= max(rows, 1):
            return True, ld
    return None


def gemm(a, b, c, alpha=1.0, beta=0.0):
    """c = alpha a @ b + beta c for 2-D numpy arrays (c row-major with unit column stride;
    a, b any view with one unit stride, e.g. a transpose). Falls back to matmul."""
    m, k = a.shape
    n = b.shape[1]
    fn = _cblas_gemm(c.dtype) if a.dtype == b.dtype == c.dtype else None
    ma, mb = _as_matrix(a), _as_matrix(b)
    mc = _as_matrix(c) if c.ndim == 2 else None
    if fn is not None and ma is not None and mb is not None and mc is not None and not mc[0] \
            and m and n and k:
        ldc = mc[1]
        fn(_ROW_MAJOR, _TRANS if ma[0] else _NO_TRANS, _TRANS if mb[0] else _NO_TRANS, m, n, k, alpha,
           a.ctypes.data, ma[1], b.ctypes.data, mb[1], beta, c.ctypes.data, ldc)
        return c
    prod = np.matmul(a, b)
    if alpha != 1.0:
        prod *= alpha
    if beta == 0.0:
        c[...] = prod
    else:
        if beta != 1.0:
            c *= beta
        c += prod
    return c
