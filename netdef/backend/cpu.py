"""CPU backend: numpy for array operations and BLAS, the pybind11 extension `_cpu_kernels`
(kernels/*.cu compiled as C++) for everything per-element."""
import os

import numpy as np

from ..errors import BackendError
from . import _FLOAT_DTYPES, Backend

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
    from . import blas

    blas.share_threads(_cpu_kernels.__file__)
    return _cpu_kernels


class CPUBackend(Backend):
    name = "cpu"
    xp = np

    def __init__(self):
        super().__init__()
        ext = _load_extension()
        self._table = ext.kernels
        self._parallel_min = ext.parallel_min_iterations
        self._cache = {}

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
                conv.append(a)  # the extension takes its address (buffer protocol)
            elif isinstance(a, (bool, np.bool_)):
                conv.append(int(a))
            elif isinstance(a, (int, np.integer)):
                conv.append(int(a))
            elif isinstance(a, (float, np.floating)):
                conv.append(float(a))
            else:
                raise BackendError(f"kernel {name}: argument {i + 1} of type {type(a).__name__} "
                                   "is not an array or a number (is it a GPU array on the CPU backend?)")
        kern(*conv)

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
