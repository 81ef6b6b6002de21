// Scale and Bias: a blob of D values broadcast over a bottom seen as (outer, D, inner).
//   Scale: y = x * s[d]            dx = dy * s[d]       ds[d] = sum_{o, t} dy x
//   Bias:  y = x + b[d]            dx = dy              db[d] = sum_{o, t} dy
// d = r % D for the row r = i / inner of the flat index i. BatchNorm's normalization is the
// same per-channel affine map (a = 1 / std, b = -mean / std).
//
// Reductions over (outer, inner) per d, in two gather stages without atomics:
//   1. *_partial: thread i handles row r = i / parts of the (outer * D, inner) view and sums
//      its elements t = i % parts, t + parts, ... (common.cuh's slice_sum / slice_dot; the
//      caller picks parts = 1 on the CPU for contiguous rows)
//   2. reduce_partials: thread d sums the outer * parts partials of its d.
// BatchNorm and PReLU finish their reductions with reduce_partials too.
#include "common.cuh"

// y = x * s[d] + b[d] (s taken as 1 without has_scale, b as 0 without has_bias: their pointers
// are then not read) over rows r of `inner` values, d = r % D; with has_relu, then
// y = y > 0 ? y : y * slope (common.cuh's affine_segment), so that a convolution's bias, the
// BatchNorm and Scale after it and their ReLU cost one pass over the top (inference fusion).
// Iteration i takes `tile` values of a row (common.cuh's row_tile): one on the GPU, a row
// segment on the CPU, so that the index arithmetic is per segment and the loop over it
// vectorizes. x may be y (in place).
KERNEL(channel_affine, (const index_t n, const Dtype* x, const Dtype* s, const Dtype* b, Dtype* y,
                        const index_t D, const index_t inner, const index_t tile,
                        const index_t has_scale, const index_t has_bias, const index_t has_relu,
                        const Dtype slope)) {
  // n = outer * D * ntiles
  const index_t ntiles = (inner + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t first, last;
    const index_t r = row_tile(i, ntiles, tile, inner, &first, &last);
    const index_t d = r % D;
    const Dtype a = has_scale ? s[d] : Dtype(1);
    const Dtype c = has_bias ? b[d] : Dtype(0);
    affine_segment(x + r * inner, y + r * inner, first, last, a, c, has_bias, has_relu, slope);
  }
}

// partial[i] = sum over the strided slice of row i / parts of a
KERNEL(scale_partial_sum, (const index_t n, const Dtype* a, Dtype* partial, const index_t inner,
                           const index_t parts)) {
  KERNEL_LOOP_WORK(i, inner / parts) {
    partial[i] = slice_sum(a + (i / parts) * inner, i % parts, parts, inner);
  }
}

// partial[i] = sum over the strided slice of row i / parts of a * b
KERNEL(scale_partial_dot, (const index_t n, const Dtype* a, const Dtype* b, Dtype* partial,
                           const index_t inner, const index_t parts)) {
  KERNEL_LOOP_WORK(i, inner / parts) {
    const index_t off = (i / parts) * inner;
    partial[i] = slice_dot(a + off, b + off, i % parts, parts, inner);
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
