"""Device selection. The device is chosen once per Net/Solver from the global mode
(pycaffe's set_mode_cpu / set_mode_gpu / set_device); layers only ever talk to the backend
object they were given: `xp` for array operations, `kernels(family)` for compiled kernels,
and the operations below for everything whose best implementation depends on the device:

    matmul(a, b, out, accumulate=False)   out (+)= a @ b, batched, out possibly strided
    matmul_sum(a, b, out)                 out += sum_i a[i] @ b[i]   (weight gradients)
    operands(fmt)                         a block whose products' operands are bf16 / fp16
                                          numbers (reduced precision): a faster product may run
    add_channel_sums(x, out)              out[c] += sum of x[:, c, ...]   (bias gradients)
    reduce_parts(rows, inner)             partial sums per row of a two-stage reduction
    workspace(dtype, size, name), ones(dtype, size)   scratch shared by the layers of a device
    col_budget, row_tile(width, rows), fill(array, value)
    profile, timed(phase)                 where the time goes (bench/conv.py)

Backend holds what every device does alike; gpu_policy.GPUPolicy the GPU's decisions (cuBLAS
with beta, bounded temporaries, launch-shaped reductions) apart from CuPy itself, so that the
test suite's emulated GPU (tests/conftest.py) takes them on numpy arrays; cpu.CPUBackend the
CPU's (OpenBLAS through blas.gemm, products computed transposed where OpenBLAS is slow).
"""
import contextlib
import os
import sys
import time

import numpy as np

from ..errors import BackendError

_state = {"mode": "cpu", "device": 0, "seed": None, "tf32": False}
_backends = {}


def set_mode_cpu():
    _state["mode"] = "cpu"


def set_mode_gpu():
    from . import cuda

    cuda.check_available(_state["device"])
    _state["mode"] = "gpu"


def set_device(device_id):
    if int(device_id) < 0:
        raise BackendError(f"set_device: device id must be >= 0, got {device_id}")
    _state["device"] = int(device_id)
    if _state["mode"] == "gpu":
        from . import cuda

        cuda.check_available(_state["device"])


def set_random_seed(seed):
    """Seed every backend's generator (fillers, dropout, data shuffling)."""
    _state["seed"] = int(seed)
    for b in _backends.values():
        b.seed(int(seed))


def set_tf32(enabled=True):
    """Let float32 GEMMs on the GPU (convolutions, inner products) run on TF32 tensor cores:
    ~8x the fp32 rate on Ampere and later, inputs rounded to 10-bit mantissas. Off by default,
    keeping Caffe's fp32 results, as PyTorch's torch.backends.cuda.matmul.allow_tf32. netdef's
    own kernels are unaffected, and so is the CPU (its GEMMs are always fp32).

    Sets CUPY_TF32, which CuPy reads at its first float32 matrix product, and CuPy's compute-type
    switch where this CuPy has one, so that a change after that product takes effect too."""
    enabled = bool(enabled)
    _state["tf32"] = enabled
    os.environ["CUPY_TF32"] = "1" if enabled else "0"
    if "cupy" in sys.modules:
        from .cuda import apply_tf32

        apply_tf32(enabled)


def tf32_enabled():
    return _state["tf32"]


def mode():
    return _state["mode"]


def get_backend(which=None, device=None):
    """The backend for `which` ('cpu'/'gpu', default: the current mode); one instance each."""
    which = which or _state["mode"]
    device = _state["device"] if device is None else device
    key = (which, device if which == "gpu" else 0)
    if key not in _backends:
        if which == "cpu":
            from .cpu import CPUBackend

            b = CPUBackend()
        elif which == "gpu":
            from .cuda import CUDABackend

            b = CUDABackend(device)
        else:
            raise BackendError(f"unknown backend {which!r}; expected 'cpu' or 'gpu'")
        if _state["seed"] is not None:
            b.seed(_state["seed"])
        _backends[key] = b
    return _backends[key]


