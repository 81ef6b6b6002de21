// Local response normalization (Caffe's LRN) on an (N, C, H, W) bottom, local_size n odd,
// half = (n - 1) / 2:
//   ACROSS_CHANNELS: scale[n,c,h,w] = k + alpha / n * sum_{|c' - c| <= half} x[n,c',h,w]^2
//   WITHIN_CHANNEL:  scale[n,c,h,w] = k + alpha / n^2 * sum_{|h'-h|, |w'-w| <= half} x[n,c,h',w']^2
//                    (zero padding: the window is clipped, the divisor stays n^2)
//   y = x * scale^-beta
// The window relation is symmetric, so the backward pass is a gather over the same window:
//   dx = dy scale^-beta - (2 alpha beta / n or n^2) x sum_{window} dy y / scale
// ACROSS_CHANNELS takes `tile` positions of one (n, c) plane per iteration: 1 on the GPU, a
// row segment on the CPU, where the window's sums and the power vectorize over the positions
// (blocks of ND_LANES kept in a local array). Each element still sums its own window in channel
// order (no running sums, no atomics). WITHIN_CHANNEL keeps one element per iteration.
// The caller passes alpha already divided by n (or n^2) as alpha_n, and coef = 2 alpha_n beta.
#include "common.cuh"

// s^-beta for s >= k > 0: through square roots for Caffe's usual betas (0.75 for every zoo
// net, 0.5, 1), whose loops vectorize where pow's would not; pow otherwise.
DEVICE_FN Dtype lrn_pow(const Dtype s, const index_t mode, const Dtype beta) {
  if (mode == 0) {
    const Dtype r = Dtype(1) / sqrt(s);
    return r * sqrt(r);
  }
  if (mode == 1) return Dtype(1) / sqrt(s);
  if (mode == 2) return Dtype(1) / s;
  return pow(s, -beta);
}

DEVICE_FN index_t lrn_pow_mode(const Dtype beta) {
  return beta == Dtype(0.75) ? 0 : beta == Dtype(0.5) ? 1 : beta == Dtype(1) ? 2 : 3;
}

// out[u] = a[u] * p[u]^-beta for u < m (out may be a or p); one loop per mode, so that each
// vectorizes.
DEVICE_FN void lrn_scale_block(const Dtype* a, const Dtype* p, Dtype* out, const index_t m,
                               const index_t mode, const Dtype beta) {
  if (mode == 0) {
    for (index_t u = 0; u < m; ++u) out[u] = a[u] * lrn_pow(p[u], 0, beta);
  } else if (mode == 1) {
    for (index_t u = 0; u < m; ++u) out[u] = a[u] * lrn_pow(p[u], 1, beta);
  } else if (mode == 2) {
    for (index_t u = 0; u < m; ++u) out[u] = a[u] * lrn_pow(p[u], 2, beta);
  } else {
    for (index_t u = 0; u < m; ++u) out[u] = a[u] * lrn_pow(p[u], 3, beta);
  }
}

// scale and y on positions [t0, t0 + m) of channel c (plane = the (n, c) plane's offset).
SIMD_FN void lrn_across_block(const Dtype* x, Dtype* scale, Dtype* y, const index_t plane,
                              const index_t t0, const index_t m, const index_t lo, const index_t hi,
                              const index_t c, const index_t S, const Dtype alpha_n,
                              const Dtype k, const Dtype beta) {
  Dtype acc[ND_LANES];
  for (index_t u = 0; u < m; ++u) acc[u] = Dtype(0);
  for (index_t j = lo; j <= hi; ++j) {
    const Dtype* xj = x + plane + (j - c) * S + t0;
    for (index_t u = 0; u < m; ++u) acc[u] += xj[u] * xj[u];
  }
  Dtype* sc = scale + plane + t0;
  for (index_t u = 0; u < m; ++u) sc[u] = k + alpha_n * acc[u];
  lrn_scale_block(x + plane + t0, sc, y + plane + t0, m, lrn_pow_mode(beta), beta);
}

KERNEL(lrn_across_forward, (const index_t n, const Dtype* x, Dtype* scale, Dtype* y,
                            const index_t C, const index_t S, const index_t half,
                            const Dtype alpha_n, const Dtype k, const Dtype beta,
                            const index_t tile)) {
  // n = N * C * ntiles
  const index_t ntiles = (S + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile * (2 * half + 1)) {
    index_t first, last;
    const index_t row = row_tile(i, ntiles, tile, S, &first, &last);  // n * C + c
    const index_t c = row % C;
    const index_t lo = index_max(c - half, 0), hi = index_min(c + half, C - 1);
    for (index_t t0 = first; t0 < last; t0 += ND_LANES)
      lrn_across_block(x, scale, y, row * S, t0, index_min(ND_LANES, last - t0), lo, hi, c, S,
                       alpha_n, k, beta);
  }
}

