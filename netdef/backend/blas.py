"""The CPU's BLAS: which library computes netdef's GEMMs, one thread pool with netdef's kernels,
and GEMM with beta.

Which library. NETDEF_BLAS picks it, once per process (logged when the CPU backend starts):

    auto            (default) numpy's own OpenBLAS
    openblas        numpy's own OpenBLAS, an error if numpy's BLAS is not one netdef can call
    scipy-openblas  the OpenBLAS of the scipy-openblas32 wheel (pip install 'netdef[scipy-openblas]')
    mkl             Intel oneMKL, libmkl_rt of the mkl wheel (pip install 'netdef[mkl]'), on GNU OpenMP

numpy's OpenBLAS stays the default: on the 2-core AVX2 machine of bench/README.md ("GEMM
library") no other library made netdef's nets > 5 % faster end to end (bench/zoo.py,
bench/fcn8s.py; scipy-openblas's newer OpenBLAS is ~10 % faster on many convolution GEMMs alone
in bench/gemm.py, MKL slower on this AMD CPU), and it comes with numpy. The others are there to
measure on other machines (MKL on Intel CPUs) and as a way out. The library computes what goes
through gemm() and the CPU backend's products; numpy's own matmul (InnerProduct's forward calls
it directly, and the backend keeps tiny products there) stays on numpy's BLAS. A library asked
for by name but not installed is an error that names the extra; no library at all (numpy on
another BLAS) leaves every product to numpy's matmul. Each library is found through its own
package (numpy's files, scipy_openblas32's get_lib_dir(), the mkl distribution's files),
/proc/self/maps only where numpy's files do not list its BLAS (a numpy linked against a system
OpenBLAS).

Thread sharing. An OpenBLAS keeps its own worker threads, which spin for a while after each
call; netdef's CPU kernels run on an OpenMP team whose threads spin after each kernel. A
convolution alternates the two, so on few cores each pool's spinning threads slow the other (on
2 cores: VGG16's convolutions forward + backward ~20% slower; bench/gemm.py's im2col-GEMM-ReLU
loop 5x slower than its parts). OpenBLAS >= 0.3.27 accepts a callback that runs its parallel
jobs; the CPU backend registers one from its extension (src/blas_threads.cpp) so that BLAS runs
on the kernels' OpenMP team and OpenBLAS's own threads sleep: numpy's OpenBLAS always (numpy's
own matmuls alternate with the kernels too), and scipy-openblas's when it is the library.
This is process-wide: numpy's other GEMMs in the process run on that team too. MKL is told to
use its GNU OpenMP layer, which is the libgomp netdef's kernels already run on: one team, no
callback needed. Set NETDEF_BLAS_THREADS=openblas to leave the libraries' threading alone.

gemm(). numpy's matmul cannot accumulate into its output (C = alpha A B + beta C); the
convolution's weight gradient needs exactly that (`dW +=`), and with matmul it costs a temporary
the size of dW (FCN's fc6: 400 MB) and a pass over it. gemm() calls cblas_?gemm of the selected
library when it can, and falls back to matmul otherwise (same results up to rounding).
"""
import ctypes
import importlib.metadata
import logging
import os

import numpy as np

from ..errors import BackendError

log = logging.getLogger("netdef")

ENV = "NETDEF_BLAS"
#: NETDEF_BLAS name -> (what it is, the extra of netdef that installs it; None: comes with numpy)
LIBRARIES = {
    "openblas": ("numpy's own OpenBLAS", None),
    "scipy-openblas": ("the OpenBLAS of the scipy-openblas32 wheel", "scipy-openblas"),
    "mkl": ("Intel oneMKL (libmkl_rt of the mkl wheel)", "mkl"),
}
#: What NETDEF_BLAS=auto takes: the first of these that loads (see the module docstring)
AUTO = ("openblas",)

_state = {"lib": None, "searched": False, "shared": False, "library": None, "selected": False,
          "loaded": {}}


