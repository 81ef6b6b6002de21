// The per-element parts of the loss layers that are not SoftmaxWithLoss: every forward kernel
// writes one loss term (and a valid / bad flag) per element or per row, which the layer sums;
// every backward kernel writes each input element's gradient (gathers, no atomics).
//
//   SigmoidCrossEntropyLoss, per element (x logit, t target):
//     loss = log(1 + exp(-|x|)) + max(x, 0) - x t     (= -t log s - (1 - t) log(1 - s), s =
//     sigmoid(x), written so that exp never overflows);   dx = (s - t) * top_diff * inv_norm
//   MultinomialLogisticLoss, per row of `dim` probabilities p with label l:
//     loss = -log(max(p_l, LOG_THRESHOLD));   dx_c = -[c == l] / max(p_c, LOG_THRESHOLD) * scale
//   InfogainLoss, per (outer, inner) position of softmax probabilities p over C classes:
//     loss = -sum_c H[l, c] log(max(p_c, LOG_THRESHOLD));
//     dx_c = (p_c * rowsum(H)[l] - H[l, c]) * top_diff * inv_norm
//   HingeLoss, per element of a row with label l: d_c = max(0, 1 - s_c x_c), s_c = 1 if c == l
//     else -1;  L1: loss d, dx = -s_c [d > 0];  L2: loss d^2, dx = -2 s_c d   (times scale)
//   ContrastiveLoss, per row pair (a, b), y similar: see contrastive_forward.
// Labels go through read_label (common.cuh): bad labels set a flag the layer reports.
#include "common.cuh"

// Caffe's kLOG_THRESHOLD: the floor of probabilities before a log.
#define ND_LOG_THRESHOLD Dtype(1e-20)

// Caffe compares the target, cast to an integer, with ignore_label.
DEVICE_FN bool target_ignored(const Dtype t, const index_t has_ignore, const index_t ignore_label) {
  return has_ignore && t > Dtype(-9.0e18) && t < Dtype(9.0e18) && (index_t)t == ignore_label;
}

KERNEL(sigmoid_ce_forward, (const index_t n, const Dtype* x, const Dtype* t, Dtype* loss,
                            Dtype* valid, const index_t has_ignore, const index_t ignore_label)) {
  KERNEL_LOOP(i) {
    if (target_ignored(t[i], has_ignore, ignore_label)) {
      loss[i] = Dtype(0);
      valid[i] = Dtype(0);
    } else {
      const Dtype v = x[i];
      loss[i] = log1p(exp(-(v >= Dtype(0) ? v : -v))) + (v > Dtype(0) ? v : Dtype(0)) - v * t[i];
      valid[i] = Dtype(1);
    }
  }
}

KERNEL(sigmoid_ce_backward, (const index_t n, const Dtype* x, const Dtype* t,
                             const Dtype* top_diff, Dtype* dx, const index_t has_ignore,
                             const index_t ignore_label, const Dtype inv_norm)) {
  KERNEL_LOOP(i) {
    if (target_ignored(t[i], has_ignore, ignore_label)) {
      dx[i] = Dtype(0);
    } else {
      const Dtype s = Dtype(1) / (Dtype(1) + exp(-x[i]));
      dx[i] = (s - t[i]) * top_diff[0] * inv_norm;
    }
  }
}

KERNEL(multinomial_logistic_forward, (const index_t n, const Dtype* prob, const Dtype* label,
                                      Dtype* loss, Dtype* bad, const index_t dim)) {
  KERNEL_LOOP(i) {
    const index_t l = read_label(label[i], dim, 0, 0);
    bad[i] = l < 0 ? Dtype(1) : Dtype(0);
    loss[i] = l < 0 ? Dtype(0) : -log(max(prob[i * dim + l], ND_LOG_THRESHOLD));
  }
}

KERNEL(multinomial_logistic_backward, (const index_t n, const Dtype* prob, const Dtype* label,
                                       const Dtype* top_diff, Dtype* dx, const index_t dim,
                                       const Dtype scale)) {
  KERNEL_LOOP(i) {
    const index_t l = read_label(label[i / dim], dim, 0, 0);
    dx[i] = (i % dim == l) ? -top_diff[0] * scale / max(prob[i], ND_LOG_THRESHOLD) : Dtype(0);
  }
}

