#!/usr/bin/env python3
"""Which CPU GEMM library: sgemm GFLOP/s of each candidate on the GEMMs netdef's convolutions
and inner products really run, at 2 threads and at 1, and what a GEMM costs when it alternates
with netdef's own OpenMP kernels.

    python bench/gemm.py                               # every candidate installed, 3 rounds
    python bench/gemm.py --libs openblas,mkl --threads 2 --rounds 5 --groups resnet50
    python bench/gemm.py --list                        # the candidates and what each one is

Candidates (each reached through ctypes, row-major, netdef's transposes; see --list):

  openblas        numpy's own OpenBLAS, as netdef calls it (backend/blas.py, NETDEF_BLAS=openblas:
                  cblas_sgemm, its parallel jobs on netdef's OpenMP team through
                  src/blas_threads.cpp)
  openblas-pool   the same library on its own pthread pool (NETDEF_BLAS_THREADS=openblas): what
                  netdef did before blas_threads
  scipy-openblas  the `scipy-openblas32` wheel's OpenBLAS (a newer release, 32-bit integers) as
                  netdef calls it (NETDEF_BLAS=scipy-openblas): its jobs on netdef's team too
  mkl             the `mkl` wheel's libmkl_rt as netdef calls it (NETDEF_BLAS=mkl), threading
                  layer GNU: the libgomp that netdef's kernels already use, one OpenMP team
  mkl-iomp        the same with MKL's default layer, Intel OpenMP (libiomp5): a second team
  onednn          the `onednn` wheel's dnnl_sgemm (row-major by definition); its threads are
                  TBB's (the wheel's CPU runtime), which take every CPU of the affinity mask
  blis            the `blis` wheel (spaCy's cython-blis): its module exports BLIS's typed API
                  (bli_sgemm with row and column strides), built without threads

Threads: the child process of a candidate gets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
MKL_NUM_THREADS = --threads, and the library is told again through its own call
(openblas_set_num_threads, MKL_Set_Num_Threads). At 1 thread every candidate's process is also
pinned to one CPU (sched_setaffinity), the only handle TBB (oneDNN) offers from outside; at 2
threads none is pinned. BLIS has no threads here: it appears at 1 thread only.

Shapes (SHAPES below) were taken from the products netdef's CPU backend computes for the zoo
nets (bench/zoo/*.prototxt) and FCN-8s at 128 x 128, forward and backward: C (Co, L) = W (Co, K)
@ col (K, L) forward; dcol = W^T @ dy (A transposed) backward; dW += dy @ col^T (B transposed,
beta = 1, long inner dimension), or its transpose when Co <= 128 (CPUBackend.matmul_sum);
inner products Y (batch, out) = X @ W^T (M = batch: GEMV-like). Batch 8 runs one GEMM per image
of the batch-1 shape, and big images are cut into bands of output rows (CPUBackend.col_budget:
16 MB of columns), so the 500 x 500 FCN shapes are the 128 x 128 ones with a longer ldc: neither
needs shapes of its own.

Method: each candidate and thread count runs in a fresh process (two libraries in one process
disturb each other's threads), the processes taking turns for --rounds rounds; a shape's figure is
the median over rounds of the process's median sample (bench/common.py's timeit, which repeats a
sample during which other processes used the CPUs); a sample repeats the call for about
--sample-ms. Every result is checked against a float64 product (max relative error).

Alternating (--no-alternate to skip): a convolution's forward as netdef runs it, im2col (netdef's
OpenMP kernel), the GEMM (the candidate), ReLU in place (OpenMP kernel), in a loop; the figure is
the loop's time over the sum of the three parts timed alone: > 1 when the GEMM's threads and the
kernels' team get in each other's way (spinning threads of one pool holding the cores the other
needs).

Peak: the fp32 peak from /proc/cpuinfo (cores x 2 FMA units x 8 lanes x 2 x the nominal clock,
156.5 GFLOP/s here); --fma-peak also compiles (cc) and runs a register-only FMA loop on every
core at once, the ceiling at the clock the cores really run (above nominal when they boost).
Takes /tmp/netdef-bench.lock for the measurements (do not wrap it in flock on that file).
"""
import argparse
import ctypes
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import Load, table, timeit  # noqa: E402

LOCK = "/tmp/netdef-bench.lock"

