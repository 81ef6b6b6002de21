// Fill: y = value for every element (Net.clear_param_diffs: FCN-8s clears 134M gradients per
// iteration). On the CPU numpy's fill runs on one thread; this loop runs on the OpenMP team.
#include "common.cuh"

KERNEL(fill, (const index_t n, Dtype* y, const Dtype value)) {
  KERNEL_LOOP(i) { y[i] = value; }
}
