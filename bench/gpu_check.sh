#!/usr/bin/env bash
# The GPU checks in one run, for a machine with a CUDA device and no network (see bench/README.md):
#   1. installs netdef editable, building the CPU extension (the GPU tests compare against it);
#   2. pytest -m gpu: every layer's GPU forward/backward against the CPU, GPU resume, the cuBLAS
#      products with beta (tests/test_emulated_gpu.py: test_cublas_products_on_a_device);
#   3. bench/fcn8s.py --gpu --size 500 (netdef against PyTorch, time and peak memory; one round),
#      then the same with --precision bf16 (netdef's bf16 products on TF32 tensor cores, netdef
#      fp32 beside, PyTorch under bf16 autocast);
#   4. bench/layers.py --gpu --size 500, bench/depthwise.py --gpu (MobileNet v2's depthwise layers);
#   5. compute-sanitizer memcheck over the GPU tests of the layers (skipped where it is missing
#      or refuses the device);
#   6. bench/parallel.py --nccl-smoke: one data-parallel rank through cupy.cuda.nccl (needs mpi4py,
#      mpich and the nvidia-nccl wheel: carry them in .whl/ where the image lacks them).
# Logs go to $OUT (or ./gpu-check-out). Python packages missing there travel as wheels in .whl/
# and are installed to /tmp/site first. Each step's exit status is printed; the script goes on.
# The steps' time limits add up to 535 s, so that one device command (10 min) holds them all
# with start-up to spare; the most important checks come first.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "=== $name"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  echo "=== $name: exit $rc in $((SECONDS - t0)) s"
}

if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

# editable, without the network: the image has setuptools, pybind11 and cmake
step build 100 $PY -m pip install --no-build-isolation --no-deps --no-index -e .
step pytest-gpu 110 $PY -m pytest -q -m gpu -p no:cacheprovider tests
step fcn8s 110 $PY bench/fcn8s.py --gpu --size 500 --classes 21 --rounds 1 --iters 8 --warmup 3
step fcn8s-bf16 80 $PY bench/fcn8s.py --gpu --size 500 --classes 21 --rounds 1 --iters 5 --warmup 2 --precision bf16
step layers 40 $PY bench/layers.py --gpu --size 500 --iters 10
step depthwise 25 $PY bench/depthwise.py --gpu --nets mobilenet_v2 --batch 1,8 --iters 5
if command -v compute-sanitizer >/dev/null; then
  step memcheck 45 compute-sanitizer --tool memcheck --error-exitcode 9 \
    $PY -m pytest -q -x -m gpu -p no:cacheprovider tests/layers
fi
step nccl 25 $PY bench/parallel.py --nccl-smoke
