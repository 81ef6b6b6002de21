// Crop (Caffe's CropLayer) on a bottom viewed as `ndim` axes: the uncropped leading axes are
// merged into one axis of offset 0, so ndim = 1 + (number of cropped axes).
// geom (int64, 3 * ndim): bottom shape | top shape | offsets, axis by axis.
//   forward:  y[t] = x[t + offset]
//   backward: dx[b] = dy[b - offset] if b - offset lies in the top's box, else 0
// One iteration takes `tile` consecutive elements along the last axis of the top (forward) or
// the bottom (backward): 1 on the GPU, whole rows or long segments on the CPU, where the index
// arithmetic of an iteration would otherwise cost more than its copy.
#include "common.cuh"

// Row `row` of an array of shape `from` (its last axis excluded) maps to the row of an array of
// shape `to` whose leading coordinates are c_d = q_d + sign * off[d]: the element offset of
// that row's start, with *inside false when some c_d falls outside `to`.
DEVICE_FN index_t crop_row_start(index_t row, const index_t* from, const index_t* to,
                                 const index_t* off, const index_t ndim, const index_t sign,
                                 bool* inside) {
  index_t start = 0, stride = to[ndim - 1];
  *inside = true;
  for (index_t d = ndim - 2; d >= 0; --d) {
    const index_t c = row % from[d] + sign * off[d];
    row /= from[d];
    *inside = *inside && c >= 0 && c < to[d];
    start += c * stride;
    stride *= to[d];
  }
  return start;
}

KERNEL(crop_forward, (const index_t n, const Dtype* x, Dtype* y, const index_t ndim,
                      const index_t* geom, const index_t tile)) {
  // n = (top count / top row length) * ntiles
  const index_t* bshape = geom;
  const index_t* tshape = geom + ndim;
  const index_t* off = geom + 2 * ndim;
  const index_t TW = tshape[ndim - 1];
  const index_t ntiles = (TW + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t q0, q1;
    const index_t row = row_tile(i, ntiles, tile, TW, &q0, &q1);
    bool inside;
    const index_t src = crop_row_start(row, tshape, bshape, off, ndim, 1, &inside);
    const Dtype* xr = x + src + off[ndim - 1];
    Dtype* yr = y + row * TW;
    for (index_t q = q0; q < q1; ++q) yr[q] = xr[q];
  }
}

KERNEL(crop_backward, (const index_t n, const Dtype* dy, Dtype* dx, const index_t ndim,
                       const index_t* geom, const index_t tile)) {
  // n = (bottom count / bottom row length) * ntiles
  const index_t* bshape = geom;
  const index_t* tshape = geom + ndim;
  const index_t* off = geom + 2 * ndim;
  const index_t TW = tshape[ndim - 1], BW = bshape[ndim - 1];
  const index_t ntiles = (BW + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t w0, w1;
    const index_t row = row_tile(i, ntiles, tile, BW, &w0, &w1);
    bool inside;
    const index_t dst = crop_row_start(row, bshape, tshape, off, ndim, -1, &inside);
    Dtype* dxr = dx + row * BW;
    const Dtype* dyr = dy + dst - off[ndim - 1];
    // the top's columns within this segment: [lo, hi), w0 <= lo <= hi <= w1
    const index_t o = off[ndim - 1];
    index_t lo = index_clamp(o, w0, w1);
    index_t hi = index_clamp(o + TW, lo, w1);
    if (!inside) lo = hi = w1;
    for (index_t w = w0; w < lo; ++w) dxr[w] = Dtype(0);
    for (index_t w = lo; w < hi; ++w) dxr[w] = dyr[w];
    for (index_t w = hi; w < w1; ++w) dxr[w] = Dtype(0);
  }
}
