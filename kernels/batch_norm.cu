// BatchNorm over a bottom seen as (N, C, S): statistics per channel c over N and S, m = N * S.
//   batch statistics (TRAIN default):   mu = mean x,  var = mean (x - mu)^2
//   global statistics (TEST default):   f = blob2[0] == 0 ? 0 : 1 / blob2[0]
//                                        mu = f blob0,  var = f blob1
//   y = (x - mu) / sqrt(var + eps)
//   backward, batch statistics:  dx = (dy - mean(dy) - y mean(dy y)) / sqrt(var + eps)
//   backward, global statistics: dx = dy / sqrt(var + eps)
// Sums over N and S use scale.cu's scale_partial_* / reduce_partials (two gather stages).
#include "common.cuh"

// partial[i] = sum over the strided slice of row r = i / parts of (x - mean[r % C])^2
KERNEL(bn_partial_sqdev, (const index_t n, const Dtype* x, const Dtype* mean, Dtype* partial,
                          const index_t C, const index_t inner, const index_t parts)) {
  KERNEL_LOOP(i) {
    const index_t r = i / parts;
    const Dtype* xr = x + r * inner;
    const Dtype mu = mean[r % C];
    Dtype s = Dtype(0);
    for (index_t t = i % parts; t < inner; t += parts) {
      const Dtype v = xr[t] - mu;
      s += v * v;
    }
    partial[i] = s;
  }
}

// Per channel, after mean and var hold the batch statistics: the running sums as Caffe keeps
// them (blob0 = maf blob0 + mu, blob1 = maf blob1 + var m/(m-1), blob2 = maf blob2 + 1) and
// std = sqrt(var + eps).
KERNEL(bn_finish_batch_stats, (const index_t n, const Dtype* mean, const Dtype* var, Dtype* std_,
                               Dtype* blob0, Dtype* blob1, Dtype* blob2, const Dtype maf,
                               const Dtype correction, const Dtype eps)) {
  KERNEL_LOOP(c) {
    blob0[c] = maf * blob0[c] + mean[c];
    blob1[c] = maf * blob1[c] + correction * var[c];
    if (c == 0) blob2[0] = maf * blob2[0] + Dtype(1);
    std_[c] = sqrt(var[c] + eps);
  }
}

// Per channel: mean and std from the stored running sums.
KERNEL(bn_global_stats, (const index_t n, const Dtype* blob0, const Dtype* blob1, const Dtype* blob2,
                         Dtype* mean, Dtype* std_, const Dtype eps)) {
  KERNEL_LOOP(c) {
    const Dtype f = blob2[0] == Dtype(0) ? Dtype(0) : Dtype(1) / blob2[0];
    mean[c] = f * blob0[c];
    std_[c] = sqrt(f * blob1[c] + eps);
  }
}

// y = (x - mean) / std, also written to xn (the copy backward reads; pass y again for none).
// x may be y (in place).
KERNEL(bn_normalize, (const index_t n, const Dtype* x, const Dtype* mean, const Dtype* std_,
                      Dtype* y, Dtype* xn, const index_t C, const index_t inner)) {
  KERNEL_LOOP(i) {
    const index_t c = (i / inner) % C;
    const Dtype v = (x[i] - mean[c]) / std_[c];
    y[i] = v;
    xn[i] = v;
  }
}

// dx = (dy - mean_dy[c] - xn * mean_dy_xn[c]) / std[c]; dx may be dy (in place).
KERNEL(bn_backward, (const index_t n, const Dtype* dy, const Dtype* xn, const Dtype* mean_dy,
                     const Dtype* mean_dy_xn, const Dtype* std_, Dtype* dx, const index_t C,
                     const index_t inner)) {
  KERNEL_LOOP(i) {
    const index_t c = (i / inner) % C;
    dx[i] = (dy[i] - mean_dy[c] - xn[i] * mean_dy_xn[c]) / std_[c];
  }
}

// dx = dy / std[c]: the statistics are constants.
KERNEL(bn_backward_global, (const index_t n, const Dtype* dy, const Dtype* std_, Dtype* dx,
                            const index_t C, const index_t inner)) {
  KERNEL_LOOP(i) { dx[i] = dy[i] / std_[(i / inner) % C]; }
}
