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


def _nvrtc():
    import ctypes

    try:
        import nvidia.cu13
    except ImportError:
        pytest.skip("NVRTC not installed (pip package nvidia-cuda-nvrtc, part of the test extra)")
    libs = glob.glob(os.path.join(list(nvidia.cu13.__path__)[0], "lib", "libnvrtc.so*"))
    if not libs:
        pytest.skip("libnvrtc not found in nvidia-cuda-nvrtc")
    return ctypes.CDLL(sorted(libs)[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", CU_FILES, ids=os.path.basename)
def test_nvrtc_compiles_as_the_gpu_backend_does(path, dtype):
    """The exact source and options CuPy gets (plus the flags CuPy adds itself), through NVRTC,
    which is stricter than nvcc: no host headers, device code only."""
    import ctypes

    from netdef.backend.cuda import compile_options, kernel_source

    lib = _nvrtc()
    family = os.path.splitext(os.path.basename(path))[0]
    src = kernel_source(family)
    opts = list(compile_options(src, dtype)) + ["-ftz=true", "--device-as-default-execution-space",
                                                "-arch=compute_90"]
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), f"{family}.cu".encode(), 0, None, None) == 0
    arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
    status = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    assert status == 0, log.value.decode(errors="replace")


def test_kernel_files_include_only_their_own_headers():
    """NVRTC has no host headers: a .cu includes common.cuh first, then only headers of kernels/
    (which the GPU backend inlines, and which include nothing themselves)."""
    local = {os.path.basename(p) for p in glob.glob(os.path.join(KERNELS, "*.cuh"))}
    for path in CU_FILES:
        includes = re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', open(path).read(), re.M)
        assert includes[:1] == ["common.cuh"] and set(includes) <= local, f"{path}: {includes}"
    for name in local - {"common.cuh"}:
        text = open(os.path.join(KERNELS, name)).read()
        assert not re.findall(r"^\s*#\s*include", text, re.M), f"{name} includes a header"


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
    for family in ("im2col", "depthwise_conv"):  # both take the shared tap arithmetic
        src = kernel_source(family)
        assert '.cuh"' not in src and src.count("DEVICE_FN index_t first_tap(") == 1