class Backend:
    """What the two devices have in common: launching by family/name, the generators' state,
    scratch arrays, profiling."""

    name = None
    xp = np
    #: Most elements the convolutions' column workspace may hold for one chunk of images (or
    #: one band of rows). Fewer, larger GEMMs and launches pay on a GPU; the CPU caps it lower.
    col_budget = 1 << 25
    #: Do 3x3 stride-1 convolutions run as Winograd F(2x2, 3x3) (kernels/winograd.cu) here?
    #: The CPU measures it faster than im2col + GEMM; the GPU keeps im2col (not measured there).
    winograd = False

    def __init__(self):
        self._families = {}
        self._workspaces = {}
        self._ones = {}
        #: When set to a dict, seconds spent per phase accumulate in it under timed(phase),
        #: with the device synchronised around each phase (bench/conv.py).
        self.profile = None
        self.rng = None
        self.seed(None)

    def kernels(self, family):
        """The kernels of kernels/<family>.cu, as attributes: `kernels('relu').relu_forward(n, ...)`."""
        fam = self._families.get(family)
        if fam is None:
            fam = self._families[family] = KernelFamily(self, family)
        return fam

    # To be provided by each device.
    def launch(self, family, name, dtype, n, args):
        raise NotImplementedError

    def seed(self, seed):
        """Seed the host generator (fillers, data order) and the device one (dropout)."""
        self.host_rng = np.random.default_rng(seed)
        self._seed_device(seed)

    def _seed_device(self, seed):
        raise NotImplementedError

    def rng_state(self):
        """The generators' state as JSON-able data (a solverstate's netdef_state.rng), such
        that set_rng_state() continues both streams exactly where they are now."""
        # the device's state first: where it is a seed drawn from the host generator, the host
        # state recorded must be the one after that draw, as the uninterrupted run goes on from it
        device = self._device_rng_state()
        return {"backend": self.name, "host": self.host_rng.bit_generator.state, **device}

    def _device_rng_state(self):
        """A device generator whose state cannot be read back (CuPy's) is restarted here from
        a seed drawn from the host generator, and the seed is what gets recorded."""
        seed = int(self.host_rng.integers(0, 2**63 - 1))
        self._seed_device(seed)
        return {"device_seed": seed}

    def set_rng_state(self, state):
        """Restore what rng_state() returned (possibly on another backend: a CPU snapshot's
        device state is ignored on a GPU, whose stream then goes on from where it is)."""
        try:
            if "host" in state:
                self.host_rng.bit_generator.state = state["host"]
            self._set_device_rng_state(state)
        except (TypeError, ValueError, KeyError) as e:
            raise BackendError(f"cannot restore the random generator state: {e}") from None

    def _set_device_rng_state(self, state):
        if "device_seed" in state:
            self._seed_device(int(state["device_seed"]))

    def available_memory(self):
        raise NotImplementedError

    def to_numpy(self, array):
        raise NotImplementedError

    def asarray(self, array, dtype=None):
        raise NotImplementedError

    def synchronize(self):
        pass

    def fill(self, array, value):
        """array[...] = value (a contiguous float array of this device)."""
        array.fill(value)

    def addresses(self, arrays):
        """The addresses of `arrays` (C-contiguous arrays of this device) as an int64 array of
        this device: the `const index_t*` argument of a kernel that reads a list of arrays
        (kernels/eltwise.cu). The arrays must stay alive while the kernel runs."""
        ptrs = []
        for a in arrays:
            if not a.flags.c_contiguous:
                raise BackendError("addresses: an array is not C-contiguous")
            ptrs.append(a.data.ptr if hasattr(a.data, "ptr") else a.ctypes.data)
        return self.xp.asarray(np.array(ptrs, dtype=np.int64))

    # ---- scratch -----------------------------------------------------------------------
    def workspace(self, dtype, size, name="col"):
        """A flat scratch array of `size` elements, shared by every layer of this backend and
        dtype that asks for `name` (layers run one at a time and keep nothing in it between
        calls); different names are scratch arrays that one call needs at the same time."""
        key = (np.dtype(dtype).str, name)
        buf = self._workspaces.get(key)
        if buf is None or buf.size < size:
            self._workspaces.pop(key, None)  # free the old one before taking the new one
            buf = self._workspaces[key] = self.xp.empty(max(size, 1), dtype=dtype)
        return buf[:size]

    def ones(self, dtype, size):
        """A read-only vector of `size` ones (sums as products), shared like workspace()."""
        key = np.dtype(dtype).str
        buf = self._ones.get(key)
        if buf is None or buf.size < size:
            buf = self._ones[key] = self.xp.ones(max(size, 1), dtype=dtype)
        return buf[:size]

    # ---- profiling -----------------------------------------------------------------------
    def timed(self, phase):
        """A context that adds its duration to profile[phase] while profile is a dict."""
        if self.profile is None:
            return _NULL
        return _Timed(self, phase)

    # ---- products and reductions (the device's own choices) ------------------------------
    #: While a layer computes in reduced precision (Backend.operands): 'bf16' / 'fp16', the
    #: format every operand of matmul / matmul_sum is representable in; None otherwise.
    operand_format = None

    @contextlib.contextmanager
    def operands(self, fmt):
        """The products inside have operands representable in `fmt` ('bf16' / 'fp16'): a device
        with a product for that format may take it (MKL's bf16 GEMM on a CPU with AMX, tensor
        cores on a GPU); the results are those of float32 arithmetic on those operands, up to
        the order of the additions."""
        old, self.operand_format = self.operand_format, fmt
        try:
            yield
        finally:
            self.operand_format = old

    def rounds_operands(self, fmt):
        """True when this backend's products for `fmt` round their float32 operands themselves
        (to nearest even, as Layer.operand does): a layer whose operands go only to products may
        then hand them over unrounded and spare the rounding pass (netdef's own bf16 GEMM on the
        CPU packs them into bf16 anyway)."""
        return False

    def matmul(self, a, b, out, accumulate=False):
        """out = a @ b, or out += a @ b with accumulate, over the leading (batch) axes of out;
        a and b may have fewer leading axes (broadcast) and be transposed views; out may be
        strided (a band of columns of a bigger array), and is written only where it lies."""
        raise NotImplementedError

    def matmul_sum(self, a, b, out):
        """out (..., m, n) += sum over i of a[i] @ b[i], a (nb, ..., m, k), b (nb, ..., k, n)."""
        raise NotImplementedError

    def add_channel_sums(self, x, out):
        """out (C,) += x (N, C, ...) summed over every axis but the second."""
        out += x.sum(axis=(0,) + tuple(range(2, x.ndim)))

    def reduce_parts(self, rows, inner):
        """How many strided partial sums per row the first stage of a two-stage reduction over
        `rows` rows of `inner` values makes (kernels/scale.cu's *_partial_* kernels)."""
        return 1

    def row_tile(self, width, rows):
        """Elements of one image row that a kernel iteration takes at once, for kernels with a
        `tile` parameter (im2col, col2im, pooling): 1 here and on the GPU, where neighbouring
        threads should touch neighbouring addresses; longer on the CPU (see CPUBackend)."""
        return 1


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_NULL = contextlib.nullcontext()


