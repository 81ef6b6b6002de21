"""Without a device the `gpu` tests run against tests/conftest.py's emulated_gpu(): check that it
really sends layers down their GPU branches (or, with a device, that the real one is used)."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer
from netdef.layers import base_conv


@pytest.mark.gpu
def test_gpu_tests_see_a_gpu_backend():
    be = netdef.get_backend("gpu")
    assert be.name == "gpu"
    assert be.row_tile(300, 10) == 1  # one element per iteration, as CUDA threads take them
    if not hasattr(be, "cupy"):  # no device: the emulated backend
        assert be.xp is np and type(be).__name__ == "Emulated"
    netdef.set_mode_gpu()
    try:
        assert netdef.get_backend() is be
    finally:
        netdef.set_mode_cpu()


@pytest.mark.gpu
def test_convolution_takes_its_gpu_branches(monkeypatch):
    """The GPU's weight-gradient accumulation (bounded temporaries, no BLAS beta), not the CPU's."""
    calls = []
    real = base_conv.matmul_into

    def spy(backend, a, b, out, accumulate=False):
        calls.append((backend.name, accumulate))
        return real(backend, a, b, out, accumulate)

    monkeypatch.setattr(base_conv, "matmul_into", spy)
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6))
    layer, bottom, top = build_layer("type: 'Convolution' convolution_param { num_output: 4 kernel_size: 3 }",
                                     [x], dtype=np.float32, backend=netdef.get_backend("gpu"))
    layer.forward(bottom, top)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    assert ("gpu", True) in calls
