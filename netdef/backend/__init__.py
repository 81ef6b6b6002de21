"""Device selection. The device is chosen once per Net/Solver from the global mode
(pycaffe's set_mode_cpu / set_mode_gpu / set_device); layers only ever talk to the backend
object they were given: `xp` for array operations, `kernels(family)` for compiled kernels.
"""
import os
import sys

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
    """What the two devices have in common: scalar conversion and launching by family/name."""

    name = None
    xp = np

    def __init__(self):
        self._families = {}
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

    def row_tile(self, width, rows):
        """Elements of one image row that a kernel iteration takes at once, for kernels with a
        `tile` parameter (im2col, col2im, pooling): 1 here and on the GPU, where neighbouring
        threads should touch neighbouring addresses; longer on the CPU (see CPUBackend)."""
        return 1


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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
                    if dt is not None and getattr(a, "ndim", 0) >= 0 and not np.isscalar(a) and dt in _FLOAT_DTYPES:
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