class _Timed:
    def __init__(self, backend, phase):
        self.backend, self.phase = backend, phase

    def __enter__(self):
        self.backend.synchronize()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.backend.synchronize()
        prof = self.backend.profile
        if prof is not None:
            prof[self.phase] = prof.get(self.phase, 0.0) + time.perf_counter() - self.t0


def bounded_matmul(xp, a, b, out, accumulate, temp_elements):
    """matmul for a device that cannot accumulate into its output: out += a @ b through
    temporary products of at most `temp_elements` elements, block of rows by block of rows
    (fc6's weight gradient would otherwise take a 411 MB product next to the 411 MB gradient);
    a strided out is written through one temporary."""
    if accumulate:
        m = out.shape[-2]
        rows = max(1, temp_elements // max(1, out.size // max(m, 1)))
        for r0 in range(0, m, rows):
            out[..., r0:r0 + rows, :] += xp.matmul(a[..., r0:r0 + rows, :], b)
    elif out.flags.c_contiguous:
        xp.matmul(a, b, out=out)
    else:
        out[...] = xp.matmul(a, b)
    return out


class KernelFamily:
    """Launchers for the kernels of one .cu file. The dtype of a call is the dtype of its first
    floating-point array argument; arrays must be C-contiguous (kernels see raw pointers)."""

    def __init__(self, backend, family):
        self._backend = backend
        self._family = family

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        backend, family = self._backend, self._family

        def launch(n, *args, dtype=None):
            if dtype is None:
                for a in args:
                    dt = getattr(a, "dtype", None)
                    if dt is not None and dt in _FLOAT_DTYPES and not isinstance(a, np.generic):
                        dtype = dt
                        break
                else:
                    raise BackendError(f"kernel {family}.{name}: no float32/float64 array argument to "
                                       "choose the dtype from; pass dtype=")
            if n <= 0:
                return
            backend.launch(family, name, np.dtype(dtype), int(n), args)

        launch.__name__ = name
        setattr(self, name, launch)
        return launch
