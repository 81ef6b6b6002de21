// ArgMax (Caffe's ArgMaxLayer): for each of n rows of `dim` values (value j of row i at
// (i / dist) * dim * dist + j * dist + i % dist), the top_k (value, index) pairs in decreasing
// order, where a larger value comes first and equal values put the larger index first (the
// order of std::greater on (value, index) pairs that Caffe sorts with). One thread per row,
// top_k passes over the row.
//   mode 0: indices    y[(i / dist * top_k + j) * dist + i % dist] = index_j
//   mode 1: values     y[(i / dist * top_k + j) * dist + i % dist] = value_j    (out_max_val, axis)
//   mode 2: both       y[2 i top_k + j] = index_j, y[2 i top_k + top_k + j] = value_j
//                                                              (out_max_val without axis; dist 1)
// No backward (Caffe has none).
#include "common.cuh"

KERNEL(argmax_forward, (const index_t n, const Dtype* x, Dtype* y, const index_t dim,
                        const index_t dist, const index_t top_k, const index_t mode)) {
  KERNEL_LOOP_WORK(i, dim * top_k) {
    const Dtype* row = x + (i / dist) * dim * dist + i % dist;
    Dtype prev_v = Dtype(0);
    index_t prev_k = -1;
    for (index_t j = 0; j < top_k; ++j) {
      Dtype best_v = Dtype(0);
      index_t best_k = -1;
      for (index_t k = 0; k < dim; ++k) {
        const Dtype v = row[k * dist];
        // only pairs after the previous pick in the order: smaller value, or equal and smaller index
        if (prev_k >= 0 && !(v < prev_v || (v == prev_v && k < prev_k))) continue;
        if (best_k < 0 || v > best_v || (v == best_v && k > best_k)) {
          best_v = v;
          best_k = k;
        }
      }
      prev_v = best_v;
      prev_k = best_k;
      if (mode == 2) {
        y[2 * i * top_k + j] = Dtype(best_k);
        y[2 * i * top_k + top_k + j] = best_v;
      } else {
        y[(i / dist * top_k + j) * dist + i % dist] = mode == 1 ? best_v : Dtype(best_k);
      }
    }
  }
}
