// Softmax over one axis and the per-pixel softmax cross-entropy loss (SoftmaxWithLoss).
// A bottom of `outer` x C x `inner` elements has n = outer * inner "pixels"; pixel i holds the
// C values at (i / inner) * C * inner + i % inner + c * inner. Channel reductions are one
// thread per pixel; elementwise passes are one thread per element. No atomics.
//
//   softmax:   y_c = exp(x_c - max x) / sum_c' exp(x_c' - max x)
//              dx_c = y_c (dy_c - sum_c' dy_c' y_c')
//   loss:      per pixel with label l (not ignored):  loss = -log(max(p_l, FLT_MIN)), valid = 1
//              dx_c = (p_c - [c == l]) * top_diff[0] * inv_norm;  ignored pixels: loss 0, dx 0
//   labels are read by common.cuh's read_label; a label that is neither the ignore label nor
//   in [0, C) sets bad[i] = 1 (the layer reports it afterwards).
#include "common.cuh"

KERNEL(softmax_forward, (const index_t n, const Dtype* x, Dtype* y, const index_t C,
                         const index_t inner)) {
  KERNEL_LOOP_WORK(i, C) {
    const index_t base = (i / inner) * C * inner + i % inner;
    Dtype m = x[base];
    for (index_t c = 1; c < C; ++c) m = max(m, x[base + c * inner]);
    Dtype sum = Dtype(0);
    for (index_t c = 0; c < C; ++c) {  // x may be y (in place): read x_c, then write y_c
      const Dtype e = exp(x[base + c * inner] - m);
      y[base + c * inner] = e;
      sum += e;
    }
    const Dtype inv = Dtype(1) / sum;
    for (index_t c = 0; c < C; ++c) y[base + c * inner] *= inv;
  }
}

KERNEL(softmax_backward, (const index_t n, const Dtype* y, const Dtype* dy, Dtype* dx,
                          const index_t C, const index_t inner)) {
  KERNEL_LOOP_WORK(i, C) {
    const index_t base = (i / inner) * C * inner + i % inner;
    Dtype dot = Dtype(0);
    for (index_t c = 0; c < C; ++c) dot += dy[base + c * inner] * y[base + c * inner];
    for (index_t c = 0; c < C; ++c) {  // dx may be dy (in place)
      const index_t q = base + c * inner;
      dx[q] = (dy[q] - dot) * y[q];
    }
  }
}

KERNEL(softmax_loss_forward, (const index_t n, const Dtype* prob, const Dtype* label, Dtype* loss,
                              Dtype* valid, Dtype* bad, const index_t C, const index_t inner,
                              const index_t has_ignore, const index_t ignore_label)) {
  KERNEL_LOOP(i) {
    const index_t l = read_label(label[i], C, has_ignore, ignore_label);
    loss[i] = Dtype(0);
    valid[i] = Dtype(0);
    bad[i] = l == LABEL_INVALID ? Dtype(1) : Dtype(0);
    if (l >= 0) {
      const Dtype p = prob[(i / inner) * C * inner + l * inner + i % inner];
      loss[i] = -log(max(p, ND_FLT_MIN));
      valid[i] = Dtype(1);
    }
  }
}

KERNEL(softmax_loss_backward, (const index_t n, const Dtype* prob, const Dtype* label,
                               const Dtype* top_diff, Dtype* dx, const index_t C,
                               const index_t inner, const index_t has_ignore,
                               const index_t ignore_label, const Dtype inv_norm)) {
  KERNEL_LOOP(i) {
    index_t c;
    const index_t l = class_and_label(i, label, C, inner, has_ignore, ignore_label, &c);
    if (l < 0) {
      dx[i] = Dtype(0);
    } else {
      const Dtype g = prob[i] - (c == l ? Dtype(1) : Dtype(0));
      dx[i] = g * top_diff[0] * inv_norm;
    }
  }
}