#: (group, label, M, N, K, A transposed, B transposed, beta); from the products netdef computes
#: (see the module docstring). Labels name the layer; "x6" how often a net runs it.
SHAPES = [
    # ResNet-50, 224 x 224, forward (batch 8: the same GEMMs 8 times)
    ("resnet50", "conv1 7x7/2 (64x147 @ 12544)", 64, 12544, 147, False, False, 0.0),
    ("resnet50", "res2 3x3 64 (56x56) x3", 64, 3136, 576, False, False, 0.0),
    ("resnet50", "res2 1x1 64->256 x4", 256, 3136, 64, False, False, 0.0),
    ("resnet50", "res2 1x1 256->64 x2", 64, 3136, 256, False, False, 0.0),
    ("resnet50", "res3 3x3 128 (28x28) x4", 128, 784, 1152, False, False, 0.0),
    ("resnet50", "res3 1x1 128->512 x4", 512, 784, 128, False, False, 0.0),
    ("resnet50", "res4 3x3 256 (14x14) x6", 256, 196, 2304, False, False, 0.0),
    ("resnet50", "res4 1x1 256->1024 x6", 1024, 196, 256, False, False, 0.0),
    ("resnet50", "res4 1x1 1024->256 x5", 256, 196, 1024, False, False, 0.0),
    ("resnet50", "res5 3x3 512 (7x7) x3", 512, 49, 4608, False, False, 0.0),
    ("resnet50", "res5 1x1 512->2048 x3", 2048, 49, 512, False, False, 0.0),
    # ResNet-50 backward (batch 1): data gradients W^T @ dy, weight gradients dy @ col^T
    ("resnet50-bwd", "res4 3x3 dcol = W^T dy", 2304, 196, 256, True, False, 0.0),
    ("resnet50-bwd", "res4 3x3 dW += dy col^T", 256, 2304, 196, False, True, 1.0),
    ("resnet50-bwd", "res3 3x3 dW^T = col dy^T", 1152, 128, 784, False, True, 0.0),
    ("resnet50-bwd", "res2 3x3 dcol = W^T dy", 576, 3136, 64, True, False, 0.0),
    ("resnet50-bwd", "res2 3x3 dW^T = col dy^T", 576, 64, 3136, False, True, 0.0),
    ("resnet50-bwd", "res5 3x3 dW += dy col^T", 512, 4608, 49, False, True, 1.0),
    ("resnet50-bwd", "res4 1x1 dW += dy x^T", 1024, 256, 196, False, True, 1.0),
    # VGG16 in FCN-8s, 128 x 128 input (the net sees 326 x 326), bands of output rows
    ("fcn8s", "conv1_2 64 band (7172 px) x14", 64, 7172, 576, False, False, 0.0),
    ("fcn8s", "conv2_2 128 band (3586 px) x7", 128, 3586, 1152, False, False, 0.0),
    ("fcn8s", "conv3_x 256 band (1804 px) x6", 256, 1804, 2304, False, False, 0.0),
    ("fcn8s", "conv4_x 512 band (902 px) x2", 512, 902, 4608, False, False, 0.0),
    ("fcn8s", "conv5_x 512 (21x21) x3", 512, 441, 4608, False, False, 0.0),
    ("fcn8s", "fc6 7x7 (4096 x 25088 @ 25)", 4096, 25, 25088, False, False, 0.0),
    ("fcn8s", "fc7 1x1 (4096 x 4096 @ 25)", 4096, 25, 4096, False, False, 0.0),
    ("fcn8s-bwd", "conv3_x dcol = W^T dy", 2304, 1804, 256, True, False, 0.0),
    ("fcn8s-bwd", "conv3_x dW += dy col^T", 256, 2304, 1804, False, True, 1.0),
    ("fcn8s-bwd", "conv4_x dW += dy col^T", 512, 4608, 902, False, True, 1.0),
    ("fcn8s-bwd", "conv1_2 dW^T = col dy^T", 576, 64, 7172, False, True, 0.0),
    ("fcn8s-bwd", "fc6 dcol^T = dy^T W", 25, 25088, 4096, True, False, 0.0),
    ("fcn8s-bwd", "fc6 dW += dy col^T (K = 25)", 4096, 25088, 25, False, True, 1.0),
    # MobileNet v1 / v2 pointwise (1x1) convolutions, 224 x 224
    ("mobilenet", "v1 pw 512->512 (14x14) x5", 512, 196, 512, False, False, 0.0),
    ("mobilenet", "v1 pw 64->128 (56x56)", 128, 3136, 64, False, False, 0.0),
    ("mobilenet", "v1 pw 32->64 (112x112)", 64, 12544, 32, False, False, 0.0),
    ("mobilenet", "v1 pw 1024->1024 (7x7)", 1024, 49, 1024, False, False, 0.0),
    ("mobilenet", "v2 expand 64->384 (28x28) x4", 384, 784, 64, False, False, 0.0),
    ("mobilenet", "v2 project 384->64 (28x28) x3", 64, 784, 384, False, False, 0.0),
    ("mobilenet", "v2 expand 24->144 (56x56) x2", 144, 3136, 24, False, False, 0.0),
    ("mobilenet", "v2 expand 160->960 (7x7) x3", 960, 49, 160, False, False, 0.0),
    # CaffeNet's convolutions (conv2, conv4, conv5 per group) and the inner products: Y = X W^T
    ("caffenet", "conv1 11x11/4 (96 x 363 @ 3025)", 96, 3025, 363, False, False, 0.0),
    ("caffenet", "conv2 group (128 x 1200 @ 729) x2", 128, 729, 1200, False, False, 0.0),
    ("caffenet", "conv3 (384 x 2304 @ 169)", 384, 169, 2304, False, False, 0.0),
    ("fc", "CaffeNet fc6 batch 1 (1 x 9216 @ W^T)", 1, 4096, 9216, False, True, 0.0),
    ("fc", "CaffeNet fc6 batch 8", 8, 4096, 9216, False, True, 0.0),
    ("fc", "CaffeNet fc7 batch 1", 1, 4096, 4096, False, True, 0.0),
    ("fc", "ResNet-50 fc1000 batch 1", 1, 1000, 2048, False, True, 0.0),
    ("fc", "MobileNet fc7 as 1x1 conv (N = 1)", 1000, 1, 1024, False, False, 0.0),
]
GROUPS = list(dict.fromkeys(s[0] for s in SHAPES))