def _dist_files(dist, match):
    """Paths of the files of installed distribution `dist` whose base name `match` accepts."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [str(f.locate()) for f in files if match(os.path.basename(str(f)))]


def _numpy_openblas_paths():
    """numpy's OpenBLAS: the one its wheel ships (in its own files), else what the process has
    mapped. Only numpy's copy: scipy (imported by scikit-learn, say) brings a second OpenBLAS,
    and sharing threads with or calling into that one would leave numpy's copy untouched."""
    paths = _dist_files("numpy", lambda b: "openblas" in b.lower() and ".so" in b)
    numpy_dir = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    mine = (os.path.join(numpy_dir, "numpy.libs"), os.path.join(numpy_dir, "numpy"))
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and "openblas" in os.path.basename(parts[5]).lower():
                    if parts[5] not in paths:
                        paths.append(parts[5])
    except OSError:
        pass
    return sorted(paths, key=lambda p: not p.startswith(mine))


def _symbol(lib, base):
    """(function, ilp64) for an OpenBLAS entry point under its known manglings, or (None, _)."""
    for prefix in ("scipy_", ""):
        for suffix, ilp64 in (("64_", True), ("", None)):
            fn = getattr(lib, prefix + base + suffix, None) if lib is not None else None
            if fn is not None:
                return fn, ilp64
    return None, None


def _already_loaded(path):
    """The ctypes handle of the library at `path` that this process has loaded (RTLD_NOLOAD:
    never a second copy of it); OSError where it is not loaded."""
    return ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 1))


def openblas():
    """The ctypes handle of the OpenBLAS that numpy has loaded, or None."""
    if not _state["searched"]:
        _state["searched"] = True
        for path in _numpy_openblas_paths():
            try:
                lib = _already_loaded(path)
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


def _sharing_allowed():
    return os.environ.get("NETDEF_BLAS_THREADS", "").lower() != "openblas"


def _install_callback(setter):
    ext = _state.get("extension")
    install = ext.netdef_share_blas_threads
    install.argtypes = [ctypes.c_void_p]
    install.restype = ctypes.c_int
    install(ctypes.cast(setter, ctypes.c_void_p))


def register_extension(extension_path):
    """Where the CPU backend's extension (netdef._cpu_kernels) is: its own bf16 GEMM lives there."""
    _state["extension_path"] = extension_path


def share_threads(extension_path):
    """Make numpy's OpenBLAS run its parallel jobs on the OpenMP team of the extension at
    `extension_path` (netdef._cpu_kernels). Returns True when done (or already done)."""
    if _state["shared"]:
        return True
    if not _sharing_allowed():
        return False
    lib = openblas()
    setter, _ = _symbol(lib, "openblas_set_threads_callback_function")
    if setter is None:
        return False
    try:
        ext = _already_loaded(extension_path)
        ext.netdef_share_blas_threads
    except (OSError, AttributeError):
        return False
    _state["extension"] = ext
    _install_callback(setter)
    _state["shared"] = True
    return True


def _share_second(setter):
    """The callback for a second OpenBLAS too. The extension's fork handler unregisters only
    the last library it registered, so numpy's is registered again after this one, and this
    one is unregistered in a forked child from Python (in a child, GNU OpenMP's team is gone)."""
    _install_callback(setter)
    numpy_setter, _ = _symbol(openblas(), "openblas_set_threads_callback_function")
    _install_callback(numpy_setter)
    os.register_at_fork(after_in_child=lambda: setter(None))


def shared_thread_calls():
    """Parallel BLAS calls that ran on netdef's threads so far (None when not shared)."""
    ext = _state.get("extension")
    if ext is None:
        return None
    fn = ext.netdef_blas_thread_calls
    fn.restype = ctypes.c_longlong
    return fn()


# ---- the library --------------------------------------------------------------------------------
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_MKL_THREADING_GNU = 3


