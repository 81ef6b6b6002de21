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


def pytest_collection_modifyitems(config, items):
    if _gpu_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device / cupy")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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
