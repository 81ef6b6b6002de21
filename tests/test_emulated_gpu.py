"""Without a device the `gpu` tests run against tests/conftest.py's emulated_gpu(): check that it
really sends layers down their GPU branches (or, with a device, that the real one is used)."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer


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


def _conv_step(be, text="num_output: 4 kernel_size: 3", shape=(2, 3, 6, 6)):
    x = np.random.default_rng(0).standard_normal(shape)
    layer, bottom, top = build_layer(f"type: 'Convolution' convolution_param {{ {text} }}",
                                     [x], dtype=np.float32, backend=be)
    layer.forward(bottom, top)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    return layer


@pytest.mark.gpu
def test_convolution_takes_its_gpu_branches(monkeypatch):
    """The GPU's weight-gradient accumulation (cuBLAS with beta = 1), its workspace budget and
    its reductions, not the CPU's (BLAS through ctypes, transposed products)."""
    be = netdef.get_backend("gpu")
    assert be.col_budget == 1 << 25 and be.reduce_parts(4, 4096) > 1
    calls = []
    real = be._gemm

    def spy(*args):
        calls.append(args[12])  # beta
        return real(*args)

    monkeypatch.setattr(be, "_gemm", spy)
    monkeypatch.setattr(be, "accumulate_temp", 0)  # no one-product shortcut: per image, in place
    cpu = netdef.get_backend("cpu")
    for op in ("matmul", "matmul_sum", "workspace"):
        monkeypatch.setattr(cpu, op, lambda *a, **k: pytest.fail("the CPU backend's products were used"))
    layer = _conv_step(be)
    assert layer.path == "im2col"
    assert 1.0 in calls  # dW += through GEMM's beta, in place


@pytest.mark.gpu
def test_gpu_fallback_accumulates_through_bounded_temporaries(monkeypatch):
    """Where cuBLAS is not taken (TF32 on a device; here forced), dW += a @ b goes through
    temporary products of at most accumulate_temp elements, with the same gradients."""
    be = netdef.get_backend("gpu")
    want = [be.to_numpy(b.diff).copy() for b in _conv_step(be).blobs]
    seen = []
    monkeypatch.setattr(be, "_gemm_ok", lambda dtype: False)
    monkeypatch.setattr(be, "accumulate_temp", 8)
    from netdef.backend import gpu_policy

    orig = gpu_policy.bounded_matmul

    def bounded(xp, a, b, out, accumulate, temp):
        seen.append((accumulate, temp))
        return orig(xp, a, b, out, accumulate, temp)

    monkeypatch.setattr("netdef.backend.gpu_policy.bounded_matmul", bounded)
    got = [be.to_numpy(b.diff).copy() for b in _conv_step(be).blobs]
    assert (True, 8) in seen
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_device_generator_state_is_reseeded_not_read(monkeypatch):
    """As CuPy's, the device generator's state is not read back: rng_state() records a seed
    drawn from the host generator and restarts the device stream from it."""
    be = netdef.get_backend("gpu")
    if hasattr(be, "cupy"):
        pytest.skip("checked on the emulated backend")
    assert not hasattr(be.rng, "bit_generator")
    state = be.rng_state()
    assert state["backend"] == "gpu" and "device_seed" in state and "device" not in state
    after = be.rng.random(5, dtype=np.float32)
    be.set_rng_state(state)
    np.testing.assert_array_equal(be.rng.random(5, dtype=np.float32), after)


@pytest.mark.gpu
@pytest.mark.cuda
@pytest.mark.parametrize("tf32", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cublas_products_on_a_device(dtype, tf32):
    """What the emulation cannot show: CUDABackend's cuBLAS calls themselves (argument order,
    pointer mode, strided batches) on the layouts the convolutions use, against numpy; with
    TF32 on, float32 goes through the fallback instead. Runs in bench/gpu_check.sh."""
    if tf32 and dtype == np.float64:
        pytest.skip("TF32 concerns float32 only")
    be = netdef.get_backend("gpu")
    rng = np.random.default_rng(5)
    a = rng.standard_normal((2, 4, 5)).astype(dtype)      # (G, m, k), broadcast over images
    b = rng.standard_normal((3, 2, 5, 7)).astype(dtype)   # (nb, G, k, n)
    big = rng.standard_normal((3, 2, 4, 10)).astype(dtype)
    acc = rng.standard_normal((2, 4, 7)).astype(dtype)
    at = rng.standard_normal((2, 5, 4)).astype(dtype)     # stored transposed: used as at^T
    bt = rng.standard_normal((2, 7, 5)).astype(dtype)
    tol = 1e-2 if tf32 else 1e-5 if dtype == np.float32 else 1e-12
    netdef.set_tf32(tf32)
    try:
        for accumulate in (False, True):
            out = be.asarray(big)
            be.matmul(be.asarray(a), be.asarray(b), out[..., 1:8], accumulate=accumulate)  # a band
            want = big.copy()
            want[..., 1:8] = np.matmul(a, b) + (big[..., 1:8] if accumulate else 0)
            np.testing.assert_allclose(be.to_numpy(out), want, rtol=tol, atol=tol)
            out = be.asarray(acc)
            be.matmul(be.asarray(at).swapaxes(-1, -2), be.asarray(bt).swapaxes(-1, -2), out,
                      accumulate=accumulate)
            want = np.matmul(at.swapaxes(-1, -2), bt.swapaxes(-1, -2)) + (acc if accumulate else 0)
            np.testing.assert_allclose(be.to_numpy(out), want, rtol=tol, atol=tol)
    finally:
        netdef.set_tf32(False)