class Library:
    """A loaded BLAS: name (NETDEF_BLAS's), label (what and which version), threading (how its
    threads run), numpys (True when it is the library numpy's matmul calls); cblas_gemm(dtype)."""

    def __init__(self, name, handle, label, threading, numpys=False):
        self.name, self.handle, self.label, self.threading, self.numpys = name, handle, label, threading, numpys
        self._gemm = {}

    def threads(self):
        fn = getattr(self.handle, "MKL_Get_Max_Threads", None) or _symbol(self.handle, "openblas_get_num_threads")[0]
        if fn is None:
            return None
        fn.restype = ctypes.c_int
        return int(fn())

    def cblas_gemm(self, dtype):
        """cblas_sgemm / cblas_dgemm with its argument types set, or None."""
        return self._bind("gemm", dtype, 3, 3, (1, 1, 0, 1))

    def cblas_gemv(self, dtype):
        """cblas_sgemv / cblas_dgemv with its argument types set, or None."""
        return self._bind("gemv", dtype, 2, 2, (1, 1, 0, 1))

    def _bind(self, op, dtype, enums, sizes, tail):
        """cblas_<s|d><op>(layout and transposes: `enums` ints, `sizes` dimensions, alpha, then
        `tail`: 1 a pointer and its leading dimension / increment, 0 a scalar (beta))."""
        dtype = np.dtype(dtype)
        key = (op, dtype)
        if key not in self._gemm:
            fn = None
            prefix = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}.get(dtype)
            if prefix is not None:
                fn, hint = _symbol(self.handle, f"cblas_{prefix}{op}")
                if fn is not None:
                    integer = ctypes.c_int64 if _ilp64(self.handle, hint) else ctypes.c_int32
                    real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
                    args = [ctypes.c_int] * enums + [integer] * sizes + [real]
                    for pointer in tail:
                        args += [ctypes.c_void_p, integer] if pointer else [real]
                    fn.argtypes = args
                    fn.restype = None
            self._gemm[key] = fn
        return self._gemm[key]


def _openblas_version(lib):
    cfg, _ = _symbol(lib, "openblas_get_config")
    if cfg is None:
        return "OpenBLAS"
    cfg.restype = ctypes.c_char_p
    words = (cfg() or b"OpenBLAS").decode(errors="replace").split()
    return " ".join(words[:2])


def _load_openblas():
    lib = openblas()
    if lib is None:
        return None
    how = "on netdef's OpenMP team" if _state["shared"] else "on its own threads"
    return Library("openblas", lib, f"{_openblas_version(lib)} (numpy {np.__version__}'s)", how, numpys=True)


def _load_scipy_openblas():
    try:
        import scipy_openblas32
    except ImportError:
        return None
    lib = ctypes.CDLL(os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True)))
    how = "on its own threads"
    setter, _ = _symbol(lib, "openblas_set_threads_callback_function")
    if setter is not None and _state["shared"]:
        _share_second(setter)
        how = "on netdef's OpenMP team"
    return Library("scipy-openblas", lib, f"{_openblas_version(lib)} (scipy-openblas32 "
                   f"{importlib.metadata.version('scipy-openblas32')})", how)


def _load_mkl():
    paths = sorted(_dist_files("mkl", lambda b: b.startswith("libmkl_rt.so")), key=len)
    if not paths:
        return None
    lib = ctypes.CDLL(paths[0])
    how = "on its own OpenMP threads"
    # GNU OpenMP is the libgomp netdef's kernels run on: one team for both. The layer can only
    # be chosen before MKL's first computation; MKL answers the layer in force.
    if _sharing_allowed() and lib.MKL_Set_Threading_Layer(_MKL_THREADING_GNU) == _MKL_THREADING_GNU:
        how = "on GNU OpenMP, netdef's team"
        # GNU OpenMP's team does not survive a fork (a parallel region in the child hangs): a
        # forked child (a data loader) runs MKL on its one thread
        os.register_at_fork(after_in_child=lambda: lib.MKL_Set_Num_Threads(1))
    buf = ctypes.create_string_buffer(256)
    lib.MKL_Get_Version_String(buf, len(buf))
    words = buf.value.decode(errors="replace").split()
    version = next((w.split("-")[0] for w in words if w[:1].isdigit()), importlib.metadata.version("mkl"))
    return Library("mkl", lib, f"oneMKL {version} (mkl {importlib.metadata.version('mkl')})", how)


