// Reduction (Caffe's ReductionLayer): each of `rows` rows of `dim` elements becomes one value.
//   op (ReductionParameter.ReductionOp): 1 SUM  f(v) = v         f'(v) = 1
//                                        2 ASUM f(v) = |v|       f'(v) = sign(v)  (0 at 0)
//                                        3 SUMSQ f(v) = v^2      f'(v) = 2 v
//                                        4 MEAN f(v) = v         f'(v) = 1   (the caller's
//                                          scale carries the 1 / dim)
//   forward:  y[r] = scale * sum_j f(x[r, j]), in two gather stages without atomics:
//             reduction_partial sums the strided slice t = i % parts, t + parts, ... of row
//             i / parts, then scale.cu's reduce_partials adds the parts of each row and scales.
//   backward: dx[r, j] = scale * dy[r] * f'(x[r, j])
#include "common.cuh"

DEVICE_FN Dtype reduction_term(const Dtype v, const index_t op) {
  return op == 2 ? (v < Dtype(0) ? -v : v) : (op == 3 ? v * v : v);
}

KERNEL(reduction_partial, (const index_t n, const Dtype* x, Dtype* partial, const index_t dim,
                           const index_t parts, const index_t op)) {
  KERNEL_LOOP(i) {
    const Dtype* xr = x + (i / parts) * dim;
    Dtype s = Dtype(0);
    for (index_t t = i % parts; t < dim; t += parts) s += reduction_term(xr[t], op);
    partial[i] = s;
  }
}

KERNEL(reduction_backward, (const index_t n, const Dtype* x, const Dtype* dy, Dtype* dx,
                            const index_t dim, const index_t op, const Dtype scale)) {
  KERNEL_LOOP(i) {
    const Dtype g = scale * dy[i / dim];
    if (op == 2) {
      dx[i] = g * sign_of(x[i]);
    } else if (op == 3) {
      dx[i] = g * Dtype(2) * x[i];
    } else {
      dx[i] = g;
    }
  }
}
