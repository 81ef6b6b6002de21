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
#define SIMD_SUM(var)
#define SIMD_FN DEVICE_FN
#define ND_LANES 1
#define ND_PLANE 1
// A float's bits and back (precision.cu's rounding to 16-bit formats), and rounding to the
// nearest integer, ties to even.
DEVICE_FN unsigned int float_bits(const float v) { return __float_as_uint(v); }
DEVICE_FN float bits_float(const unsigned int u) { return __uint_as_float(u); }
DEVICE_FN float round_even(const float v) { return rintf(v); }

#else  // plain C++ for the CPU extension

#include <algorithm>
#include <cmath>
#include <cstring>
#include "kernel_registry.h"

// The float overloads for -DDtype=float, as NVRTC has them; without these the C library's
// double functions would be called and the CPU's float kernels would compute in double.
using std::exp;
using std::expm1;
using std::fabs;
using std::log;
using std::log1p;
using std::max;
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
// Before a loop that only adds into `var`: lets the C++ compiler vectorize it (it may then
// add in another order; a GPU thread's loop is short and stays as written).
#define SIMD_SUM(var) ND_PRAGMA(omp simd reduction(+ : var))
// A function holding a hot vectorizable loop (a kernel iteration's row): the extension is built
// for the baseline x86-64 (SSE2, so that it runs on any x86-64), and this compiles the function
// also for the x86-64-v3 (AVX2, FMA) and x86-64-v4 (AVX-512) levels, the loader picking the one
// the CPU has (GCC's target_clones, an ifunc). The levels, not "arch=haswell" / "arch=skylake-
// avx512": GCC dispatches a named arch on the CPU's model (__builtin_cpu_is), so that an AMD
// Zen or an Intel Ice Lake / Sapphire Rapids ran the SSE2 clone; a level goes by the features.
// It must not hold an OpenMP region (the outlined region would not be cloned): call it from the
// KERNEL_LOOP. Functions it calls are inlined into each clone. On the GPU it is a device
// function.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(NETDEF_NO_CLONES)
#define SIMD_FN __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) static
#else
#define SIMD_FN static
#endif
// How many neighbouring positions a kernel iteration that keeps per-position values (a
// softmax's max and sum over channels) handles at once, in local arrays: a few vectors' worth
// on the CPU, where the loops over them vectorize; 1 on the GPU (one position per thread).
#define ND_LANES 64
// The most elements of a small image plane a CPU iteration may copy into local arrays (pooling's
// whole-plane scans); 1 on the GPU, where a kernel's test against it always sends an iteration
// the general way.
#define ND_PLANE 4096