_LOADERS = {"openblas": _load_openblas, "scipy-openblas": _load_scipy_openblas, "mkl": _load_mkl}


def _load(name):
    """Each library is loaded once: MKL's threading layer and a second OpenBLAS's callback are
    process-wide settings, made on the first load."""
    if _state["loaded"].get(name) is None:
        _state["loaded"][name] = _LOADERS[name]()
    return _state["loaded"][name]


def select(value="auto"):
    """The Library NETDEF_BLAS=`value` asks for (None: none is there, numpy's matmul computes
    everything). Raises BackendError for a library asked for by name that cannot be loaded."""
    value = (value or "auto").strip().lower()
    if value == "auto":
        for name in AUTO:
            lib = _load(name)
            if lib is not None:
                return lib
        return None
    if value not in LIBRARIES:
        raise BackendError(f"{ENV}={value!r} is not a BLAS netdef knows; use one of auto, {', '.join(LIBRARIES)}")
    what, extra = LIBRARIES[value]
    try:
        lib = _load(value)
    except (OSError, AttributeError, importlib.metadata.PackageNotFoundError) as e:
        raise BackendError(f"{ENV}={value}: {what} is installed but could not be loaded ({e})") from None
    if lib is None:
        if extra is None:
            raise BackendError(f"{ENV}={value}: numpy's BLAS is not an OpenBLAS that netdef can call "
                               f"(numpy {np.__version__}); use {ENV}=auto, or install one of the others")
        raise BackendError(f"{ENV}={value}: {what} is not installed; install it with "
                           f"pip install 'netdef[{extra}]'")
    return lib


def library():
    """The Library of this process (NETDEF_BLAS, chosen on first use and logged), or None."""
    if not _state["selected"]:
        value = os.environ.get(ENV, "auto")
        lib = select(value)  # an error here is raised again on the next call
        _state["library"], _state["selected"] = lib, True
        if lib is None:
            log.debug("BLAS: none netdef can call (numpy %s); products go through numpy's matmul", np.__version__)
        else:
            threads = lib.threads()
            log.debug("BLAS: %s, %s thread%s %s (%s=%s; of %s)", lib.label, threads if threads else "?",
                     "" if threads == 1 else "s", lib.threading, ENV, value, ", ".join(LIBRARIES))
    return _state["library"]


def numpy_computes_products():
    """True when numpy's matmul runs on the selected library (or when there is none)."""
    lib = library()
    return lib is None or lib.numpys


def _selected(lib):
    if lib is None:
        lib = _state["library"] if _state["selected"] else library()
    return lib


def _step(a, axis):
    """a's element stride along `axis` when BLAS can take it as a vector's increment, else None."""
    if a.shape[axis] == 1:
        return 1
    step, rest = divmod(a.strides[axis], a.itemsize)
    return step if step > 0 and not rest else None


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


