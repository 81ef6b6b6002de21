// Dropout (training): y = x * keep * scale with keep = (u >= ratio), scale = 1 / (1 - ratio),
// u ~ U[0,1) drawn per element by the backend's generator.  dx = dy * keep * scale.
#include "common.cuh"

KERNEL(dropout_forward, (const index_t n, const Dtype* x, const Dtype* u, Dtype* y,
                         const Dtype ratio, const Dtype scale)) {
  KERNEL_LOOP(i) { y[i] = u[i] >= ratio ? x[i] * scale : Dtype(0); }
}

KERNEL(dropout_backward, (const index_t n, const Dtype* dy, const Dtype* u, Dtype* dx,
                          const Dtype ratio, const Dtype scale)) {
  KERNEL_LOOP(i) { dx[i] = u[i] >= ratio ? dy[i] * scale : Dtype(0); }
}
