#!/usr/bin/env python3
"""bf16 GEMMs with float32 accumulation on the CPU against the float32 GEMM: GFLOP/s per shape,
each candidate in a fresh process per round, in turns, median over rounds.

    python bench/bf16_gemm.py                      # every candidate installed, 3 rounds
    python bench/bf16_gemm.py --cands sgemm,netdef --rounds 5

Candidates:
  sgemm        numpy's OpenBLAS sgemm as netdef calls it (backend/blas.py): the float32 floor
  netdef       netdef's own AVX512-BF16 GEMM (src/bf16_gemm.cpp) as the CPU backend calls it,
               float32 operands rounded as it packs them; A and B row-major
  netdef-nt    the same with B column-major (a weight gradient's im2col(x)^T)
  netdef-tn    the same with A column-major (a data gradient's W^T)
  mkl          MKL's cblas_gemm_bf16bf16f32 on operands already converted to bf16 (the `mkl`
               extra; NETDEF_BF16_GEMM=mkl)
  torch        PyTorch's bf16 matmul (oneDNN) on bf16 tensors, bench-only: what autocast runs

Shapes: the GEMMs of FCN-8s 128x128 and ResNet-50 (M x K x N: output channels x taps x pixels).
"""
import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import time

from common import timeit

SHAPES = [(64, 576, 12544), (128, 1152, 3136), (256, 2304, 784), (512, 4608, 902), (512, 4608, 196),
          (1024, 256, 196), (4096, 4096, 25), (64, 576, 3136)]
CANDIDATES = ["sgemm", "netdef", "netdef-nt", "netdef-tn", "mkl", "torch"]


def _per_call(f, sample_s=0.03):
    """Seconds per call of f: bench/common.timeit's median over samples of enough calls to last
    about sample_s each (a 0.3 ms GEMM is too short to time alone)."""
    t0 = time.perf_counter()
    f()
    reps = max(1, int(sample_s / max(time.perf_counter() - t0, 1e-6)))
    return timeit(lambda: [f() for _ in range(reps)], sync=lambda: None, warmup=1, iters=5) / reps


def _call(cand, M, K, N, np):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((M, K), dtype=np.float32)
    B = rng.standard_normal((K, N), dtype=np.float32)
    C = np.empty((M, N), np.float32)
    if cand == "sgemm":
        from netdef.backend import blas
        return lambda: blas.gemm(A, B, C)
    if cand.startswith("netdef"):
        import netdef
        from netdef.backend import blas
        netdef.get_backend("cpu")
        own, why = blas._own_bf16(blas.cpu_bf16_flags())
        if own is None:
            raise SystemExit(f"netdef's bf16 GEMM: {why}")
        if cand == "netdef-nt":
            B = np.asfortranarray(B)
        if cand == "netdef-tn":
            A = np.asfortranarray(A)
        return lambda: own(A, B, C)
    if cand == "mkl":
        from netdef.backend import blas
        lib, why = blas._bf16_library()
        if lib is None:
            raise SystemExit(f"mkl: {why}")
        gemm = blas.Bf16Gemm(lib)
        a16, b16 = gemm.bits(A), gemm.bits(B)
        return lambda: gemm.fn(101, 111, 111, M, N, K, 1.0, a16.ctypes.data, K, b16.ctypes.data, N, 0.0,
                               C.ctypes.data, N)
    if cand == "torch":
        import torch
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        a, b = torch.from_numpy(A).bfloat16(), torch.from_numpy(B).bfloat16()
        c = torch.empty((M, N), dtype=torch.bfloat16)
        return lambda: torch.matmul(a, b, out=c)
    raise SystemExit(f"unknown candidate {cand}")


def child(cand):
    import numpy as np
    for M, K, N in SHAPES:
        s = _per_call(_call(cand, M, K, N, np))
        print(f"{M}x{K}x{N} {2 * M * K * N / s / 1e9:.1f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cands", default=",".join(CANDIDATES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    cands = args.cands.split(",")
    rates = {c: {} for c in cands}
    for _ in range(args.rounds):
        for c in cands:
            r = subprocess.run([sys.executable, __file__, "--child", c], env=env, capture_output=True, text=True)
            if r.returncode:
                print(f"{c}: {(r.stdout + r.stderr).strip().splitlines()[-1]}", file=sys.stderr)
                rates.pop(c, None)
                cands = [x for x in cands if x != c]
                continue
            for line in r.stdout.strip().splitlines():
                shape, rate = line.split()
                rates[c].setdefault(shape, []).append(float(rate))
    print(f"GFLOP/s, {args.threads} threads, median of {args.rounds} rounds (fresh process per candidate, in turns)")
    print(f"{'M x K x N':>18} " + " ".join(f"{c:>10}" for c in cands))
    for M, K, N in SHAPES:
        key = f"{M}x{K}x{N}"
        print(f"{key:>18} " + " ".join(f"{statistics.median(rates[c][key]):10.1f}" for c in cands))


if __name__ == "__main__":
    main()
