// MVN (Caffe's MVNLayer) over `rows` rows of `dim` elements (one row per image, or per image
// and channel). stats[2r] = m, the row's mean; stats[2r + 1] = s = sqrt(mean((x - m)^2)).
//   forward:  y = x - m                          (normalize_variance false)
//             y = (x - m) / (s + eps)            (normalize_variance true; eps added to s)
//   backward, with c = x - m, d = s + eps, and the row means <dy>, <dy c>:
//             dx = dy - <dy>                     (normalize_variance false)
//             dx = (dy - <dy>) / d - c <dy c> / (d^2 s)   (the exact derivative; 0 for the
//                                                  second term where s = 0, a constant row)
// One thread per row for the statistics (two passes: the mean first, then the squares of the
// deviations, which keeps the variance accurate when |m| >> s).
#include "common.cuh"

KERNEL(mvn_stats, (const index_t n, const Dtype* x, Dtype* stats, const index_t dim,
                   const index_t normalize_variance)) {
  KERNEL_LOOP_WORK(r, dim) {
    const Dtype* xr = x + r * dim;
    Dtype sum = Dtype(0);
    for (index_t j = 0; j < dim; ++j) sum += xr[j];
    const Dtype m = sum / Dtype(dim);
    Dtype sq = Dtype(0);
    if (normalize_variance)
      for (index_t j = 0; j < dim; ++j) sq += (xr[j] - m) * (xr[j] - m);
    stats[2 * r] = m;
    stats[2 * r + 1] = sqrt(sq / Dtype(dim));
  }
}

KERNEL(mvn_forward, (const index_t n, const Dtype* x, const Dtype* stats, Dtype* y,
                     const index_t dim, const index_t normalize_variance, const Dtype eps)) {
  KERNEL_LOOP(i) {
    const index_t r = i / dim;
    const Dtype c = x[i] - stats[2 * r];
    y[i] = normalize_variance ? c / (stats[2 * r + 1] + eps) : c;
  }
}

// sums[2r] = <dy>, sums[2r + 1] = <dy (x - m)> over row r
KERNEL(mvn_backward_sums, (const index_t n, const Dtype* dy, const Dtype* x, const Dtype* stats,
                           Dtype* sums, const index_t dim)) {
  KERNEL_LOOP_WORK(r, dim) {
    const Dtype* dyr = dy + r * dim;
    const Dtype* xr = x + r * dim;
    const Dtype m = stats[2 * r];
    Dtype a = Dtype(0), b = Dtype(0);
    for (index_t j = 0; j < dim; ++j) {
      a += dyr[j];
      b += dyr[j] * (xr[j] - m);
    }
    sums[2 * r] = a / Dtype(dim);
    sums[2 * r + 1] = b / Dtype(dim);
  }
}

KERNEL(mvn_backward, (const index_t n, const Dtype* dy, const Dtype* x, const Dtype* stats,
                      const Dtype* sums, Dtype* dx, const index_t dim,
                      const index_t normalize_variance, const Dtype eps)) {
  KERNEL_LOOP(i) {
    const index_t r = i / dim;
    const Dtype centred = dy[i] - sums[2 * r];
    if (!normalize_variance) {
      dx[i] = centred;
    } else {
      const Dtype s = stats[2 * r + 1];
      const Dtype d = s + eps;
      const Dtype spread = s > Dtype(0) ? (x[i] - stats[2 * r]) * sums[2 * r + 1] / (d * d * s)
                                        : Dtype(0);
      dx[i] = centred / d - spread;
    }
  }
}
