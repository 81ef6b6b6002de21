// Tap arithmetic shared by the convolution kernels (im2col.cu, depthwise_conv.cu): which kernel
// taps reach an input position. Included after common.cuh (DEVICE_FN, index_t); the GPU backend
// inlines it into the source it compiles (netdef/backend/cuda.py: kernel_source), the CPU build
// includes it from this directory.
#pragma once

// floor(a / b) and ceil(a / b) for b > 0 and any sign of a; b is mostly a stride or dilation
// of 1, where the (64-bit) division is skipped.
DEVICE_FN index_t ffloor_div(index_t a, index_t b) {
  return b == 1 ? a : a >= 0 ? a / b : -((-a + b - 1) / b);
}
DEVICE_FN index_t fceil_div(index_t a, index_t b) {
  return b == 1 ? a : a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

// The taps k in [0, K) of one axis that hit input position x through output positions o in
// [o0, o0 + O): o s - p + k d = x. Returns the first such tap (or K when there is none) and the
// output position `o` it uses; the following taps are k + step, with o decreasing by step d / s.
DEVICE_FN index_t first_tap(index_t x, index_t K, index_t s, index_t p, index_t d, index_t step,
                            index_t o0, index_t O, index_t* o) {
  const index_t xp = x + p;
  index_t lo = fceil_div(xp - (o0 + O - 1) * s, d);  // o <= o0 + O - 1
  index_t hi = ffloor_div(xp - o0 * s, d);           // o >= o0
  lo = index_max(lo, 0);
  hi = index_min(hi, K - 1);
  for (index_t k = lo; k <= hi && k < lo + step; ++k) {
    const index_t t = xp - k * d;
    if (t % s == 0) {
      *o = t / s;
      return k;
    }
  }
  return K;
}

// The last tap usable from the range of first_tap (inclusive bound for the loop).
DEVICE_FN index_t last_tap(index_t x, index_t K, index_t s, index_t p, index_t d, index_t o0) {
  return index_min(ffloor_div(x + p - o0 * s, d), K - 1);
}