def gemm(a, b, c, alpha=1.0, beta=0.0, library=None):
    """c = alpha a @ b + beta c for 2-D numpy arrays (c row-major with unit column stride;
    a, b any view with one unit stride, e.g. a transpose), on `library` (a Library; default: the
    process's, see library()). Falls back to matmul."""
    m, k = a.shape
    n = b.shape[1]
    lib = _selected(library) if a.dtype == b.dtype == c.dtype else None
    ma, mb = _as_matrix(a), _as_matrix(b)
    mc = _as_matrix(c) if c.ndim == 2 else None
    if lib is not None and ma is not None and mb is not None and mc is not None and not mc[0] \
            and m and n and k:
        # a one-column or one-row product as GEMV: OpenBLAS's GEMM takes 3-5x longer on it
        # (a bias gradient, X ones: 64 x 106276 in 1.7 ms against 0.37; bench/README.md)
        gemv = lib.cblas_gemv(c.dtype) if n == 1 or m == 1 else None
        if gemv is not None and n == 1 and _step(b, 0) and _step(c, 0):
            # c[:, 0] = op(A) b[:, 0]; A is stored (m, k), or (k, m) when transposed
            rows, cols = (k, m) if ma[0] else (m, k)
            gemv(_ROW_MAJOR, _TRANS if ma[0] else _NO_TRANS, rows, cols, alpha, a.ctypes.data, ma[1],
                 b.ctypes.data, _step(b, 0), beta, c.ctypes.data, _step(c, 0))
            return c
        if gemv is not None and m == 1 and _step(a, 1) and _step(c, 1):
            # c[0]^T = op(B)^T a[0]^T
            rows, cols = (n, k) if mb[0] else (k, n)
            gemv(_ROW_MAJOR, _NO_TRANS if mb[0] else _TRANS, rows, cols, alpha, b.ctypes.data, mb[1],
                 a.ctypes.data, _step(a, 1), beta, c.ctypes.data, _step(c, 1))
            return c
        fn = lib.cblas_gemm(c.dtype)
        if fn is not None:
            fn(_ROW_MAJOR, _TRANS if ma[0] else _NO_TRANS, _TRANS if mb[0] else _NO_TRANS, m, n, k, alpha,
               a.ctypes.data, ma[1], b.ctypes.data, mb[1], beta, c.ctypes.data, mc[1])
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


