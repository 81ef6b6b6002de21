"""netdef.set_tf32 / --tf32: the CUPY_TF32 variable CuPy reads at its first float32 product,
CuPy's compute-type switch for later changes (checked with a stand-in cupy module: no GPU
here), a clear error where CuPy lacks the switch, and no effect but a warning on the CPU."""
import os
import sys
import types

import numpy as np
import pytest

import netdef
from netdef.backend import tf32_enabled
from netdef.errors import BackendError


@pytest.fixture(autouse=True)
def restore():
    old = os.environ.get("CUPY_TF32")
    yield
    netdef.backend._state["tf32"] = False
    if old is None:
        os.environ.pop("CUPY_TF32", None)
    else:
        os.environ["CUPY_TF32"] = old


def fake_cupy(monkeypatch, with_switch=True):
    calls = []
    linalg = types.ModuleType("cupy._core._routines_linalg")
    if with_switch:
        linalg.COMPUTE_TYPE_DEFAULT, linalg.COMPUTE_TYPE_TF32 = 101, 107
        linalg.set_compute_type = lambda dtype, kind: calls.append((np.dtype(dtype), kind))
    core = types.ModuleType("cupy._core")
    core._routines_linalg = linalg
    cupy = types.ModuleType("cupy")
    cupy.__version__ = "0.0-test"
    cupy._core = core
    for name, mod in (("cupy", cupy), ("cupy._core", core), ("cupy._core._routines_linalg", linalg)):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def test_sets_the_variable_cupy_reads_at_its_first_product(monkeypatch):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    assert not tf32_enabled()
    netdef.set_tf32(True)
    assert tf32_enabled() and os.environ["CUPY_TF32"] == "1"
    netdef.set_tf32(False)
    assert not tf32_enabled() and os.environ["CUPY_TF32"] == "0"
    assert "cupy" not in sys.modules  # nothing imported on a machine that never uses the GPU


def test_switches_cupys_compute_type_once_cupy_is_loaded(monkeypatch):
    calls = fake_cupy(monkeypatch)
    netdef.set_tf32(True)
    netdef.set_tf32(False)
    assert calls == [(np.dtype(np.float32), 107), (np.dtype(np.float32), 101)]


def test_a_cupy_without_the_switch_is_an_error_naming_the_way_out(monkeypatch):
    fake_cupy(monkeypatch, with_switch=False)
    with pytest.raises(BackendError, match="CuPy 0.0-test has no compute-type switch.*CUPY_TF32=1"):
        netdef.set_tf32(True)
    netdef.set_tf32(False)  # turning it off needs no switch


def test_cli_flag_on_the_cpu_only_warns(tmp_path, caplog):
    from netdef.cli import main

    net = os.path.join(os.path.dirname(__file__), "..", "bench", "tiny.prototxt")
    assert main(["time", net, "--iterations", "1", "--tf32"]) == 0
    assert "--tf32 has no effect on the CPU" in caplog.text
    assert not tf32_enabled()
