"""The CPU kernels under AddressSanitizer and UndefinedBehaviorSanitizer.

A second copy of the extension is built with CMake's NETDEF_SANITIZE=ON into
build/sanitize-<python>/ (kept between runs, so a rebuild is incremental), put next to a copy
of the netdef package in a temporary directory, and the layer tests (every kernel's random
configurations, gradient checks and error cases) run on it in a subprocess with libasan
preloaded (and the fuzzed small nets of tests/fuzz, run forward and backward). Any
out-of-bounds read or write, use after free, or undefined behaviour (signed
overflow, misaligned access, bad shift, ...) aborts that run, and this test fails with the
sanitizer's report.

    NETDEF_SANITIZE_TESTS="tests/layers/test_pooling.py"   run other tests under the sanitizers
    NETDEF_SANITIZE_BUILD=/path                              another build directory

A self-test first calls a kernel with a too-short array and expects ASan to report it, so a
sanitizer that silently does nothing cannot pass.
"""
import fcntl
import glob
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# Every layer's random configurations and gradient checks, plus mutated small nets run forward
# and backward (kernels at odd geometries the layer tests do not choose).
DEFAULT_TESTS = ["tests/layers",
                 "tests/fuzz/test_fuzz_prototxt.py::test_mutated_prototxt_builds_or_raises_netdef_error[tiny]",
                 "tests/fuzz/test_fuzz_prototxt.py::test_mutated_prototxt_builds_or_raises_netdef_error[mlp]"]

pytestmark = pytest.mark.sanitize


def _runtime(name):
    for cc in ("gcc", "cc", "c++", "g++"):
        if shutil.which(cc):
            out = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
            if os.path.isabs(out) and os.path.exists(out):
                return out
    return None


def _cmake():
    here = os.path.join(os.path.dirname(sys.executable), "cmake")
    return here if os.path.exists(here) else shutil.which("cmake")


def _build(build_dir):
    """Configure and build the sanitized extension; returns the path of the .so."""
    try:
        import pybind11
    except ImportError:
        pytest.skip("pybind11 is not installed in this environment (pip install -e '.[test]')")
    cmake = _cmake()
    if cmake is None:
        pytest.skip("cmake is not installed (pip install -e '.[test]' brings it)")
    out_dir = os.path.join(build_dir, "lib")
    args = [cmake, "-S", ROOT, "-B", build_dir, "-DNETDEF_SANITIZE=ON", "-DCMAKE_BUILD_TYPE=Release",
            "-DCMAKE_CXX_FLAGS=-g", f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY_RELEASE={out_dir}", f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}"]
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    os.makedirs(build_dir, exist_ok=True)
    with open(os.path.join(build_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once share one build directory
        for cmd in (args, [cmake, "--build", build_dir, "--parallel", jobs]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                pytest.fail(f"sanitized build failed: {' '.join(cmd)}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    libs = glob.glob(os.path.join(out_dir, "_cpu_kernels*" + sysconfig.get_config_var("EXT_SUFFIX")))
    assert libs, f"no _cpu_kernels module in {out_dir}"
    return libs[0]


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory):
    """(environment, directory holding the sanitized netdef package)."""
    asan = _runtime("libasan.so")
    if asan is None:
        pytest.skip("the compiler has no AddressSanitizer runtime (libasan.so)")
    tag = f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}"
    build_dir = os.environ.get("NETDEF_SANITIZE_BUILD") or os.path.join(ROOT, "build", f"sanitize-{tag}")
    lib = _build(build_dir)
    pkg = tmp_path_factory.mktemp("sanitized")
    shutil.copytree(os.path.join(ROOT, "netdef"), pkg / "netdef",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    shutil.copy(lib, pkg / "netdef" / os.path.basename(lib))
    env = dict(os.environ)
    env.update({
        "LD_PRELOAD": " ".join(p for p in (asan, env.get("LD_PRELOAD")) if p),
        "PYTHONPATH": os.pathsep.join(p for p in (str(pkg), env.get("PYTHONPATH")) if p),
        # Python and numpy keep memory until exit by design: leaks are not what we look for.
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=0",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "2",
    })
    return env, pkg


def _run(env, pkg, args, timeout):
    # cwd is the package copy, so `import netdef` can only find the sanitized one.
    return subprocess.run([sys.executable, *args], cwd=pkg, env=env, capture_output=True, text=True,
                          timeout=timeout)


SELF_TEST = r"""
import numpy as np, netdef._cpu_kernels as k, sys
print(k.__file__)
maps = open("/proc/self/maps").read()
assert "libasan" in maps and "libubsan" in maps, "ASan/UBSan runtimes are not loaded"
x = np.ones(8, dtype=np.float32); y = np.empty(8, dtype=np.float32)
k.kernels["relu_forward_f32"](8, x.ctypes.data, y.ctypes.data, 0.0)
assert (y == 1).all()
if sys.argv[1] == "overflow":
    k.kernels["relu_forward_f32"](9, x.ctypes.data, y.ctypes.data, 0.0)   # one past the end
print("no report")
"""


def test_sanitizer_catches_an_out_of_bounds_kernel_call(sanitized):
    env, pkg = sanitized
    ok = _run(env, pkg, ["-c", SELF_TEST, "fine"], 120)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert ok.stdout.startswith(str(pkg)), f"the sanitized module was not the one imported: {ok.stdout}"
    bad = _run(env, pkg, ["-c", SELF_TEST, "overflow"], 120)
    assert bad.returncode != 0 and "heap-buffer-overflow" in bad.stderr, (bad.returncode, bad.stderr[-3000:])


def test_layer_tests_under_asan_and_ubsan(sanitized):
    env, pkg = sanitized
    tests = os.environ.get("NETDEF_SANITIZE_TESTS", "").split() or DEFAULT_TESTS
    args = ["-x", "-q", "-p", "no:cacheprovider", "-m", "not slow and not gpu and not sanitize",
            "--rootdir", ROOT, "-c", os.path.join(ROOT, "pyproject.toml"), *[os.path.join(ROOT, t) for t in tests]]
    # Import the extension before pytest does anything, and check that it is the sanitized one.
    runner = (f"import sys, netdef._cpu_kernels as k\n"
              f"assert k.__file__.startswith({str(pkg)!r}), k.__file__\n"
              f"import pytest\nsys.exit(pytest.main({args!r}))")
    r = _run(env, pkg, ["-c", runner], 1500)
    report = "\n".join(line for line in (r.stdout + r.stderr).splitlines()
                       if "ERROR: AddressSanitizer" in line or "runtime error:" in line)
    assert r.returncode == 0, (f"layer tests failed under the sanitizers (exit {r.returncode})\n{report}\n"
                               f"{r.stdout[-4000:]}\n{r.stderr[-6000:]}")
    assert "passed" in r.stdout
    print(r.stdout.strip().splitlines()[-1])
