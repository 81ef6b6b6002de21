// Scale and Bias: a blob of D values broadcast over a bottom seen as (outer, D, inner).
//   Scale: y = x * s[d]            dx = dy * s[d]       ds[d] = sum_{o, t} dy x
//   Bias:  y = x + b[d]            dx = dy              db[d] = sum_{o, t} dy
// d = (i / inner) % D for the flat index i.
//
// Reductions over (outer, inner) per d, in two gather stages without atomics:
//   1. *_partial: thread i handles row r = i / parts of the (outer * D, inner) view and sums
//      its elements t = i % parts, t + parts, ...  (strided, so that neighbouring GPU threads
//      read neighbouring addresses; the caller picks parts = 1 on the CPU for contiguous rows)
//   2. reduce_partials: thread d sums the outer * parts partials of its d.
// BatchNorm and PReLU finish their reductions with reduce_partials too.
#include "common.cuh"

KERNEL(scale_forward, (const index_t n, const Dtype* x, const Dtype* s, Dtype* y,
                       const index_t D, const index_t inner)) {
  KERNEL_LOOP(i) { y[i] = x[i] * s[(i / inner) % D]; }
}

KERNEL(scale_bias_forward, (const index_t n, const Dtype* x, const Dtype* s, const Dtype* b,
                            Dtype* y, const index_t D, const index_t inner)) {
  KERNEL_LOOP(i) {
    const index_t d = (i / inner) % D;
    y[i] = x[i] * s[d] + b[d];
  }
}

KERNEL(bias_forward, (const index_t n, const Dtype* x, const Dtype* b, Dtype* y,
                      const index_t D, const index_t inner)) {
  KERNEL_LOOP(i) { y[i] = x[i] + b[(i / inner) % D]; }
}

// partial[i] = sum over the strided slice of row i / parts of a
KERNEL(scale_partial_sum, (const index_t n, const Dtype* a, Dtype* partial, const index_t inner,
                           const index_t parts)) {
  KERNEL_LOOP(i) {
    const Dtype* ar = a + (i / parts) * inner;
    Dtype s = Dtype(0);
    for (index_t t = i % parts; t < inner; t += parts) s += ar[t];
    partial[i] = s;
  }
}

// partial[i] = sum over the strided slice of row i / parts of a * b
KERNEL(scale_partial_dot, (const index_t n, const Dtype* a, const Dtype* b, Dtype* partial,
                           const index_t inner, const index_t parts)) {
  KERNEL_LOOP(i) {
    const index_t off = (i / parts) * inner;
    const Dtype* ar = a + off;
    const Dtype* br = b + off;
    Dtype s = Dtype(0);
    for (index_t t = i % parts; t < inner; t += parts) s += ar[t] * br[t];
    partial[i] = s;
  }
}

// out[d] = alpha * sum_{o < outer, k < parts} partial[(o * D + d) * parts + k] + beta * out[d]
// (out is not read when beta == 0, so it may hold garbage).
KERNEL(reduce_partials, (const index_t n, const Dtype* partial, Dtype* out, const index_t outer,
                         const index_t parts, const Dtype alpha, const Dtype beta)) {
  KERNEL_LOOP(d) {
    Dtype s = Dtype(0);
    for (index_t o = 0; o < outer; ++o) {
      const Dtype* p = partial + (o * n + d) * parts;
      for (index_t k = 0; k < parts; ++k) s += p[k];
    }
    out[d] = beta == Dtype(0) ? alpha * s : alpha * s + beta * out[d];
  }
}
