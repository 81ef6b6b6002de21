// The solvers' update rules, one fused pass per param blob (netdef/solver.py).
//
// Every kernel first forms the gradient the rule sees,
//     g = diff * scale + decay * r(w),   r(w) = w (L2) or sign(w) (L1), skipped when decay == 0,
// where scale = (gradient clipping factor) / iter_size, then computes the update u, writes it
// to diff (as Caffe leaves it there) and applies it: w -= u. `rate` is the local learning rate
// (base rate of the policy times the param's lr_mult).
//   SGD:      h = rate g + momentum h;                          u = h
//   Nesterov: h' = momentum h + rate g;                         u = (1 + momentum) h' - momentum h
//   AdaGrad:  h += g^2;                                         u = rate g / (sqrt(h) + delta)
//   RMSProp:  h = rms_decay h + (1 - rms_decay) g^2;            u = rate g / (sqrt(h) + delta)
//   AdaDelta: h = m h + (1 - m) g^2;  v = g sqrt((h2 + delta) / (h + delta));
//             h2 = m h2 + (1 - m) v^2;                          u = rate v
//   Adam:     m1 = b1 m1 + (1 - b1) g;  m2 = b2 m2 + (1 - b2) g^2;
//             u = rate_t m1 / (sqrt(m2) + eps),  rate_t = rate sqrt(1 - b2^t) / (1 - b1^t)
#include "common.cuh"

DEVICE_FN Dtype solver_gradient(const Dtype diff, const Dtype w, const Dtype scale,
                                const Dtype decay, const index_t l1) {
  Dtype g = diff * scale;
  if (decay != Dtype(0)) {
    const Dtype r = l1 ? sign_of(w) : w;
    g += decay * r;
  }
  return g;
}

KERNEL(sgd_update, (const index_t n, Dtype* diff, Dtype* w, Dtype* h, const Dtype scale,
                    const Dtype decay, const index_t l1, const Dtype rate, const Dtype momentum)) {
  KERNEL_LOOP(i) {
    const Dtype g = solver_gradient(diff[i], w[i], scale, decay, l1);
    const Dtype u = rate * g + momentum * h[i];
    h[i] = u;
    diff[i] = u;
    w[i] -= u;
  }
}

KERNEL(nesterov_update, (const index_t n, Dtype* diff, Dtype* w, Dtype* h, const Dtype scale,
                         const Dtype decay, const index_t l1, const Dtype rate,
                         const Dtype momentum)) {
  KERNEL_LOOP(i) {
    const Dtype g = solver_gradient(diff[i], w[i], scale, decay, l1);
    const Dtype old = h[i];
    const Dtype now = momentum * old + rate * g;
    const Dtype u = (Dtype(1) + momentum) * now - momentum * old;
    h[i] = now;
    diff[i] = u;
    w[i] -= u;
  }
}

KERNEL(adagrad_update, (const index_t n, Dtype* diff, Dtype* w, Dtype* h, const Dtype scale,
                        const Dtype decay, const index_t l1, const Dtype rate, const Dtype delta)) {
  KERNEL_LOOP(i) {
    const Dtype g = solver_gradient(diff[i], w[i], scale, decay, l1);
    const Dtype hi = h[i] + g * g;
    const Dtype u = rate * (g / (sqrt(hi) + delta));
    h[i] = hi;
    diff[i] = u;
    w[i] -= u;
  }
}

KERNEL(rmsprop_update, (const index_t n, Dtype* diff, Dtype* w, Dtype* h, const Dtype scale,
                        const Dtype decay, const index_t l1, const Dtype rate,
                        const Dtype rms_decay, const Dtype delta)) {
  KERNEL_LOOP(i) {
    const Dtype g = solver_gradient(diff[i], w[i], scale, decay, l1);
    const Dtype hi = rms_decay * h[i] + (Dtype(1) - rms_decay) * (g * g);
    const Dtype u = rate * (g / (sqrt(hi) + delta));
    h[i] = hi;
    diff[i] = u;
    w[i] -= u;
  }
}

KERNEL(adadelta_update, (const index_t n, Dtype* diff, Dtype* w, Dtype* h, Dtype* h2,
                         const Dtype scale, const Dtype decay, const index_t l1, const Dtype rate,
                         const Dtype momentum, const Dtype delta)) {
  KERNEL_LOOP(i) {
    const Dtype g = solver_gradient(diff[i], w[i], scale, decay, l1);
    const Dtype hi = momentum * h[i] + (Dtype(1) - momentum) * (g * g);
    const Dtype v = g * sqrt((h2[i] + delta) / (hi + delta));
    h2[i] = momentum * h2[i] + (Dtype(1) - momentum) * (v * v);
    h[i] = hi;
    const Dtype u = rate * v;
    diff[i] = u;
    w[i] -= u;
  }
}

KERNEL(adam_update, (const index_t n, Dtype* diff, Dtype* w, Dtype* m1, Dtype* m2,
                     const Dtype scale, const Dtype decay, const index_t l1, const Dtype rate_t,
                     const Dtype beta1, const Dtype beta2, const Dtype eps)) {
  KERNEL_LOOP(i) {
    const Dtype g = solver_gradient(diff[i], w[i], scale, decay, l1);
    const Dtype a = beta1 * m1[i] + (Dtype(1) - beta1) * g;
    const Dtype b = beta2 * m2[i] + (Dtype(1) - beta2) * (g * g);
    const Dtype u = rate_t * (a / (sqrt(b) + eps));
    m1[i] = a;
    m2[i] = b;
    diff[i] = u;
    w[i] -= u;
  }
}
