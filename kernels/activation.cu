// Elementwise activation layers, forward and backward side by side.
// ReLU:  y = x > 0 ? x : slope * x          dx = dy * (x > 0 ? 1 : slope)
#include "common.cuh"

KERNEL(relu_forward, (const index_t n, const Dtype* x, Dtype* y, const Dtype slope)) {
  KERNEL_LOOP(i) { y[i] = x[i] > Dtype(0) ? x[i] : x[i] * slope; }
}

// Reads the forward *output* y: with slope >= 0, y > 0 exactly where x > 0, so the
// gradient is right for in-place ReLU, where x has been overwritten.
KERNEL(relu_backward, (const index_t n, const Dtype* dy, const Dtype* y, Dtype* dx, const Dtype slope)) {
  KERNEL_LOOP(i) { dx[i] = y[i] > Dtype(0) ? dy[i] : dy[i] * slope; }
}
