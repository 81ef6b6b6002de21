// Eltwise: elementwise combination of K bottoms of equal shape, in one pass over them.
//   SUM:  y = sum_k c_k x_k                dx_k = c_k dy
//   PROD: y = prod_k x_k                   dx_k = dy * prod_{j != k} x_j
//   MAX:  y = max_k x_k (the first maximum wins), its k in mask when backward needs it
//                                          dx_k = dy where mask == k, else 0
// The bottoms come as `xs`, their K addresses (index_t values, from Backend.addresses). A
// blocked kernel's iteration i takes elements [i tile, min(i tile + tile, count)): one element
// on the GPU, a long segment on the CPU, walked in blocks of ELT_BLOCK elements so that the
// block of y stays in the L1 cache while the K bottoms stream through it.
#include "common.cuh"

#define ELT_SUM 0
#define ELT_PROD 1
#define ELT_MAX 2
#define ELT_BLOCK 1024

DEVICE_FN const Dtype* elt_bottom(const index_t* xs, const index_t k) {
  return (const Dtype*)(xs[k]);
}

// y (and, with has_mask, mask) from the K bottoms; op is ELT_SUM (coeff: K values), ELT_PROD
// or ELT_MAX; with has_relu, y then goes through ReLU (the Net's inference fusion of ResNet's
// sum + ReLU) while its block is in cache. n = ceil(count / tile).
KERNEL(eltwise_forward, (const index_t n, const index_t* xs, const Dtype* coeff, const index_t K,
                         Dtype* y, Dtype* mask, const index_t count, const index_t tile,
                         const index_t op, const index_t has_mask, const index_t has_relu,
                         const Dtype slope)) {
  KERNEL_LOOP_WORK(i, tile * K) {
    const index_t last = index_min(i * tile + tile, count);
    for (index_t b0 = i * tile; b0 < last; b0 += ELT_BLOCK) {
      const index_t b1 = index_min(b0 + ELT_BLOCK, last);
      const Dtype* x0 = elt_bottom(xs, 0);
      if (op == ELT_SUM) {
        const Dtype c0 = coeff[0];
        for (index_t t = b0; t < b1; ++t) y[t] = c0 * x0[t];
        for (index_t k = 1; k < K; ++k) {
          const Dtype* xk = elt_bottom(xs, k);
          const Dtype ck = coeff[k];
          for (index_t t = b0; t < b1; ++t) y[t] += ck * xk[t];
        }
      } else if (op == ELT_PROD) {
        for (index_t t = b0; t < b1; ++t) y[t] = x0[t];
        for (index_t k = 1; k < K; ++k) {
          const Dtype* xk = elt_bottom(xs, k);
          for (index_t t = b0; t < b1; ++t) y[t] *= xk[t];
        }
      } else if (has_mask) {
        for (index_t t = b0; t < b1; ++t) {
          y[t] = x0[t];
          mask[t] = Dtype(0);
        }
        for (index_t k = 1; k < K; ++k) {
          const Dtype* xk = elt_bottom(xs, k);
          const Dtype kf = Dtype(k);
          for (index_t t = b0; t < b1; ++t) {  // arithmetic, not a branch: the loop vectorizes
            const Dtype v = xk[t], cur = y[t];
            const Dtype more = Dtype(v > cur);
            y[t] = v > cur ? v : cur;
            mask[t] += more * (kf - mask[t]);  // exact: small integers
          }
        }
      } else {
        for (index_t t = b0; t < b1; ++t) y[t] = x0[t];
        for (index_t k = 1; k < K; ++k) {
          const Dtype* xk = elt_bottom(xs, k);
          for (index_t t = b0; t < b1; ++t) y[t] = xk[t] > y[t] ? xk[t] : y[t];
        }
      }
      if (has_relu) affine_segment(y, y, b0, b1, Dtype(1), Dtype(0), 0, 1, slope);
    }
  }
}

// y = a x + b y; with b = 0, y is not read (it may hold garbage or NaN).
KERNEL(eltwise_axpby, (const index_t n, const Dtype* x, const Dtype a, Dtype* y, const Dtype b)) {
  KERNEL_LOOP(i) { y[i] = b == Dtype(0) ? a * x[i] : a * x[i] + b * y[i]; }
}

// dx = dy * the product of all bottoms but k, recomputed (Caffe's stable_prod_grad) so that
// zeros in x_k are safe; blocked as eltwise_forward.
KERNEL(eltwise_prod_backward_stable, (const index_t n, const index_t* xs, const index_t K,
                                      const index_t k, const Dtype* dy, Dtype* dx,
                                      const index_t count, const index_t tile)) {
  KERNEL_LOOP_WORK(i, tile * K) {
    const index_t last = index_min(i * tile + tile, count);
    for (index_t b0 = i * tile; b0 < last; b0 += ELT_BLOCK) {
      const index_t b1 = index_min(b0 + ELT_BLOCK, last);
      for (index_t t = b0; t < b1; ++t) dx[t] = dy[t];
      for (index_t j = 0; j < K; ++j) {
        if (j == k) continue;
        const Dtype* xj = elt_bottom(xs, j);
        for (index_t t = b0; t < b1; ++t) dx[t] *= xj[t];
      }
    }
  }
}

// dx = dy * y / x: the quick product gradient (stable_prod_grad: false).
KERNEL(eltwise_prod_backward_quick, (const index_t n, const Dtype* dy, const Dtype* y,
                                     const Dtype* x, Dtype* dx)) {
  KERNEL_LOOP(i) { dx[i] = dy[i] * y[i] / x[i]; }
}

KERNEL(eltwise_max_backward, (const index_t n, const Dtype* dy, const Dtype* mask, const index_t k, Dtype* dx)) {
  KERNEL_LOOP(i) { dx[i] = mask[i] == Dtype(k) ? dy[i] : Dtype(0); }
}
