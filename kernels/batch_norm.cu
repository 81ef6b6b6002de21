// BatchNorm over a bottom seen as (N, C, S): statistics per channel c over N and S, m = N * S.
//   batch statistics (TRAIN default):   mu = mean x,  var = mean (x - mu)^2
//   global statistics (TEST default):   f = blob2[0] == 0 ? 0 : 1 / blob2[0]
//                                        mu = f blob0,  var = f blob1
//   y = (x - mu) / sqrt(var + eps) = a x + b with a = 1 / sqrt(var + eps), b = -mu a per channel:
//   one pass of scale.cu's channel_affine (bn_normalize when backward needs y kept as well)
//   backward, batch statistics:  dx = (dy - mean(dy) - y mean(dy y)) / sqrt(var + eps)
//   backward, global statistics: dx = dy / sqrt(var + eps)   (channel_affine again)
// The batch statistics take one read of x: each row (n, c) gives its sum and its sum of squared
// deviations from its own mean (the row's second sweep hits the cache), and bn_batch_stats
// combines the rows of a channel exactly (Chan et al.'s pairwise update):
//   M2 = sum_r (M2_r + cnt_r (mean_r - mu)^2). The backward sums of dy and dy y are one pass too.
// Rows are split into `parts` strided slices as scale.cu's *_partial kernels (1 on the CPU).
#include "common.cuh"

// Elements of row slice k < parts of a row of `len`: k, k + parts, ...
DEVICE_FN index_t bn_slice_count(const index_t k, const index_t parts, const index_t len) {
  return k < len ? (len - k + parts - 1) / parts : 0;
}

// psum[i] = the sum, pm2[i] = the sum of squared deviations from the slice's own mean, of the
// strided slice i % parts of row i / parts.
KERNEL(bn_partial_moments, (const index_t n, const Dtype* x, Dtype* psum, Dtype* pm2,
                            const index_t inner, const index_t parts)) {
  KERNEL_LOOP_WORK(i, inner / parts) {
    const Dtype* xr = x + (i / parts) * inner;
    const index_t k = i % parts;
    const index_t cnt = bn_slice_count(k, parts, inner);
    const Dtype s = slice_sum(xr, k, parts, inner);
    const Dtype mu = cnt > 0 ? s / Dtype(cnt) : Dtype(0);
    Dtype m2 = Dtype(0);
    if (parts == 1) {
      SIMD_SUM(m2)
      for (index_t t = 0; t < inner; ++t) m2 += (xr[t] - mu) * (xr[t] - mu);
    } else {
      for (index_t t = k; t < inner; t += parts) m2 += (xr[t] - mu) * (xr[t] - mu);
    }
    psum[i] = s;
    pm2[i] = m2;
  }
}

// Per channel c (n = C): the batch mean and biased variance from the partial moments of its
// outer * parts slices (rows (o, c) of the (outer, C, inner) view), the running sums as Caffe
// keeps them (blob0 = maf blob0 + mu, blob1 = maf blob1 + var m/(m-1), blob2 = maf blob2 + 1),
// and the normalization's a = 1 / sqrt(var + eps), b = -mu a.
KERNEL(bn_batch_stats, (const index_t n, const Dtype* psum, const Dtype* pm2, const index_t outer,
                        const index_t parts, const index_t inner, Dtype* mean, Dtype* var,
                        Dtype* a, Dtype* b, Dtype* blob0, Dtype* blob1, Dtype* blob2,
                        const Dtype maf, const Dtype correction, const Dtype eps)) {
  KERNEL_LOOP(c) {
    const Dtype m = Dtype(outer * inner);
    Dtype s = Dtype(0);
    for (index_t o = 0; o < outer; ++o)
      for (index_t k = 0; k < parts; ++k) s += psum[(o * n + c) * parts + k];
    const Dtype mu = s / m;
    Dtype m2 = Dtype(0);
    for (index_t o = 0; o < outer; ++o)
      for (index_t k = 0; k < parts; ++k) {
        const index_t q = (o * n + c) * parts + k;
        const index_t cnt = bn_slice_count(k, parts, inner);
        if (cnt == 0) continue;
        const Dtype d = psum[q] / Dtype(cnt) - mu;
        m2 += pm2[q] + Dtype(cnt) * d * d;
      }
    const Dtype v = m2 / m;
    mean[c] = mu;
    var[c] = v;
    blob0[c] = maf * blob0[c] + mu;
    blob1[c] = maf * blob1[c] + correction * v;
    if (c == 0) blob2[0] = maf * blob2[0] + Dtype(1);
    const Dtype inv = Dtype(1) / sqrt(v + eps);
    a[c] = inv;
    b[c] = -mu * inv;
  }
}

