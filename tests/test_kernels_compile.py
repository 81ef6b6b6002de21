"""Every kernels/*.cu compiles for the GPU (nvcc, device code only; no GPU needed) in both
dtypes, and every kernel the GPU module defines exists in the CPU extension too."""
import glob
import os
import re
import shutil
import subprocess

import pytest

KERNELS = os.path.join(os.path.dirname(__file__), "..", "kernels")
CU_FILES = sorted(glob.glob(os.path.join(KERNELS, "*.cu")))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("dtype", ["float", "double"])
@pytest.mark.parametrize("path", CU_FILES, ids=os.path.basename)
def test_nvcc_compiles(path, dtype, tmp_path):
    # -D__NETDEF_NO_HOST_HEADERS__ is not needed: the .cu files include nothing but common.cuh,
    # which includes no host headers on the CUDA path (NVRTC has none).
    cmd = ["nvcc", "-std=c++17", "-arch=sm_90", "-ptx", f"-DDtype={dtype}", "-I", KERNELS, path,
           "-o", str(tmp_path / "out.ptx")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_kernel_files_include_only_common_header():
    for path in CU_FILES:
        includes = re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', open(path).read(), re.M)
        assert includes == ["common.cuh"], f"{path}: NVRTC has no host headers; include only common.cuh"


def test_cpu_extension_has_every_kernel_in_both_dtypes():
    from netdef import _cpu_kernels

    for path in CU_FILES:
        names = re.findall(r"^KERNEL\((\w+),", open(path).read(), re.M)
        assert names, path
        for name in names:
            for suffix in ("_f32", "_f64"):
                assert name + suffix in _cpu_kernels.kernels, f"{name}{suffix} missing: rebuild (pip install -e .)"


def test_kernel_sources_are_installed_with_the_package():
    from importlib import resources

    files = {p.name for p in resources.files("netdef.kernels").iterdir()}
    assert "common.cuh" in files
    assert {os.path.basename(p) for p in CU_FILES} <= files


def test_gpu_source_inlines_the_header():
    from netdef.backend.cuda import kernel_source

    src = kernel_source("activation")
    assert '#include "common.cuh"' not in src and "KERNEL_LOOP" in src