// dx on positions [t0, t0 + m) of channel c.
SIMD_FN void lrn_across_backward_block(const Dtype* x, const Dtype* y, const Dtype* scale,
                                       const Dtype* dy, Dtype* dx, const index_t plane,
                                       const index_t t0, const index_t m, const index_t lo,
                                       const index_t hi, const index_t c, const index_t S,
                                       const Dtype coef, const Dtype beta) {
  Dtype acc[ND_LANES], g[ND_LANES];
  for (index_t u = 0; u < m; ++u) acc[u] = Dtype(0);
  for (index_t j = lo; j <= hi; ++j) {
    const index_t q = plane + (j - c) * S + t0;
    for (index_t u = 0; u < m; ++u) acc[u] += dy[q + u] * y[q + u] / scale[q + u];
  }
  const index_t p = plane + t0;
  lrn_scale_block(dy + p, scale + p, g, m, lrn_pow_mode(beta), beta);
  for (index_t u = 0; u < m; ++u) dx[p + u] = g[u] - coef * x[p + u] * acc[u];
}

KERNEL(lrn_across_backward, (const index_t n, const Dtype* x, const Dtype* y, const Dtype* scale,
                             const Dtype* dy, Dtype* dx, const index_t C, const index_t S,
                             const index_t half, const Dtype coef, const Dtype beta,
                             const index_t tile)) {
  // n = N * C * ntiles
  const index_t ntiles = (S + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile * (2 * half + 1)) {
    index_t first, last;
    const index_t row = row_tile(i, ntiles, tile, S, &first, &last);
    const index_t c = row % C;
    const index_t lo = index_max(c - half, 0), hi = index_min(c + half, C - 1);
    for (index_t t0 = first; t0 < last; t0 += ND_LANES)
      lrn_across_backward_block(x, y, scale, dy, dx, row * S, t0, index_min(ND_LANES, last - t0),
                                lo, hi, c, S, coef, beta);
  }
}

KERNEL(lrn_within_forward, (const index_t n, const Dtype* x, Dtype* scale, Dtype* y,
                            const index_t H, const index_t W, const index_t half,
                            const Dtype alpha_n, const Dtype k, const Dtype beta)) {
  KERNEL_LOOP(i) {
    const index_t w = i % W;
    const index_t h = (i / W) % H;
    const Dtype* plane = x + (i / (H * W)) * H * W;
    const index_t h0 = index_max(h - half, 0);
    const index_t h1 = index_min(h + half, H - 1);
    const index_t w0 = index_max(w - half, 0);
    const index_t w1 = index_min(w + half, W - 1);
    Dtype sum = Dtype(0);
    for (index_t a = h0; a <= h1; ++a)
      for (index_t b = w0; b <= w1; ++b) {
        const Dtype v = plane[a * W + b];
        sum += v * v;
      }
    const Dtype sc = k + alpha_n * sum;
    scale[i] = sc;
    y[i] = x[i] * lrn_pow(sc, lrn_pow_mode(beta), beta);
  }
}

KERNEL(lrn_within_backward, (const index_t n, const Dtype* x, const Dtype* y, const Dtype* scale,
                             const Dtype* dy, Dtype* dx, const index_t H, const index_t W,
                             const index_t half, const Dtype coef, const Dtype beta)) {
  KERNEL_LOOP(i) {
    const index_t w = i % W;
    const index_t h = (i / W) % H;
    const index_t plane = (i / (H * W)) * H * W;
    const index_t h0 = index_max(h - half, 0);
    const index_t h1 = index_min(h + half, H - 1);
    const index_t w0 = index_max(w - half, 0);
    const index_t w1 = index_min(w + half, W - 1);
    Dtype acc = Dtype(0);
    for (index_t a = h0; a <= h1; ++a)
      for (index_t b = w0; b <= w1; ++b) {
        const index_t q = plane + a * W + b;
        acc += dy[q] * y[q] / scale[q];
      }
    dx[i] = dy[i] * lrn_pow(scale[i], lrn_pow_mode(beta), beta) - coef * x[i] * acc;
  }
}