// Per channel: mean and var from the stored running sums, and the normalization's a, b.
KERNEL(bn_global_stats, (const index_t n, const Dtype* blob0, const Dtype* blob1, const Dtype* blob2,
                         Dtype* mean, Dtype* var, Dtype* a, Dtype* b, const Dtype eps)) {
  KERNEL_LOOP(c) {
    const Dtype f = blob2[0] == Dtype(0) ? Dtype(0) : Dtype(1) / blob2[0];
    mean[c] = f * blob0[c];
    var[c] = f * blob1[c];
    const Dtype inv = Dtype(1) / sqrt(var[c] + eps);
    a[c] = inv;
    b[c] = -mean[c] * inv;
  }
}

// y = xn = a[c] x + b[c] (xn: the copy backward reads, since a later layer in place may
// overwrite y), row-tiled as scale.cu's channel_affine. x may be y (in place).
KERNEL(bn_normalize, (const index_t n, const Dtype* x, const Dtype* a, const Dtype* b, Dtype* y,
                      Dtype* xn, const index_t C, const index_t inner, const index_t tile)) {
  const index_t ntiles = (inner + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t first, last;
    const index_t r = row_tile(i, ntiles, tile, inner, &first, &last);
    const Dtype ac = a[r % C], bc = b[r % C];
    const Dtype* xr = x + r * inner;
    Dtype* yr = y + r * inner;
    Dtype* nr = xn + r * inner;
    for (index_t t = first; t < last; ++t) {
      const Dtype v = xr[t] * ac + bc;
      yr[t] = v;
      nr[t] = v;
    }
  }
}

// psum[i], pdot[i] = the sums of dy and of dy xn over the strided slice i % parts of row
// i / parts: both backward reductions in one read.
KERNEL(bn_partial_grad, (const index_t n, const Dtype* dy, const Dtype* xn, Dtype* psum,
                         Dtype* pdot, const index_t inner, const index_t parts)) {
  KERNEL_LOOP_WORK(i, inner / parts) {
    const index_t off = (i / parts) * inner;
    psum[i] = slice_sum(dy + off, i % parts, parts, inner);
    pdot[i] = slice_dot(dy + off, xn + off, i % parts, parts, inner);
  }
}

// dx = a[c] (dy - mean_dy[c] - xn mean_dy_xn[c]); dx may be dy (in place). Row-tiled.
KERNEL(bn_backward, (const index_t n, const Dtype* dy, const Dtype* xn, const Dtype* mean_dy,
                     const Dtype* mean_dy_xn, const Dtype* a, Dtype* dx, const index_t C,
                     const index_t inner, const index_t tile)) {
  const index_t ntiles = (inner + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t first, last;
    const index_t r = row_tile(i, ntiles, tile, inner, &first, &last);
    const index_t c = r % C;
    const Dtype ac = a[c], m1 = mean_dy[c], m2 = mean_dy_xn[c];
    const Dtype* dyr = dy + r * inner;
    const Dtype* nr = xn + r * inner;
    Dtype* dxr = dx + r * inner;
    for (index_t t = first; t < last; ++t) dxr[t] = (dyr[t] - m1 - nr[t] * m2) * ac;
  }
}
