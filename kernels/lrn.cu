// Local response normalization (Caffe's LRN) on an (N, C, H, W) bottom, local_size n odd,
// half = (n - 1) / 2:
//   ACROSS_CHANNELS: scale[n,c,h,w] = k + alpha / n * sum_{|c' - c| <= half} x[n,c',h,w]^2
//   WITHIN_CHANNEL:  scale[n,c,h,w] = k + alpha / n^2 * sum_{|h'-h|, |w'-w| <= half} x[n,c,h',w']^2
//                    (zero padding: the window is clipped, the divisor stays n^2)
//   y = x * scale^-beta
// The window relation is symmetric, so the backward pass is a gather over the same window:
//   dx = dy scale^-beta - (2 alpha beta / n or n^2) x sum_{window} dy y / scale
// One thread per element, each summing its own window (no running sums, no atomics).
// The caller passes alpha already divided by n (or n^2) as alpha_n, and coef = 2 alpha_n beta.
#include "common.cuh"

KERNEL(lrn_across_forward, (const index_t n, const Dtype* x, Dtype* scale, Dtype* y,
                            const index_t C, const index_t S, const index_t half,
                            const Dtype alpha_n, const Dtype k, const Dtype beta)) {
  KERNEL_LOOP(i) {
    const index_t s = i % S;
    const index_t c = (i / S) % C;
    const Dtype* base = x + (i / S - c) * S + s;  // channel 0 at this (n, h, w)
    const index_t lo = index_max(c - half, 0);
    const index_t hi = index_min(c + half, C - 1);
    Dtype sum = Dtype(0);
    for (index_t j = lo; j <= hi; ++j) sum += base[j * S] * base[j * S];
    const Dtype sc = k + alpha_n * sum;
    scale[i] = sc;
    y[i] = x[i] * pow(sc, -beta);
  }
}

KERNEL(lrn_across_backward, (const index_t n, const Dtype* x, const Dtype* y, const Dtype* scale,
                             const Dtype* dy, Dtype* dx, const index_t C, const index_t S,
                             const index_t half, const Dtype coef, const Dtype beta)) {
  KERNEL_LOOP(i) {
    const index_t s = i % S;
    const index_t c = (i / S) % C;
    const index_t off = (i / S - c) * S + s;
    const index_t lo = index_max(c - half, 0);
    const index_t hi = index_min(c + half, C - 1);
    Dtype acc = Dtype(0);
    for (index_t j = lo; j <= hi; ++j) {
      const index_t q = off + j * S;
      acc += dy[q] * y[q] / scale[q];
    }
    dx[i] = dy[i] * pow(scale[i], -beta) - coef * x[i] * acc;
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
    y[i] = x[i] * pow(sc, -beta);
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
    dx[i] = dy[i] * pow(scale[i], -beta) - coef * x[i] * acc;
  }
}
