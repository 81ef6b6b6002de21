// The portability header: the only place that knows whether a kernel file is being
// compiled by NVRTC/nvcc (GPU) or by a C++ compiler (the CPU extension).
//
// Kernel contract (so that one Python launcher serves every kernel on both devices):
//   * declared with KERNEL(name, (params...)) followed by the body;
//   * the first parameter is `const index_t n`, the number of loop iterations; the body
//     iterates with KERNEL_LOOP(i) { ... } (or KERNEL_LOOP_WORK(i, work) when one iteration
//     does `work` elements' worth) and each iteration writes only its own outputs
//     (gathers, no atomics), so results do not depend on the schedule;
//   * the other parameters are only `index_t`, `Dtype`, `Dtype*`/`const Dtype*`
//     or `index_t*`: Python ints become index_t and Python floats become Dtype.
// Dtype is a macro (-DDtype=float or double): one GPU module per file and dtype, while the CPU
// extension links both, telling them apart by the suffix KSUFFIX (_f32 / _f64).
#pragma once

typedef long long index_t;

#if defined(__CUDACC__)

#define KERNEL(name, params) extern "C" __global__ void name params
#define KERNEL_LOOP(i)                                                         \
  for (index_t i = (index_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;       \
       i += (index_t)blockDim.x * gridDim.x)
#define KERNEL_LOOP_WORK(i, work) KERNEL_LOOP(i)
#define DEVICE_FN __device__ __forceinline__

#else  // plain C++ for the CPU extension

#include <algorithm>
#include <cmath>
#include "kernel_registry.h"

using std::abs;
using std::ceil;
using std::exp;
using std::floor;
using std::log;
using std::log1p;
using std::max;
using std::min;
using std::pow;
using std::sqrt;
using std::tanh;

#define ND_CAT_(a, b) a##b
#define ND_CAT(a, b) ND_CAT_(a, b)
#define ND_STR_(a) #a
#define ND_STR(a) ND_STR_(a)

// Declares name##KSUFFIX, registers it under that name for the Python side, then opens
// the definition whose body follows the macro.
#define KERNEL(name, params)                                                   \
  void ND_CAT(name, KSUFFIX) params;                                           \
  static ::netdef::KernelRegistrar ND_CAT(netdef_reg_, ND_CAT(name, KSUFFIX))( \
      #name ND_STR(KSUFFIX), &ND_CAT(name, KSUFFIX));                          \
  void ND_CAT(name, KSUFFIX) params

#define ND_PRAGMA(x) _Pragma(#x)
#define KERNEL_LOOP(i)                                                         \
  _Pragma("omp parallel for schedule(static) if (n > ::netdef::kParallelMinIterations)") \
  for (index_t i = 0; i < n; ++i)
// For iterations that each do `work` elements' worth (e.g. a softmax over C channels): the
// loop goes parallel once n * work passes the threshold, not n alone.
#define KERNEL_LOOP_WORK(i, work)                                              \
  ND_PRAGMA(omp parallel for schedule(static) if (n * (work) > ::netdef::kParallelMinIterations)) \
  for (index_t i = 0; i < n; ++i)
#define DEVICE_FN static inline

#endif
