// Crop (Caffe's CropLayer) on a bottom viewed as `ndim` axes: the uncropped leading axes are
// merged into one axis of offset 0, so ndim = 1 + (number of cropped axes).
// geom (int64, 3 * ndim): bottom shape | top shape | offsets, axis by axis.
//   forward:  y[t] = x[t + offset]                              (one thread per top element)
//   backward: dx[b] = dy[b - offset] if b - offset lies in the top's box, else 0
//                                                               (one thread per bottom element)
#include "common.cuh"

KERNEL(crop_forward, (const index_t n, const Dtype* x, Dtype* y, const index_t ndim,
                      const index_t* geom)) {
  KERNEL_LOOP(i) {
    const index_t* bshape = geom;
    const index_t* tshape = geom + ndim;
    const index_t* off = geom + 2 * ndim;
    index_t rest = i, src = 0, stride = 1;
    for (index_t d = ndim - 1; d >= 0; --d) {
      const index_t q = rest % tshape[d];
      rest /= tshape[d];
      src += (q + off[d]) * stride;
      stride *= bshape[d];
    }
    y[i] = x[src];
  }
}

KERNEL(crop_backward, (const index_t n, const Dtype* dy, Dtype* dx, const index_t ndim,
                       const index_t* geom)) {
  KERNEL_LOOP(i) {
    const index_t* bshape = geom;
    const index_t* tshape = geom + ndim;
    const index_t* off = geom + 2 * ndim;
    index_t rest = i, dst = 0, stride = 1;
    bool inside = true;
    for (index_t d = ndim - 1; d >= 0 && inside; --d) {
      const index_t t = rest % bshape[d] - off[d];
      rest /= bshape[d];
      inside = t >= 0 && t < tshape[d];
      dst += t * stride;
      stride *= tshape[d];
    }
    dx[i] = inside ? dy[dst] : Dtype(0);
  }
}