KERNEL(infogain_forward, (const index_t n, const Dtype* prob, const Dtype* label, const Dtype* H,
                          Dtype* loss, Dtype* valid, Dtype* bad, const index_t C,
                          const index_t inner, const index_t has_ignore,
                          const index_t ignore_label)) {
  KERNEL_LOOP_WORK(i, C) {
    const index_t l = read_label(label[i], C, has_ignore, ignore_label);
    bad[i] = l == LABEL_INVALID ? Dtype(1) : Dtype(0);
    valid[i] = l >= 0 ? Dtype(1) : Dtype(0);
    Dtype s = Dtype(0);
    if (l >= 0) {
      const index_t base = (i / inner) * C * inner + i % inner;
      for (index_t c = 0; c < C; ++c)
        s -= H[l * C + c] * log(max(prob[base + c * inner], ND_LOG_THRESHOLD));
    }
    loss[i] = s;
  }
}

KERNEL(infogain_backward, (const index_t n, const Dtype* prob, const Dtype* label, const Dtype* H,
                           const Dtype* rowsum, const Dtype* top_diff, Dtype* dx, const index_t C,
                           const index_t inner, const index_t has_ignore,
                           const index_t ignore_label, const Dtype inv_norm)) {
  KERNEL_LOOP(i) {
    index_t c;
    const index_t l = class_and_label(i, label, C, inner, has_ignore, ignore_label, &c);
    dx[i] = l < 0 ? Dtype(0) : (prob[i] * rowsum[l] - H[l * C + c]) * top_diff[0] * inv_norm;
  }
}

KERNEL(hinge_forward, (const index_t n, const Dtype* x, const Dtype* label, Dtype* margin,
                       Dtype* bad, const index_t dim)) {
  KERNEL_LOOP(i) {
    const index_t l = read_label(label[i / dim], dim, 0, 0);
    bad[i] = l < 0 ? Dtype(1) : Dtype(0);
    const Dtype v = (i % dim == l) ? -x[i] : x[i];
    margin[i] = max(Dtype(0), Dtype(1) + v);
  }
}

KERNEL(hinge_backward, (const index_t n, const Dtype* margin, const Dtype* label,
                        const Dtype* top_diff, Dtype* dx, const index_t dim, const index_t power,
                        const Dtype scale)) {
  KERNEL_LOOP(i) {
    const index_t l = read_label(label[i / dim], dim, 0, 0);
    const Dtype d = margin[i];
    Dtype g = power == 1 ? (d > Dtype(0) ? Dtype(1) : Dtype(0)) : Dtype(2) * d;
    if (i % dim == l) g = -g;
    dx[i] = g * top_diff[0] * scale;
  }
}

// One row (of C features) per iteration: dist_sq = |a - b|^2, and the row's loss term
//   similar (int(y) != 0): dist_sq
//   dissimilar: legacy_version: max(margin - dist_sq, 0), else max(margin - sqrt(dist_sq), 0)^2
KERNEL(contrastive_forward, (const index_t n, const Dtype* a, const Dtype* b, const Dtype* y,
                             Dtype* dist_sq, Dtype* loss, const index_t C, const Dtype margin,
                             const index_t legacy)) {
  KERNEL_LOOP_WORK(i, C) {
    Dtype s = Dtype(0);
    for (index_t c = 0; c < C; ++c) {
      const Dtype d = a[i * C + c] - b[i * C + c];
      s += d * d;
    }
    dist_sq[i] = s;
    if ((index_t)y[i] != 0) {
      loss[i] = s;
    } else if (legacy) {
      loss[i] = max(margin - s, Dtype(0));
    } else {
      const Dtype m = max(margin - sqrt(s), Dtype(0));
      loss[i] = m * m;
    }
  }
}

// The gradient of bottom a (sign 1) or b (sign -1), alpha = sign * top_diff / num:
//   similar: alpha (a - b);  dissimilar with a positive margin term m: legacy -alpha (a - b),
//   else -alpha m / (dist + 1e-4) (a - b), m = margin - dist (Caffe's epsilon keeps dist = 0
//   finite);  0 otherwise.
KERNEL(contrastive_backward, (const index_t n, const Dtype* a, const Dtype* b, const Dtype* y,
                              const Dtype* dist_sq, const Dtype* top_diff, Dtype* dx,
                              const index_t C, const Dtype margin, const index_t legacy,
                              const Dtype sign_over_num)) {
  KERNEL_LOOP(i) {
    const index_t row = i / C;
    const Dtype alpha = sign_over_num * top_diff[0];
    const Dtype d = a[i] - b[i];
    if ((index_t)y[row] != 0) {
      dx[i] = alpha * d;
    } else if (legacy) {
      dx[i] = margin - dist_sq[row] > Dtype(0) ? -alpha * d : Dtype(0);
    } else {
      const Dtype dist = sqrt(dist_sq[row]);
      const Dtype m = margin - dist;
      dx[i] = m > Dtype(0) ? -alpha * m / (dist + Dtype(1e-4)) * d : Dtype(0);
    }
  }
}
