// Eltwise: elementwise combination of K bottoms of equal shape.
//   SUM:  y = sum_k c_k x_k                dx_k = c_k dy
//   PROD: y = prod_k x_k                   dx_k = dy * prod_{j != k} x_j
//   MAX:  y = max_k x_k, argmax in mask    dx_k = dy where mask == k, else 0
// Bottoms are folded in pairs (acc with x_k) so any number of bottoms takes K-1 launches.
#include "common.cuh"

// y = a x + b y; with b = 0, y is not read (it may hold garbage or NaN).
KERNEL(eltwise_axpby, (const index_t n, const Dtype* x, const Dtype a, Dtype* y, const Dtype b)) {
  KERNEL_LOOP(i) { y[i] = b == Dtype(0) ? a * x[i] : a * x[i] + b * y[i]; }
}

KERNEL(eltwise_mul, (const index_t n, const Dtype* a, const Dtype* b, Dtype* y)) {
  KERNEL_LOOP(i) { y[i] = a[i] * b[i]; }
}

// Product of all bottoms but k, recomputed (Caffe's stable_prod_grad) so zeros in x_k are safe.
// xs holds the K bottoms stacked contiguously (K * n values).
KERNEL(eltwise_prod_backward_stable, (const index_t n, const Dtype* xs, const index_t K,
                                      const index_t k, const Dtype* dy, Dtype* dx)) {
  KERNEL_LOOP(i) {
    Dtype p = dy[i];
    for (index_t j = 0; j < K; ++j)
      if (j != k) p *= xs[j * n + i];
    dx[i] = p;
  }
}

// dx = dy * y / x: the quick product gradient (stable_prod_grad: false).
KERNEL(eltwise_prod_backward_quick, (const index_t n, const Dtype* dy, const Dtype* y,
                                     const Dtype* x, Dtype* dx)) {
  KERNEL_LOOP(i) { dx[i] = dy[i] * y[i] / x[i]; }
}

// Running max over bottoms: first call with k = 0 initialises y and mask.
KERNEL(eltwise_max_forward, (const index_t n, const Dtype* x, const index_t k, Dtype* y, Dtype* mask)) {
  KERNEL_LOOP(i) {
    if (k == 0 || x[i] > y[i]) {
      y[i] = x[i];
      mask[i] = Dtype(k);
    }
  }
}

KERNEL(eltwise_max_backward, (const index_t n, const Dtype* dy, const Dtype* mask, const index_t k, Dtype* dx)) {
  KERNEL_LOOP(i) { dx[i] = mask[i] == Dtype(k) ? dy[i] : Dtype(0); }
}