#: the conv layers of the alternating loop: (label, Ci, H, W, Co, kernel, stride, pad)
ALTERNATE = [("ResNet-50 res2 3x3", 64, 56, 56, 64, 3, 1, 1),
             ("ResNet-50 res4 3x3", 256, 14, 14, 256, 3, 1, 1)]

CANDIDATES = ("openblas", "openblas-pool", "scipy-openblas", "mkl", "mkl-iomp", "onednn", "blis")


# ---- the libraries ------------------------------------------------------------------------------
def _dist_file(dist, name):
    """The path of file `name` (a basename) installed by distribution `dist`, or None."""
    import importlib.metadata as md

    try:
        files = md.files(dist) or []
    except md.PackageNotFoundError:
        return None
    for f in files:
        if os.path.basename(str(f)) == name:
            return str(f.locate())
    return None


def _cblas_row_major(fn, integer):
    """A call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) over a cblas_sgemm."""
    fn.argtypes = [ctypes.c_int] * 3 + [integer] * 3 + [ctypes.c_float, ctypes.c_void_p, integer,
                                                        ctypes.c_void_p, integer, ctypes.c_float,
                                                        ctypes.c_void_p, integer]
    fn.restype = None

    def call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        fn(101, 112 if ta else 111, 112 if tb else 111, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    return call


def _netdef_library(name, threads):
    """A library as netdef's CPU backend uses it (backend/blas.py: NETDEF_BLAS=name)."""
    import netdef
    from netdef.backend import blas

    netdef.get_backend("cpu")  # shares numpy's OpenBLAS threads unless NETDEF_BLAS_THREADS=openblas
    try:
        lib = blas.select(name)
    except netdef.errors.BackendError as e:
        raise RuntimeError(str(e)) from None
    if lib is None:
        raise RuntimeError("not there")
    setter = getattr(lib.handle, "MKL_Set_Num_Threads", None) or blas._symbol(lib.handle, "openblas_set_num_threads")[0]
    setter.argtypes = [ctypes.c_int]
    setter(threads)
    fn = lib.cblas_gemm(np.float32)

    def call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        fn(101, 112 if ta else 111, 112 if tb else 111, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    return call, f"{lib.label}, {lib.threading}"


def load(name, threads):
    """(call, description) for candidate `name`, or raise RuntimeError saying why not."""
    if name in ("openblas", "openblas-pool"):
        from netdef.backend import blas

        call, desc = _netdef_library("openblas", threads)
        if name == "openblas" and not blas._state["shared"]:
            raise RuntimeError("this OpenBLAS cannot run on netdef's threads (no thread callback)")
        return call, desc
    if name in ("scipy-openblas", "mkl"):
        return _netdef_library(name, threads)
    if name == "mkl-iomp":
        path = _dist_file("mkl", "libmkl_rt.so.3") or _dist_file("mkl", "libmkl_rt.so.2")
        if path is None:
            raise RuntimeError("pip install mkl")
        lib = ctypes.CDLL(path)
        # the layer must be chosen before MKL's first computation
        if lib.MKL_Set_Threading_Layer(0) != 0:  # MKL_THREADING_INTEL
            raise RuntimeError("MKL refused the Intel OpenMP threading layer")
        lib.MKL_Set_Num_Threads(threads)
        buf = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(buf, 256)
        return _cblas_row_major(lib.cblas_sgemm, ctypes.c_int32), f"{buf.value.decode().strip()}; Intel OpenMP (libiomp5)"
    if name == "onednn":
        path = _dist_file("onednn", "libdnnl.so.3")
        if path is None:
            raise RuntimeError("pip install onednn")
        # its wheel's libraries find each other only on the search path (no RUNPATH): the
        # parent starts this process with LD_LIBRARY_PATH set to their folder
        lib = ctypes.CDLL(path)
        f = lib.dnnl_sgemm
        i64 = ctypes.c_int64
        f.argtypes = [ctypes.c_char, ctypes.c_char, i64, i64, i64, ctypes.c_float, ctypes.c_void_p, i64,
                      ctypes.c_void_p, i64, ctypes.c_float, ctypes.c_void_p, i64]
        f.restype = ctypes.c_int

        def call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
            if f(b"T" if ta else b"N", b"T" if tb else b"N", m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
                raise RuntimeError("dnnl_sgemm failed")

        class Version(ctypes.Structure):
            _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                        ("hash", ctypes.c_char_p), ("cpu_runtime", ctypes.c_uint), ("gpu_runtime", ctypes.c_uint)]

        lib.dnnl_version.restype = ctypes.POINTER(Version)
        v = lib.dnnl_version().contents
        runtime = {1: "sequential", 2: "OpenMP", 4: "TBB", 8: "threadpool", 512: "SYCL (TBB)"}.get(v.cpu_runtime, hex(v.cpu_runtime))
        return call, f"oneDNN {v.major}.{v.minor}.{v.patch}, CPU runtime {runtime}; threads: the affinity mask"
    if name == "blis":
        try:
            import blis.cy
        except ImportError:
            raise RuntimeError("pip install blis") from None
        lib = ctypes.CDLL(blis.cy.__file__)
        for fn in ("bli_info_get_enable_threading", "bli_arch_query_id"):
            getattr(lib, fn).restype = ctypes.c_int
        if threads > 1 and not lib.bli_info_get_enable_threading():
            raise RuntimeError("this BLIS is built without threads")
        lib.bli_info_get_version_str.restype = ctypes.c_char_p
        lib.bli_arch_string.restype = ctypes.c_char_p
        f = lib.bli_sgemm
        i64 = ctypes.c_int64
        f.argtypes = [ctypes.c_int, ctypes.c_int] + [i64] * 3 + [ctypes.c_void_p, ctypes.c_void_p, i64, i64,
                                                                 ctypes.c_void_p, i64, i64, ctypes.c_void_p,
                                                                 ctypes.c_void_p, i64, i64]
        f.restype = None
        falpha, fbeta = ctypes.c_float(), ctypes.c_float()

        def call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
            # general strides instead of a transpose flag: a stored transposed is a view with
            # unit row stride
            falpha.value, fbeta.value = alpha, beta
            rsa, csa = (1, lda) if ta else (lda, 1)
            rsb, csb = (1, ldb) if tb else (ldb, 1)
            f(0, 0, m, n, k, ctypes.byref(falpha), a, rsa, csa, b, rsb, csb, ctypes.byref(fbeta), c, ldc, 1)

        arch = lib.bli_arch_string(lib.bli_arch_query_id()).decode()
        return call, (f"cython-blis {_version('blis')} (BLIS {lib.bli_info_get_version_str().decode()}), "
                      f"kernels for '{arch}', no threads")
    raise RuntimeError(f"unknown candidate {name!r}")


def _version(dist):
    import importlib.metadata as md

    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


# ---- one candidate in this process ----------------------------------------------------------------
def _operands(rng, m, n, k, ta, tb):
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    c = rng.standard_normal((m, n), dtype=np.float32)
    return a, b, c


def measure_shapes(call, shapes, args):
    rng = np.random.default_rng(0)
    out = {}
    for group, label, m, n, k, ta, tb, beta in shapes:
        a, b, c = _operands(rng, m, n, k, ta, tb)
        A = a.T if ta else a
        B = b.T if tb else b
        want = A.astype(np.float64) @ B.astype(np.float64) + beta * c.astype(np.float64)
        lda, ldb = a.shape[1], b.shape[1]

        def once():
            call(ta, tb, m, n, k, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb, beta, c.ctypes.data, n)

        c0 = c.copy()
        once()
        err = float(np.max(np.abs(c - want)) / max(float(np.max(np.abs(want))), 1e-30))
        c[...] = c0
        flop = 2.0 * m * n * k
        t0 = time.perf_counter()
        once()
        reps = max(1, round(args.sample_ms / 1e3 / max(time.perf_counter() - t0, 1e-7)))

        def sample():
            for _ in range(reps):
                once()

        t = timeit(sample, lambda: None, warmup=1, iters=args.iters) / reps
        out[label] = {"gflops": flop / t / 1e9, "ms": t * 1e3, "err": err}
    return out


def measure_alternate(call, args):
    """{label: {"loop", "gemm", "kernels" ms, "ratio"}}: im2col, GEMM, ReLU in a loop."""
    import netdef

    be = netdef.get_backend("cpu")
    res = {}
    for label, ci, h, w, co, ks, st, pad in ALTERNATE:
        oh, ow = (h + 2 * pad - ks) // st + 1, (w + 2 * pad - ks) // st + 1
        kk, ll = ci * ks * ks, oh * ow
        rng = np.random.default_rng(1)
        img = rng.standard_normal((1, ci, h, w), dtype=np.float32)
        col = np.empty(kk * ll, np.float32)
        wt = rng.standard_normal((co, kk), dtype=np.float32)
        y = np.empty((co, ll), np.float32)
        im2col = be.kernels("im2col")
        relu = be.kernels("activation")
        tile = be.row_tile(ow, kk * oh)
        iters = kk * oh * -(-ow // tile)

        def k_im2col():
            im2col.im2col(iters, img, col, h, w, ks, ks, st, st, pad, pad, 1, 1, ow, 0, oh, tile)

        def k_gemm():
            call(False, False, co, ll, kk, 1.0, wt.ctypes.data, kk, col.ctypes.data, ll, 0.0, y.ctypes.data, ll)

        def k_relu():
            relu.relu_forward(y.size, y, y, 0.0)

        def loop(*fns):
            def run():
                for _ in range(args.alternate_reps):
                    for fn in fns:
                        fn()
            return run

        parts = {}
        for key, fns in (("im2col", (k_im2col,)), ("gemm", (k_gemm,)), ("relu", (k_relu,)),
                         ("loop", (k_im2col, k_gemm, k_relu))):
            parts[key] = timeit(loop(*fns), lambda: None, warmup=1, iters=args.iters) / args.alternate_reps * 1e3
        alone = parts["im2col"] + parts["gemm"] + parts["relu"]
        res[label] = dict(parts, alone=alone, ratio=parts["loop"] / alone)
    return res


def only(args):
    if args.threads == 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    try:
        call, desc = load(args.only, args.threads)
    except (RuntimeError, OSError, AttributeError) as e:
        print("RESULT " + json.dumps({"skip": str(e)}))
        return
    shapes = [s for s in SHAPES if s[0] in args.groups]
    res = {"desc": desc, "shapes": measure_shapes(call, shapes, args)}
    if not args.no_alternate:
        res["alternate"] = measure_alternate(call, args)
    print("RESULT " + json.dumps(res))


def run_alone(args, name, threads):
    cmd = [sys.executable, os.path.abspath(__file__), "--only", name, "--threads", str(threads),
           "--iters", str(args.iters), "--sample-ms", str(args.sample_ms),
           "--groups", ",".join(args.groups), "--alternate-reps", str(args.alternate_reps)]
    if args.no_alternate:
        cmd.append("--no-alternate")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    env.pop("NETDEF_BLAS_THREADS", None)
    env.pop("NETDEF_BLAS", None)
    if name == "openblas-pool":
        env["NETDEF_BLAS_THREADS"] = "openblas"
    if name == "onednn":
        where = _dist_file("onednn", "libdnnl.so.3")
        if where:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (os.path.dirname(where), env.get("LD_LIBRARY_PATH")) if p)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode or not lines:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        return {"skip": "failed: " + " / ".join(tail)[:300]}
    return json.loads(lines[-1][len("RESULT "):])


# ---- the machine's FMA ceiling ------------------------------------------------------------------
_FMA_C = r"""
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
int main(void) {
  /* ten independent chains cover the FMA latency (4-5 cycles) on both pipes; all in registers */
  __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  __m256 x0 = b, x1 = c, x2 = b, x3 = c, x4 = b, x5 = c, x6 = b, x7 = c, x8 = b, x9 = c;
  const long n = 300000000L;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; ++i) {
    x0 = _mm256_fmadd_ps(x0, b, c); x1 = _mm256_fmadd_ps(x1, b, c); x2 = _mm256_fmadd_ps(x2, b, c);
    x3 = _mm256_fmadd_ps(x3, b, c); x4 = _mm256_fmadd_ps(x4, b, c); x5 = _mm256_fmadd_ps(x5, b, c);
    x6 = _mm256_fmadd_ps(x6, b, c); x7 = _mm256_fmadd_ps(x7, b, c); x8 = _mm256_fmadd_ps(x8, b, c);
    x9 = _mm256_fmadd_ps(x9, b, c);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                           _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)),
                                         _mm256_add_ps(x8, x9)));
  float v[8];
  _mm256_storeu_ps(v, s);
  double dt = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  printf("%f %g\n", n * 10.0 * 16 / dt / 1e9, (double)v[0]);
  return 0;
}
"""


def fma_peak():
    """GFLOP/s of a register-only AVX2 FMA loop run on every CPU at once, or None."""
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "fma.c"), os.path.join(tmp, "fma")
        with open(src, "w") as f:
            f.write(_FMA_C)
        try:
            subprocess.run([cc, "-O2", "-mavx2", "-mfma", src, "-o", exe], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        procs = [subprocess.Popen([exe], stdout=subprocess.PIPE, text=True) for _ in range(os.cpu_count() or 1)]
        return sum(float(p.communicate()[0].split()[0]) for p in procs)


# ---- the report -----------------------------------------------------------------------------------
def report(args, res, peak, how, fma, note):
    print(f"sgemm, float32, row-major; peak: {how}")
    if fma:
        print(f"register-only FMA loop on every core at once: {fma:.1f} GFLOP/s "
              f"({100 * fma / peak:.0f}% of the nominal peak: the cores run above the nominal clock)")
    libs = [n for n in args.libs]
    for threads in args.threads:
        print()
        print(f"== {threads} thread{'s' if threads > 1 else ''} ==")
        cols = []
        for name in libs:
            runs = res.get((name, threads), [])
            ok = [r for r in runs if "shapes" in r]
            if ok:
                cols.append(name)
                print(f"{name}: {ok[0]['desc']}")
            elif runs:
                print(f"{name}: n/a ({runs[0].get('skip')})")
        if not cols:
            continue
        med = {}
        for name in cols:
            ok = [r for r in res[(name, threads)] if "shapes" in r]
            for s in SHAPES:
                vals = [r["shapes"][s[1]]["gflops"] for r in ok if s[1] in r["shapes"]]
                if vals:
                    med[(name, s[1])] = statistics.median(vals)
                    med[(name, s[1], "err")] = max(r["shapes"][s[1]]["err"] for r in ok if s[1] in r["shapes"])
        rows = []
        for g in args.groups:
            for s in (s for s in SHAPES if s[0] == g):
                _, label, m, n, k, ta, tb, beta = s
                shape = f"{m}x{n}x{k}" + ("" if not (ta or tb) else " A^T" if ta else " B^T") + (" b1" if beta else "")
                row = [g, label, shape]
                best = max((med.get((name, label), 0), name) for name in cols)[1]
                for name in cols:
                    v = med.get((name, label))
                    row.append("-" if v is None else f"{v:.1f} {100 * v / peak:.0f}%" + ("*" if name == best else ""))
                rows.append(row)
            # the group as a whole: its flops over its time (each shape once)
            row = [g, "(group: flops / time)", ""]
            for name in cols:
                flop = t = 0.0
                for s in (s for s in SHAPES if s[0] == g):
                    v = med.get((name, s[1]))
                    if v:
                        f = 2.0 * s[2] * s[3] * s[4]
                        flop, t = flop + f, t + f / (v * 1e9)
                row.append(f"{flop / t / 1e9:.1f} {100 * flop / t / 1e9 / peak:.0f}%" if t else "-")
            rows.append(row)
        print(table(rows, ["group", "GEMM", "M x N x K"] + [f"{n} GFLOP/s" for n in cols]))
        worst = max((med.get((n, s[1], "err"), 0.0), n) for n in cols for s in SHAPES)
        print(f"largest error against float64 (relative to max |C|): {worst[0]:.1e} ({worst[1]})")
        alt = [(name, r["alternate"]) for name in cols for r in res[(name, threads)][:1] if "alternate" in r]
        if alt:
            rows = []
            for name, _ in alt:
                ok = [r["alternate"] for r in res[(name, threads)] if "alternate" in r]
                for label, *_ in ALTERNATE:
                    pick = lambda key: statistics.median(o[label][key] for o in ok)  # noqa: E731
                    rows.append([name, label, f"{pick('im2col'):.3f}", f"{pick('gemm'):.3f}", f"{pick('relu'):.3f}",
                                 f"{pick('alone'):.3f}", f"{pick('loop'):.3f}", f"{pick('ratio'):.2f}"])
            print()
            print("im2col -> GEMM -> ReLU in a loop, against each part alone (ms per conv):")
            print(table(rows, ["library", "conv", "im2col", "GEMM", "ReLU", "sum alone", "loop", "loop / sum"]))
    print()
    print(f"median over {args.rounds} rounds (one fresh process per library and thread count, in turns) "
          f"of each process's median of {args.iters} samples; * = fastest in the row; {note}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--libs", default=",".join(CANDIDATES), help=f"comma-separated, of {', '.join(CANDIDATES)}")
    ap.add_argument("--threads", default="2,1", help="comma-separated thread counts")
    ap.add_argument("--groups", default=",".join(GROUPS), help=f"shape groups, of {', '.join(GROUPS)}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5, help="timed samples per shape and process")
    ap.add_argument("--sample-ms", type=float, default=30.0, help="a sample repeats the call for about this long")
    ap.add_argument("--alternate-reps", type=int, default=20, help="convolutions per alternating sample")
    ap.add_argument("--no-alternate", action="store_true")
    ap.add_argument("--fma-peak", action="store_true", help="also measure the cores' FMA ceiling")
    ap.add_argument("--list", action="store_true", help="say what each candidate is here, then stop")
    ap.add_argument("--only", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.groups = [g for g in args.groups.split(",") if g]
    for g in args.groups:
        if g not in GROUPS:
            raise SystemExit(f"unknown group {g!r}; groups: {', '.join(GROUPS)}")
    if args.only:
        args.threads = int(args.threads)
        return only(args)
    args.libs = [n for n in args.libs.split(",") if n]
    for n in args.libs:
        if n not in CANDIDATES:
            raise SystemExit(f"unknown candidate {n!r}; candidates: {', '.join(CANDIDATES)}")
    args.threads = [int(t) for t in args.threads.split(",") if t]
    if args.list:
        args.groups, args.no_alternate, args.iters = [], True, 1
        for n in args.libs:
            r = run_alone(args, n, args.threads[0])
            print(f"{n:15s} {r.get('desc') or 'n/a: ' + r.get('skip', '?')}")
        return
    from zoo import peak_gflops

    peak, how = peak_gflops()
    res = {}
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fma = fma_peak() if args.fma_peak else None
        load = Load()
        t0 = time.time()
        for _ in range(args.rounds):
            for threads in args.threads:
                for name in args.libs:
                    if (name, threads) in res and "skip" in res[(name, threads)][0]:
                        continue
                    res.setdefault((name, threads), []).append(run_alone(args, name, threads))
        note = f"{time.time() - t0:.0f} s; " + load.note()
    report(args, res, peak, how, fma, note)


if __name__ == "__main__":
    main()
