// Data movement without arithmetic beyond sums: the kernels of Slice, Tile, Filter,
// BatchReindex, Embed and SPP (which place and pick rows of blobs).
//
//   copy_block:   dst[o, dst_off + j] = src[o, src_off + j]   for o < rows, j < width, the rows of
//                 src / dst being src_stride / dst_stride elements apart (one slice of a blob seen
//                 as (outer, axis * inner), or the concatenation of flattened pieces).
//   tile_forward: y[o, t, j] = x[o, j]                         t < tiles, j < inner
//   tile_backward: dx[o, j] = sum_t dy[o, t, j]
//   gather_rows:  y[r, j] = x[idx[r], j]                       (Filter, BatchReindex, Embed)
//   segment_sum_rows: the adjoint of gather_rows as a gather, deterministic and atomic-free:
//                 dx[r, j] (+)= sum_{k in [starts[r], starts[r + 1])} dy[order[k], j]
//                 where `order` lists the rows of dy grouped by the row of x they came from
//                 (a stable argsort of idx, computed on the host) and starts[r] is where the
//                 group of r begins. Every r writes its own row, so duplicates are summed in a
//                 fixed order on both devices.
// Tiled kernels take `tile` consecutive elements of a row per iteration (1 on the GPU, long
// segments on the CPU), as kernels/crop.cu.
#include "common.cuh"

KERNEL(copy_block, (const index_t n, const Dtype* src, Dtype* dst, const index_t width,
                    const index_t src_stride, const index_t src_off, const index_t dst_stride,
                    const index_t dst_off, const index_t tile)) {
  // n = rows * ntiles
  const index_t ntiles = (width + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t q0, q1;
    const index_t row = row_tile(i, ntiles, tile, width, &q0, &q1);
    const Dtype* s = src + row * src_stride + src_off;
    Dtype* d = dst + row * dst_stride + dst_off;
    for (index_t q = q0; q < q1; ++q) d[q] = s[q];
  }
}

KERNEL(tile_forward, (const index_t n, const Dtype* x, Dtype* y, const index_t inner,
                      const index_t tiles, const index_t tile)) {
  // n = outer * tiles * ntiles; y row (o, t) is x row o
  const index_t ntiles = (inner + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t q0, q1;
    const index_t row = row_tile(i, ntiles, tile, inner, &q0, &q1);
    const Dtype* s = x + (row / tiles) * inner;
    Dtype* d = y + row * inner;
    for (index_t q = q0; q < q1; ++q) d[q] = s[q];
  }
}

KERNEL(tile_backward, (const index_t n, const Dtype* dy, Dtype* dx, const index_t inner,
                       const index_t tiles)) {
  // n = outer * inner
  KERNEL_LOOP_WORK(i, tiles) {
    const index_t o = i / inner, j = i % inner;
    const Dtype* s = dy + o * tiles * inner + j;
    Dtype acc = Dtype(0);
    for (index_t t = 0; t < tiles; ++t) acc += s[t * inner];
    dx[i] = acc;
  }
}

KERNEL(gather_rows, (const index_t n, const Dtype* x, const index_t* idx, Dtype* y,
                     const index_t width, const index_t tile)) {
  // n = (rows of y) * ntiles
  const index_t ntiles = (width + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t q0, q1;
    const index_t row = row_tile(i, ntiles, tile, width, &q0, &q1);
    const Dtype* s = x + idx[row] * width;
    Dtype* d = y + row * width;
    for (index_t q = q0; q < q1; ++q) d[q] = s[q];
  }
}

KERNEL(segment_sum_rows, (const index_t n, const Dtype* dy, const index_t* order,
                          const index_t* starts, Dtype* dx, const index_t width,
                          const index_t accumulate, const index_t tile)) {
  // n = (rows of dx) * ntiles
  const index_t ntiles = (width + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t q0, q1;
    const index_t row = row_tile(i, ntiles, tile, width, &q0, &q1);
    Dtype* d = dx + row * width;
    if (!accumulate)
      for (index_t q = q0; q < q1; ++q) d[q] = Dtype(0);
    for (index_t k = starts[row]; k < starts[row + 1]; ++k) {
      const Dtype* s = dy + order[k] * width;
      for (index_t q = q0; q < q1; ++q) d[q] += s[q];
    }
  }
}
