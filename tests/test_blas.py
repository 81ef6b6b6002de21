"""netdef.backend.blas: the BLAS library (NETDEF_BLAS), BLAS on the kernels' OpenMP threads, and
gemm with beta."""
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


def _library(name):
    try:
        return blas.select(name)
    except netdef.errors.BackendError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("name", list(blas.LIBRARIES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("m, k, n", [(7, 5, 9), (7, 5, 1), (1, 5, 9)], ids=["gemm", "gemv-column", "gemv-row"])
def test_gemm_matches_matmul(cpu, name, dtype, ta, tb, beta, m, k, n):
    lib = _library(name)
    assert lib.cblas_gemm(dtype) is not None and lib.cblas_gemv(dtype) is not None
    rng = np.random.default_rng(1)
    # every operand a view into a wider array: leading dimensions larger than the rows
    a = rng.standard_normal((k, m + 3) if ta else (m, k + 3)).astype(dtype)[:, 1:1 + (m if ta else k)]
    b = rng.standard_normal((n, k + 2) if tb else (k, n + 2)).astype(dtype)[:, :k if tb else n]
    A, B = (a.T if ta else a), (b.T if tb else b)
    big = rng.standard_normal((m, n + 4)).astype(dtype)
    c = big[:, 2:2 + n]  # a strided output: rows n + 4 apart
    if beta == 0.0:
        c[...] = np.nan  # beta = 0: c is not read (the backend's outputs come uninitialised)
    want = 0.7 * (A.astype(np.float64) @ B) + (beta * c if beta else 0.0)
    border = big[:, :2].copy(), big[:, 2 + n:].copy()
    out = blas.gemm(A, B, c, alpha=0.7, beta=beta, library=lib)
    assert out is c
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(big[:, :2], border[0])  # nothing written outside c
    np.testing.assert_array_equal(big[:, 2 + n:], border[1])


@pytest.mark.parametrize("name", list(blas.LIBRARIES))
def test_library_describes_itself(cpu, name):
    lib = _library(name)
    assert lib.name == name and lib.label and lib.threading
    assert lib.threads() >= 1
    assert lib.numpys == (name == "openblas")
    if name != "openblas":  # a big product, on the library's threads
        a = np.random.default_rng(3).standard_normal((300, 400)).astype(np.float32)
        c = np.empty((300, 300), np.float32)
        blas.gemm(a, a.T, c, library=lib)
        np.testing.assert_allclose(c, a.astype(np.float64) @ a.T, rtol=1e-4, atol=1e-3)


def test_select_auto_is_numpys_openblas(cpu):
    lib = blas.select("auto")
    if blas.openblas() is None:
        assert lib is None
    else:
        assert lib.name == "openblas" and lib.handle is blas.openblas()
    assert blas.select(" OpenBLAS ") is blas.select("openblas") if lib else True


def test_select_unknown_value():
    with pytest.raises(netdef.errors.BackendError, match="'atlas'.*auto, openblas, scipy-openblas, mkl"):
        blas.select("atlas")


def test_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(blas._state, "loaded", {})
    monkeypatch.setattr(blas, "_dist_files", lambda dist, match: [])
    with pytest.raises(netdef.errors.BackendError, match=r"NETDEF_BLAS=mkl: .*oneMKL.* not installed.*netdef\[mkl\]"):
        blas.select("mkl")
    monkeypatch.setitem(sys.modules, "scipy_openblas32", None)  # import fails
    with pytest.raises(netdef.errors.BackendError, match=r"scipy-openblas32 .*netdef\[scipy-openblas\]"):
        blas.select("scipy-openblas")
    monkeypatch.setattr(blas, "openblas", lambda: None)  # numpy on another BLAS
    with pytest.raises(netdef.errors.BackendError, match="numpy's BLAS is not an OpenBLAS"):
        blas.select("openblas")
    assert blas.select("auto") is None  # nothing to call: numpy's matmul computes everything


def test_no_library_falls_back_to_matmul(cpu, monkeypatch):
    monkeypatch.setitem(blas._state, "selected", True)
    monkeypatch.setitem(blas._state, "library", None)
    assert blas.numpy_computes_products()
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    c = np.ones((6, 4), np.float32)
    blas.gemm(a, b.T.copy().T, c, alpha=2.0, beta=0.5)
    np.testing.assert_allclose(c, 0.5 + 2 * (a @ b), rtol=1e-5)


def test_products_routed_through_gemm_when_numpy_is_not_the_library(cpu, monkeypatch):
    """With another library, CPUBackend.matmul's plain products go to blas.gemm, batched and
    broadcast as numpy's matmul would."""
    calls = []
    real = blas.gemm
    monkeypatch.setattr(blas, "gemm", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(cpu, "_numpy_blas", False)
    rng = np.random.default_rng(5)
    w = rng.standard_normal((2, 40, 60)).astype(np.float32)
    x = rng.standard_normal((3, 2, 60, 50)).astype(np.float32)
    out = np.empty((3, 2, 40, 50), np.float32)
    cpu.matmul(w, x, out)
    assert len(calls) == 6
    np.testing.assert_allclose(out, np.matmul(w, x), rtol=1e-5, atol=1e-5)


_ENV_SCRIPT = (
    "import logging, os, numpy as np, netdef\n"
    "from netdef.backend import blas\n"
    "logging.basicConfig(level=logging.DEBUG, format='%(message)s')\n"
    "cpu = netdef.get_backend('cpu')\n"
    "lib = blas.library()\n"
    "a = np.random.default_rng(0).standard_normal((300, 300)).astype(np.float32)\n"
    "out = np.empty((300, 300), np.float32); cpu.matmul(a, a, out)\n"
    "assert np.allclose(out, a.astype(np.float64) @ a, atol=1e-3)\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"  # a data loader's child: its GEMMs must not hang on the parent's threads
    "    c = np.empty_like(out); blas.gemm(a, a, c); os._exit(0 if np.allclose(c, out, atol=1e-3) else 3)\n"
    "_, st = os.waitpid(pid, 0)\n"
    "assert os.waitstatus_to_exitcode(st) == 0\n"
    "print('LIB', lib.name, cpu._numpy_blas)\n")


@pytest.mark.parametrize("name", ["scipy-openblas", "mkl"])
def test_env_selects_library(name):
    _library(name)  # skips when not installed
    env = dict(os.environ, NETDEF_BLAS=name, OMP_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-c", _ENV_SCRIPT], env=env, timeout=120, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"LIB {name} False" in r.stdout
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("BLAS: ")]
    assert len(line) == 1 and f"NETDEF_BLAS={name}" in line[0] and "netdef's" in line[0], r.stderr


def test_env_unknown_library_fails_at_backend_start():
    env = dict(os.environ, NETDEF_BLAS="nope")
    code = "import netdef; netdef.get_backend('cpu')"
    r = subprocess.run([sys.executable, "-c", code], env=env, timeout=60, capture_output=True, text=True)
    assert r.returncode != 0 and "NETDEF_BLAS='nope'" in r.stderr


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
