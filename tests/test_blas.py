"""netdef.backend.blas: BLAS on the kernels' OpenMP threads, and gemm with beta."""
import os
import subprocess
import sys

import numpy as np
import pytest

import netdef
from netdef.backend import blas


@pytest.fixture(scope="module")
def cpu():
    return netdef.get_backend("cpu")


def test_openblas_found_and_shared(cpu):
    if blas.openblas() is None:
        pytest.skip("numpy's BLAS is not OpenBLAS")
    if not blas._state["shared"]:
        pytest.skip("this OpenBLAS has no thread callback (< 0.3.27) or NETDEF_BLAS_THREADS=openblas")
    before = blas.shared_thread_calls()
    a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    b = a.T.copy()
    c = a @ b
    assert blas.shared_thread_calls() > before  # the GEMM ran on netdef's threads
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-4, atol=1e-3)


def test_numpy_openblas_chosen_when_scipy_came_first():
    """scipy's wheels bring a second OpenBLAS; imported before netdef (scikit-learn does), its
    copy must not be the one netdef shares threads with, or numpy's GEMMs lose the sharing."""
    pytest.importorskip("scipy")
    code = (
        "import scipy.linalg, numpy as np, netdef\n"
        "from netdef.backend import blas\n"
        "netdef.get_backend('cpu')\n"
        "lib = blas.openblas()\n"
        "if lib is None or not blas._state['shared']: raise SystemExit(0)\n"
        "assert 'numpy' in lib._name, lib._name\n"
        "before = blas.shared_thread_calls()\n"
        "a = np.ones((512, 512), np.float32); a @ a\n"
        "assert blas.shared_thread_calls() > before\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_fork_child_uses_blas(cpu, tmp_path):
    """A forked child (data loaders) must still run numpy GEMMs: the callback is dropped there."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    code = (
        "import os, numpy as np, netdef\n"
        "netdef.get_backend('cpu')\n"
        "a = np.ones((400, 400), np.float32); a @ a\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    ok = float((a @ a)[0, 0]) == 400.0\n"
        "    os._exit(0 if ok else 3)\n"
        "_, st = os.waitpid(pid, 0)\n"
        "raise SystemExit(os.waitstatus_to_exitcode(st))\n")
    r = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert r.returncode == 0


def test_opt_out(tmp_path):
    code = ("import netdef; from netdef.backend import blas; netdef.get_backend('cpu'); "
            "raise SystemExit(0 if not blas._state['shared'] else 5)")
    env = dict(os.environ, NETDEF_BLAS_THREADS="openblas")
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_gemm_matches_matmul(cpu, dtype, ta, tb, beta):
    rng = np.random.default_rng(1)
    m, k, n = 7, 5, 9
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    A, B = (a.T if ta else a), (b.T if tb else b)
    big = rng.standard_normal((m, n + 4)).astype(dtype)
    c = big[:, 2:2 + n]  # a strided output: rows n + 4 apart
    want = 0.7 * (A.astype(np.float64) @ B) + beta * c
    border = big[:, :2].copy(), big[:, 2 + n:].copy()
    out = blas.gemm(A, B, c, alpha=0.7, beta=beta)
    assert out is c
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(big[:, :2], border[0])  # nothing written outside c
    np.testing.assert_array_equal(big[:, 2 + n:], border[1])


def test_gemm_fallbacks(cpu):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 8))[:, ::2]  # no unit stride: matmul fallback
    b = rng.standard_normal((4, 3))
    c = np.ones((6, 3))
    blas.gemm(a, b, c, beta=1.0)
    np.testing.assert_allclose(c, 1 + a @ b)
    c32 = np.zeros((6, 3), np.float32)  # mixed dtypes: fallback
    blas.gemm(a, b, c32)
    np.testing.assert_allclose(c32, a @ b, rtol=1e-6)
    z = np.full((2, 2), 5.0)
    blas.gemm(np.zeros((2, 0)), np.zeros((0, 2)), z, beta=0.0)  # k == 0
    np.testing.assert_array_equal(z, 0)
    bcast = np.broadcast_to(np.arange(3.0), (4, 3))  # zero stride: fallback
    c = np.zeros((4, 4))
    blas.gemm(bcast, bcast.T, c)
    np.testing.assert_allclose(c, bcast @ bcast.T)