// As on the GPU (memcpy: the defined way to read a float's bits in C++17; it compiles to a move).
static inline unsigned int float_bits(const float v) {
  unsigned int u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
static inline float bits_float(const unsigned int u) {
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
// nearbyint rounds in the current mode, which is to nearest, ties to even (nobody changes it)
static inline float round_even(const float v) { return std::nearbyint(v); }

#endif

// ---- Helpers shared by the kernel files (both compilers from here on) ------------------------

// Caffe's FLT_MIN (the smallest normal float) in either dtype, as a floor for logs and divisors;
// NVRTC has no <cfloat>.
#define ND_FLT_MIN Dtype(1.17549435082228750797e-38)

DEVICE_FN index_t index_min(const index_t a, const index_t b) { return a < b ? a : b; }
DEVICE_FN index_t index_max(const index_t a, const index_t b) { return a > b ? a : b; }
// v limited to [lo, hi], for lo <= hi.
DEVICE_FN index_t index_clamp(const index_t v, const index_t lo, const index_t hi) {
  return v < lo ? lo : (v < hi ? v : hi);
}

// -1, 0 or 1 (0 for zero, so an L1 or |x| gradient at 0 is 0).
DEVICE_FN Dtype sign_of(const Dtype v) { return Dtype((Dtype(0) < v) - (v < Dtype(0))); }

// Iteration i of a loop over `tile`-long segments of rows `len` long, `ntiles` segments a row
// (the tiled kernels: one element per iteration on the GPU, a row segment on the CPU): returns
// the row and sets [*first, *last), the segment's columns (the last one of a row may be shorter).
DEVICE_FN index_t row_tile(const index_t i, const index_t ntiles, const index_t tile,
                           const index_t len, index_t* first, index_t* last) {
  *first = (i % ntiles) * tile;
  *last = index_min(*first + tile, len);
  return i / ntiles;
}

// The share of iteration k < parts in the sum of a[t] (slice_sum) or a[t] b[t] (slice_dot) over
// t < len: t = k, k + parts, ... (strided, so that neighbouring GPU threads read neighbouring
// addresses). The first stage of the two-stage reductions (scale.cu's *_partial kernels); on
// the CPU parts is 1 and the contiguous loop vectorizes.
DEVICE_FN Dtype slice_sum(const Dtype* a, const index_t k, const index_t parts, const index_t len) {
  Dtype s = Dtype(0);
  if (parts == 1) {
    SIMD_SUM(s)
    for (index_t t = 0; t < len; ++t) s += a[t];
  } else {
    for (index_t t = k; t < len; t += parts) s += a[t];
  }
  return s;
}

DEVICE_FN Dtype slice_dot(const Dtype* a, const Dtype* b, const index_t k, const index_t parts,
                          const index_t len) {
  Dtype s = Dtype(0);
  if (parts == 1) {
    SIMD_SUM(s)
    for (index_t t = 0; t < len; ++t) s += a[t] * b[t];
  } else {
    for (index_t t = k; t < len; t += parts) s += a[t] * b[t];
  }
  return s;
}

// y[t] = x[t] a + c over t in [first, last) (exactly x a without has_bias), then with has_relu
// ReLU's y > 0 ? y : y slope (activation.cu's formula): the per-channel map of Scale, Bias and
// BatchNorm, and the epilogue the Net's inference fusion gives a convolution (scale.cu's
// channel_affine, depthwise_conv.cu's forward). Four loops rather than tests inside one, so
// that each vectorizes. x may be y.
SIMD_FN void affine_segment(const Dtype* x, Dtype* y, const index_t first, const index_t last,
                            const Dtype a, const Dtype c, const index_t has_bias,
                            const index_t has_relu, const Dtype slope) {
  if (has_bias && has_relu) {
    for (index_t t = first; t < last; ++t) {
      const Dtype v = x[t] * a + c;
      y[t] = v > Dtype(0) ? v : v * slope;
    }
  } else if (has_relu) {
    for (index_t t = first; t < last; ++t) {
      const Dtype v = x[t] * a;
      y[t] = v > Dtype(0) ? v : v * slope;
    }
  } else if (has_bias) {
    for (index_t t = first; t < last; ++t) y[t] = x[t] * a + c;
  } else {  // no + 0, which would turn -0 into +0
    for (index_t t = first; t < last; ++t) y[t] = x[t] * a;
  }
}

// Labels arrive as Dtype values and are truncated to integers, as Caffe does. read_label gives
// the class in [0, C), or LABEL_IGNORED (the layer's ignore_label, when has_ignore), or
// LABEL_INVALID for anything else: out of range, NaN, or too large for an integer.
constexpr index_t LABEL_IGNORED = -1, LABEL_INVALID = -2;
DEVICE_FN index_t read_label(const Dtype v, const index_t C, const index_t has_ignore,
                             const index_t ignore_label) {
  if (!(v > Dtype(-9.0e18) && v < Dtype(9.0e18))) return LABEL_INVALID;
  const index_t l = (index_t)v;
  if (has_ignore && l == ignore_label) return LABEL_IGNORED;
  return (l >= 0 && l < C) ? l : LABEL_INVALID;
}

// For element i of scores laid out (outer, C, inner): its class (*c) and, through read_label,
// the label of its position (outer, inner), as the per-class loss gradients need them.
DEVICE_FN index_t class_and_label(const index_t i, const Dtype* label, const index_t C,
                                  const index_t inner, const index_t has_ignore,
                                  const index_t ignore_label, index_t* c) {
  *c = (i / inner) % C;
  return read_label(label[(i / (C * inner)) * inner + i % inner], C, has_ignore, ignore_label);
}