# ---- bf16 products ------------------------------------------------------------------------------
BF16_ENV = "NETDEF_BF16_GEMM"
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_flags(cpuinfo="/proc/cpuinfo"):
    """The bf16 instruction sets this CPU has (of amx_bf16, avx512_bf16), as Linux lists them."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [fl for fl in _BF16_FLAGS if fl in flags]
    except OSError:
        pass
    return []


class Bf16Gemm:
    """c = a @ b + beta c for float32 arrays whose values are bf16 numbers (a layer's rounded
    operands), through MKL's cblas_gemm_bf16bf16f32: bf16 inputs, float32 accumulation and
    output - on AMX or AVX512-BF16 several times the float32 rate. The bf16 bits are the top
    halves of the float32 ones (exact: the values are representable), gathered into contiguous
    16-bit matrices."""

    def __init__(self, lib):
        self.lib = lib
        fn = lib.handle.cblas_gemm_bf16bf16f32
        fn.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                            ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int]
        fn.restype = None
        self.fn = fn

    @staticmethod
    def bits(x):
        return (x.view(np.uint32) >> 16).astype(np.uint16, order="C")  # row-major whatever x is

    def __call__(self, a, b, c, beta=0.0):
        m, k = a.shape
        n = b.shape[1]
        mc = _as_matrix(c)
        if mc is None or mc[0] or not (m and n and k):
            return False
        a16, b16 = self.bits(a), self.bits(b)
        self.fn(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, m, n, k, 1.0, a16.ctypes.data, k, b16.ctypes.data, n,
                beta, c.ctypes.data, mc[1])
        return True


def _bf16_library():
    """(MKL's Library, None) when it has cblas_gemm_bf16bf16f32, else (None, why not)."""
    try:
        lib = _load("mkl")
    except (OSError, AttributeError, importlib.metadata.PackageNotFoundError) as e:
        return None, f"MKL could not be loaded ({e})"
    if lib is None:
        return None, "MKL is not installed (pip install 'netdef[mkl]')"
    if getattr(lib.handle, "cblas_gemm_bf16bf16f32", None) is None:
        return None, f"{lib.label} has no cblas_gemm_bf16bf16f32"
    return lib, None


class OwnBf16Gemm:
    """c = bf16(a) @ bf16(b) + beta c through netdef's own AVX512-BF16 GEMM (src/bf16_gemm.cpp,
    in the CPU extension): float32 operands of any strides (rounded to bf16, nearest even, as it
    packs them: a layer's already rounded operands pass unchanged), float32 accumulation and
    output, about twice the float32 GEMM's rate on these instructions (bench/README.md)."""

    label = "netdef's AVX512-BF16 GEMM"

    def __init__(self, extension):
        fn = extension.netdef_gemm_bf16
        L = ctypes.c_long
        fn.argtypes = [L, L, L, ctypes.c_void_p, L, L, ctypes.c_void_p, L, L, ctypes.c_float, ctypes.c_void_p, L]
        fn.restype = ctypes.c_int
        self.fn = fn

    @staticmethod
    def supported(extension):
        return bool(extension.netdef_gemm_bf16_supported())

    def __call__(self, a, b, c, beta=0.0):
        if not (a.dtype == b.dtype == c.dtype == np.float32) or c.strides[1] != 4 or any(
                s % 4 for s in a.strides + b.strides + c.strides):
            return False
        m, k = a.shape
        n = b.shape[1]
        self.fn(m, n, k, a.ctypes.data, a.strides[0] // 4, a.strides[1] // 4, b.ctypes.data, b.strides[0] // 4,
                b.strides[1] // 4, beta, c.ctypes.data, c.strides[0] // 4)
        return True


class OwnBatchedGemm:
    """c[i] = a[i] @ b[i] + beta c[i] for a batch of float32 products through netdef's own AVX-512
    GEMM (src/f32_gemm.cpp, in the CPU extension): each product one thread's work, the whole batch
    in one parallel region, where a BLAS call per product splits thin products across the threads
    (the Winograd path's 16 or 36 products; which batches: CPUBackend.batched_min)."""

    label = "netdef's AVX-512 batched GEMM"

    def __init__(self, extension):
        fn = extension.netdef_gemm_f32_batched
        L = ctypes.c_long
        fn.argtypes = [L, L, L, L, ctypes.c_void_p, L, L, ctypes.c_void_p, L, L, ctypes.c_float,
                       ctypes.c_void_p, L, L]
        fn.restype = ctypes.c_int
        self.fn = fn

    @staticmethod
    def supported(extension):
        return bool(extension.netdef_gemm_f32_supported())

    def __call__(self, a, b, c, beta=0.0):
        """False (nothing done) unless float32 with each matrix's rows contiguous and c's batch
        contiguous; a or b may be one matrix for every product (2-d)."""
        if not (a.dtype == b.dtype == c.dtype == np.float32) or c.ndim != 3 or not c.flags.c_contiguous:
            return False
        if a.ndim not in (2, 3) or b.ndim not in (2, 3) or a.strides[-1] != 4 or b.strides[-1] != 4:
            return False
        batch, m, n = c.shape
        k = a.shape[-1]
        sab = a.strides[0] // 4 if a.ndim == 3 else 0
        sbb = b.strides[0] // 4 if b.ndim == 3 else 0
        if any(s % 4 for s in a.strides + b.strides):
            return False
        self.fn(batch, m, n, k, a.ctypes.data, sab, a.strides[-2] // 4, b.ctypes.data, sbb,
                b.strides[-2] // 4, beta, c.ctypes.data, m * n, n)
        return True


BATCHED_ENV = "NETDEF_BATCHED_GEMM"


def _own_batched():
    """(OwnBatchedGemm, None) where the CPU has AVX-512F and the extension is loaded, else (None, why)."""
    ext = _extension_with("netdef_gemm_f32_batched")
    if ext is None:
        return None, "netdef's CPU extension is not loaded"
    if not OwnBatchedGemm.supported(ext):
        return None, "this CPU has no AVX-512F"
    return OwnBatchedGemm(ext), None


def batched_gemm():
    """netdef's own batched float32 GEMM, or None (the products then go to numpy's matmul / the
    BLAS). NETDEF_BATCHED_GEMM: auto (default: where the CPU has AVX-512F), on (an error where
    it cannot run), off (to compare)."""
    if "batched" not in _state:
        value = os.environ.get(BATCHED_ENV, "auto").strip().lower()
        if value not in ("auto", "on", "off"):
            raise BackendError(f"{BATCHED_ENV}={value!r}: use auto, on or off")
        chosen, why = (None, f"{BATCHED_ENV}=off") if value == "off" else _own_batched()
        if chosen is None and value == "on":
            raise BackendError(f"{BATCHED_ENV}=on: {why}")
        _state["batched"] = chosen
        log.debug("batched float32 products: %s", chosen.label if chosen else f"numpy / the BLAS ({why})")
    return _state["batched"]


def round_bf16(x):
    """float32 x rounded to bf16 numbers as OwnBf16Gemm rounds them (nearest even, subnormals to
    zero, NaNs quiet), for the rare product it does not take."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    r = np.where((u & 0x7F800000) == 0, u & 0x80000000, r)
    r = np.where((u & 0x7FFFFFFF) > 0x7F800000, u | 0x400000, r)
    return r.astype(np.uint32).view(np.float32).reshape(x.shape)


def _extension_with(symbol):
    """The loaded CPU extension (netdef._cpu_kernels) where it exports `symbol`, else None."""
    try:
        ext = _already_loaded(_state.get("extension_path"))
        getattr(ext, symbol)
    except (OSError, AttributeError, TypeError):
        return None
    return ext


def _own_bf16(flags):
    """(OwnBf16Gemm, None) where this CPU has AVX512-BF16 and the extension is loaded, else (None, why)."""
    if "avx512_bf16" not in flags:
        return None, "this CPU has no avx512_bf16"
    ext = _extension_with("netdef_gemm_bf16")
    if ext is None:
        return None, "netdef's CPU extension is not loaded"
    if not OwnBf16Gemm.supported(ext):
        return None, "the CPU lacks AVX512-BW/VL beside AVX512-BF16"
    return OwnBf16Gemm(ext), None


def bf16_gemm():
    """The bf16 product of this process, or None (products of bf16 operands then run through the
    float32 GEMM: the same results up to the order of the additions). NETDEF_BF16_GEMM: auto
    (default: MKL's where the CPU has AMX and the mkl extra is installed, else netdef's own where
    it has AVX512-BF16 - MKL does not use AVX512-BF16 on AMD's CPUs, measured no faster than
    float32 on Zen 4), netdef (its own; an error where the CPU cannot), mkl (MKL's whatever the
    CPU: it converts on CPUs without bf16 instructions, no faster; an error when it cannot be
    had), off. Chosen once and logged at the first bf16 product."""
    if "bf16" not in _state:
        value = os.environ.get(BF16_ENV, "auto").strip().lower()
        if value not in ("auto", "netdef", "mkl", "off"):
            raise BackendError(f"{BF16_ENV}={value!r}: use auto, netdef, mkl or off")
        flags = cpu_bf16_flags()
        chosen, why = None, None
        if value == "off":
            why = f"{BF16_ENV}=off"
        elif value == "auto" and not flags:
            why = "this CPU has no bf16 instructions (amx_bf16, avx512_bf16)"
        elif value == "netdef" or (value == "auto" and "amx_bf16" not in flags):
            chosen, why = _own_bf16(flags)
            if chosen is None and value == "netdef":
                raise BackendError(f"{BF16_ENV}=netdef: {why}")
        else:
            lib, why = _bf16_library()
            if lib is not None:
                chosen = Bf16Gemm(lib)
            elif value == "mkl":  # asked for by name: an error, as for NETDEF_BLAS
                raise BackendError(f"{BF16_ENV}=mkl: {why}")
            else:  # AMX without MKL: the AVX512-BF16 instructions AMX's CPUs have as well
                chosen, why = _own_bf16(flags)
        _state["bf16"] = chosen
        if isinstance(chosen, Bf16Gemm):
            log.info("bf16 products: %s cblas_gemm_bf16bf16f32 (%s)", chosen.lib.label,
                     ", ".join(flags) or "no bf16 instructions: MKL converts, no faster than float32")
        elif chosen is not None:
            log.info("bf16 products: %s (%s)", chosen.label, ", ".join(flags))
        else:
            log.info("bf16 products: rounded operands through the float32 GEMM (%s): bf16's results, "
                     "float32's speed", why)
    return _state["bf16"]
