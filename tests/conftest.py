import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
FCN_REFERENCE = os.path.join(SHARED, "data", "fcn-reference")


def _gpu_available():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


GPU = _gpu_available()


def pytest_collection_modifyitems(config, items):
    if GPU:
        return
    skip = pytest.mark.skip(reason="needs a real CUDA device (cupy)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


class DeviceGenerator:
    """The emulated device's generator, opaque as CuPy's: it draws as the layers ask
    (Dropout's and stochastic Pooling's `random`) and has no state to read back, so that
    Backend.rng_state() must take the device_seed branch (reseed from the host generator and
    record the seed), as it does on a real GPU."""

    __slots__ = ("_gen",)

    def __init__(self, seed):
        import numpy as np

        self._gen = np.random.default_rng(seed)

    def random(self, size=None, dtype=float, out=None):
        return self._gen.random(size, dtype=dtype, out=out)

    def standard_normal(self, size=None, dtype=float, out=None):
        return self._gen.standard_normal(size, dtype=dtype, out=out)

    def __getattr__(self, name):
        raise AttributeError(f"the emulated device generator has no {name!r} (CuPy's would not "
                             "expose its state either); add what a layer needs to DeviceGenerator")


def emulated_cublas_gemm(op_a, op_b, m, n, k, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C,
                         ldc, stride_c, batch):
    """cublas<t>gemm[StridedBatched] on numpy arrays, by cuBLAS's own definition: column-major
    matrices starting at the first element of A, B, C, `ld` elements between columns, `stride`
    elements between the matrices of a batch; C = alpha op(A) op(B) + beta C, C not read when
    beta is 0. What GPUPolicy passes is thereby checked to mean out = a @ b."""
    import numpy as np
    from numpy.lib.stride_tricks import as_strided

    def view(x, rows, cols, ld, stride):
        isz = x.itemsize
        return as_strided(x, shape=(batch, rows, cols), strides=(stride * isz, isz, ld * isz),
                          writeable=x is C)

    opa = view(A, m, k, lda, stride_a) if op_a == "N" else view(A, k, m, lda, stride_a).swapaxes(1, 2)
    opb = view(B, k, n, ldb, stride_b) if op_b == "N" else view(B, n, k, ldb, stride_b).swapaxes(1, 2)
    c = view(C, m, n, ldc, stride_c)
    prod = alpha * np.matmul(opa, opb)
    if beta == 0:
        c[...] = prod
    else:
        c[...] = prod + beta * c


def emulated_gpu():
    """Without a GPU, `gpu` tests run against this stand-in for CUDABackend: the same GPU policy
    (netdef/backend/gpu_policy.py: GEMMs as cuBLAS calls with beta = 1 for accumulation, the
    bounded-temporary fallback where a layout cannot go to cuBLAS, reductions split into
    partial sums as on a device, the GPU's workspace budget, one element per row-tiled kernel
    iteration, numpy-style fill), on numpy arrays, with the kernels compiled as C++ (the very
    source NVRTC compiles), the cuBLAS call computed by emulated_cublas_gemm from its
    column-major arguments, and a device generator whose state cannot be read back
    (DeviceGenerator), so that snapshot/resume takes the device_seed branch.

    What it cannot show is CuPy, NVRTC and cuBLAS themselves (argument marshalling, the
    handle's pointer mode, TF32, launch configuration, asynchrony, device memory): the `cuda`
    tests, tests/test_kernels_compile.py (NVRTC/nvcc) and bench/gpu_check.sh on a real device."""
    from netdef.backend.cpu import CPUBackend
    from netdef.backend.gpu_policy import GPUPolicy

    class Emulated(GPUPolicy):
        def __init__(self):
            self._cpu = CPUBackend()  # the kernels, compiled as C++, and host memory
            super().__init__()

        def _seed_device(self, seed):
            self.rng = DeviceGenerator(seed)

        def _gemm(self, *args):
            emulated_cublas_gemm(*args)

        def launch(self, family, name, dtype, n, args):
            self._cpu.launch(family, name, dtype, n, args)

        def available_memory(self):
            return self._cpu.available_memory()

        def to_numpy(self, array):
            return self._cpu.to_numpy(array)

        def asarray(self, array, dtype=None):
            return self._cpu.asarray(array, dtype)

    return Emulated()


@pytest.fixture
def emulated_gpu_backend():
    """A fresh emulated GPU backend, also where a real device is present (tests of the GPU
    policy's logic on numpy arrays)."""
    return emulated_gpu()


@pytest.fixture(autouse=True)
def _emulated_gpu(request, monkeypatch):
    if GPU or "gpu" not in request.keywords:
        yield
        return
    import netdef.backend as be
    from netdef.backend import cuda

    emulated = emulated_gpu()
    if be._state["seed"] is not None:
        emulated.seed(be._state["seed"])
    monkeypatch.setitem(be._backends, ("gpu", be._state["device"]), emulated)
    monkeypatch.setattr(cuda, "check_available", lambda device: None)
    yield


@pytest.fixture(autouse=True)
def _cpu_mode():
    import netdef

    netdef.set_mode_cpu()
    yield
    netdef.set_precision(None)  # a test that ran `netdef ... --precision` in process leaves it set


@pytest.fixture
def python_module(tmp_path, monkeypatch):
    """python_module(source, stem) -> the name of a new importable module holding `source`
    (unique per call, so Python layer classes of different tests never collide in sys.modules)."""
    import uuid

    names = []

    def write(source, stem="test_layers"):
        name = f"{stem}_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(source)
        names.append(name)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def fcn_reference():
    if not os.path.isdir(FCN_REFERENCE):
        pytest.skip("../shared/data/fcn-reference is not present (a user's clone)")
    return FCN_REFERENCE
