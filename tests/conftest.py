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


def emulated_gpu():
    """Without a GPU, `gpu` tests run against this stand-in for the GPU backend: the CPU
    backend (numpy arrays, the kernels compiled as C++), but named "gpu", so that layers take
    their GPU branches, and with the row tiling and fill every other device inherits from
    Backend (one element per iteration of the row-tiled kernels, as CUDA threads take them).
    What it cannot show is CuPy and CUDA themselves; the `cuda` tests and bench/gpu_check.sh on
    a real device do."""
    from netdef.backend import Backend
    from netdef.backend.cpu import CPUBackend

    class Emulated(CPUBackend):
        name = "gpu"
        row_tile = Backend.row_tile
        fill = Backend.fill

    return Emulated()


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


@pytest.fixture
def fcn_reference():
    if not os.path.isdir(FCN_REFERENCE):
        pytest.skip("../shared/data/fcn-reference is not present (a user's clone)")
    return FCN_REFERENCE
