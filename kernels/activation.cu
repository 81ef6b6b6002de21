// Elementwise activation ("neuron") layers, forward and backward side by side.
//   ReLU:    y = x > 0 ? x : slope x                   dx = dy (x > 0 ? 1 : slope)
//   Sigmoid: y = 1 / (1 + e^-x)                          dx = dy y (1 - y)
//   TanH:    y = tanh x                                  dx = dy (1 - y^2)
//   AbsVal:  y = |x|                                     dx = dy sign(x)       (sign(0) = 0)
//   Power:   y = (shift + scale x)^p                     dx = dy p scale (shift + scale x)^(p-1)
//   Exp:     y = outer e^(inner x)                       dx = dy y inner
//   Log:     y = log(shift + scale x) * base_scale       dx = dy scale base_scale / (shift + scale x)
//   BNLL:    y = log(1 + e^x)                            dx = dy sigmoid(x) = dy (1 - e^-y)
//   ELU:     y = x > 0 ? x : alpha (e^x - 1)             dx = dy (x > 0 ? 1 : y + alpha)
//   PReLU:   y = x > 0 ? x : a_c x                       dx = dy (x > 0 ? 1 : a_c)
//                                                        da_c += sum dy x [x <= 0]
//   Threshold: y = x > t ? 1 : 0                         (no backward kernel: dx = 0)
//   Clip:    y = min(max(x, lo), hi)                     dx = dy [lo <= x <= hi]
//   Swish:   y = x sigmoid(beta x)                       dx = dy (beta y + s (1 - beta y)),
//                                                        s = sigmoid(beta x)
// Backward passes read the forward output y where y determines the derivative, so that the
// layer can run in place; the others read x (the layer keeps a copy of x when in place).
#include "common.cuh"

KERNEL(relu_forward, (const index_t n, const Dtype* x, Dtype* y, const Dtype slope)) {
  KERNEL_LOOP(i) { y[i] = x[i] > Dtype(0) ? x[i] : x[i] * slope; }
}

// Reads the forward *output* y: with slope >= 0, y > 0 exactly where x > 0, so the
// gradient is right for in-place ReLU, where x has been overwritten.
KERNEL(relu_backward, (const index_t n, const Dtype* dy, const Dtype* y, Dtype* dx, const Dtype slope)) {
  KERNEL_LOOP(i) { dx[i] = y[i] > Dtype(0) ? dy[i] : dy[i] * slope; }
}

// ---- Sigmoid: exp(-x) overflowing to inf for very negative x gives the right limit 0 --------
KERNEL(sigmoid_forward, (const index_t n, const Dtype* x, Dtype* y)) {
  KERNEL_LOOP(i) { y[i] = Dtype(1) / (Dtype(1) + exp(-x[i])); }
}

KERNEL(sigmoid_backward, (const index_t n, const Dtype* dy, const Dtype* y, Dtype* dx)) {
  KERNEL_LOOP(i) { dx[i] = dy[i] * y[i] * (Dtype(1) - y[i]); }
}

// ---- TanH ------------------------------------------------------------------------------------
KERNEL(tanh_forward, (const index_t n, const Dtype* x, Dtype* y)) {
  KERNEL_LOOP(i) { y[i] = tanh(x[i]); }
}

KERNEL(tanh_backward, (const index_t n, const Dtype* dy, const Dtype* y, Dtype* dx)) {
  KERNEL_LOOP(i) { dx[i] = dy[i] * (Dtype(1) - y[i] * y[i]); }
}

// ---- AbsVal ----------------------------------------------------------------------------------
KERNEL(absval_forward, (const index_t n, const Dtype* x, Dtype* y)) {
  KERNEL_LOOP(i) { y[i] = x[i] < Dtype(0) ? -x[i] : x[i]; }
}

KERNEL(absval_backward, (const index_t n, const Dtype* dy, const Dtype* x, Dtype* dx)) {
  KERNEL_LOOP(i) { dx[i] = dy[i] * sign_of(x[i]); }
}

// ---- Power -----------------------------------------------------------------------------------
// b^p with the common exponents exact (pow(b, 2) is not always b * b on every device).
DEVICE_FN Dtype act_power_of(const Dtype b, const Dtype p) {
  if (p == Dtype(1)) return b;
  if (p == Dtype(2)) return b * b;
  return pow(b, p);
}

KERNEL(power_forward, (const index_t n, const Dtype* x, Dtype* y, const Dtype power,
                       const Dtype scale, const Dtype shift)) {
  KERNEL_LOOP(i) { y[i] = act_power_of(shift + scale * x[i], power); }
}

// With power * scale == 0 the output is constant and dx = 0 (Caffe's rule); with power == 1
// the derivative is the constant scale and x is not read.
KERNEL(power_backward, (const index_t n, const Dtype* dy, const Dtype* x, Dtype* dx,
                        const Dtype power, const Dtype scale, const Dtype shift)) {
  const Dtype diff_scale = power * scale;
  KERNEL_LOOP(i) {
    if (diff_scale == Dtype(0)) {
      dx[i] = Dtype(0);
    } else if (power == Dtype(1)) {
      dx[i] = dy[i] * diff_scale;
    } else {
      dx[i] = dy[i] * diff_scale * act_power_of(shift + scale * x[i], power - Dtype(1));
    }
  }
}

// ---- Exp: y = base^(shift + scale x) = outer * e^(inner x), inner = scale ln(base),
//      outer = base^shift -----------------------------------------------------------------------
KERNEL(exp_forward, (const index_t n, const Dtype* x, Dtype* y, const Dtype inner, const Dtype outer)) {
  KERNEL_LOOP(i) { y[i] = outer * exp(inner * x[i]); }
}

KERNEL(exp_backward, (const index_t n, const Dtype* dy, const Dtype* y, Dtype* dx, const Dtype inner)) {
  KERNEL_LOOP(i) { dx[i] = dy[i] * y[i] * inner; }
}

// ---- Log: y = log_base(shift + scale x), base_scale = 1 / ln(base) ----------------------------
KERNEL(log_forward, (const index_t n, const Dtype* x, Dtype* y, const Dtype base_scale,
                     const Dtype scale, const Dtype shift)) {
  KERNEL_LOOP(i) { y[i] = log(shift + scale * x[i]) * base_scale; }
}

KERNEL(log_backward, (const index_t n, const Dtype* dy, const Dtype* x, Dtype* dx,
                      const Dtype base_scale, const Dtype scale, const Dtype shift)) {
  const Dtype num = scale * base_scale;
  KERNEL_LOOP(i) { dx[i] = dy[i] * num / (shift + scale * x[i]); }
}

// ---- BNLL: softplus, computed without overflow on either side ---------------------------------
KERNEL(bnll_forward, (const index_t n, const Dtype* x, Dtype* y)) {
  KERNEL_LOOP(i) {
    const Dtype v = x[i];
    y[i] = v > Dtype(0) ? v + log1p(exp(-v)) : log1p(exp(v));
  }
}

// sigmoid(x) = 1 - e^-y since e^y = 1 + e^x; expm1 keeps it exact for very negative x.
KERNEL(bnll_backward, (const index_t n, const Dtype* dy, const Dtype* y, Dtype* dx)) {
  KERNEL_LOOP(i) { dx[i] = -dy[i] * expm1(-y[i]); }
}

// ---- ELU -------------------------------------------------------------------------------------
KERNEL(elu_forward, (const index_t n, const Dtype* x, Dtype* y, const Dtype alpha)) {
  KERNEL_LOOP(i) { y[i] = x[i] > Dtype(0) ? x[i] : alpha * expm1(x[i]); }
}

// x only decides the branch: with alpha >= 0, y > 0 exactly where x > 0, so the caller may pass
// y for x (in-place ELU).
KERNEL(elu_backward, (const index_t n, const Dtype* dy, const Dtype* x, const Dtype* y, Dtype* dx,
                      const Dtype alpha)) {
  KERNEL_LOOP(i) { dx[i] = x[i] > Dtype(0) ? dy[i] : dy[i] * (y[i] + alpha); }
}

// ---- PReLU: rows r of `inner` values (the bottom seen as (N * channels, inner)), channel
//      c = r % channels / div; div = channels when the slope is shared. Iteration i takes `tile`
//      values of a row (common.cuh's row_tile: one on the GPU, a row segment on the CPU).
KERNEL(prelu_forward, (const index_t n, const Dtype* x, const Dtype* slope, Dtype* y,
                       const index_t channels, const index_t inner, const index_t div,
                       const index_t tile)) {
  const index_t ntiles = (inner + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t first, last;
    const index_t r = row_tile(i, ntiles, tile, inner, &first, &last);
    const Dtype a = slope[r % channels / div];
    const Dtype* xr = x + r * inner;
    Dtype* yr = y + r * inner;
    for (index_t t = first; t < last; ++t) yr[t] = xr[t] > Dtype(0) ? xr[t] : xr[t] * a;
  }
}

KERNEL(prelu_backward, (const index_t n, const Dtype* dy, const Dtype* x, const Dtype* slope,
                        Dtype* dx, const index_t channels, const index_t inner, const index_t div,
                        const index_t tile)) {
  const index_t ntiles = (inner + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t first, last;
    const index_t r = row_tile(i, ntiles, tile, inner, &first, &last);
    const Dtype a = slope[r % channels / div];
    const Dtype* dyr = dy + r * inner;
    const Dtype* xr = x + r * inner;
    Dtype* dxr = dx + r * inner;
    for (index_t t = first; t < last; ++t) dxr[t] = xr[t] > Dtype(0) ? dyr[t] : dyr[t] * a;
  }
}

// Slope gradient, first stage: the rows of dy and x seen as (rows, inner) arrays; thread i
// sums row r = i / parts over the elements t = i % parts, t + parts, ... of the row (strided,
// so that neighbouring GPU threads read neighbouring addresses; parts = 1 on the CPU, where
// the loop vectorizes). Finished by scale.cu's reduce_partials.
// On the CPU's contiguous rows, x [x <= 0] = (x - |x|) / 2 without a branch (GCC does not
// vectorize a select in an omp simd reduction); the halving is exact.
DEVICE_FN Dtype prelu_slice_slope(const Dtype* dy, const Dtype* x, const index_t k,
                                  const index_t parts, const index_t len) {
  Dtype s = Dtype(0);
  if (parts == 1) {
    SIMD_SUM(s)
    for (index_t t = 0; t < len; ++t) s += dy[t] * (x[t] - fabs(x[t]));
    s *= Dtype(0.5);
  } else {
    for (index_t t = k; t < len; t += parts)
      if (x[t] <= Dtype(0)) s += dy[t] * x[t];
  }
  return s;
}

KERNEL(prelu_slope_partial, (const index_t n, const Dtype* dy, const Dtype* x, Dtype* partial,
                             const index_t inner, const index_t parts)) {
  KERNEL_LOOP_WORK(i, inner / parts) {
    const index_t off = (i / parts) * inner;
    partial[i] = prelu_slice_slope(dy + off, x + off, i % parts, parts, inner);
  }
}

// ---- Threshold, Clip, Swish ------------------------------------------------------------------
KERNEL(threshold_forward, (const index_t n, const Dtype* x, Dtype* y, const Dtype threshold)) {
  KERNEL_LOOP(i) { y[i] = x[i] > threshold ? Dtype(1) : Dtype(0); }
}

// NaN stays NaN (neither comparison holds), as with Caffe's max/min order.
KERNEL(clip_forward, (const index_t n, const Dtype* x, Dtype* y, const Dtype lo, const Dtype hi)) {
  KERNEL_LOOP(i) {
    const Dtype v = x[i];
    y[i] = v < lo ? lo : (v > hi ? hi : v);
  }
}

// The bounds themselves pass the gradient (Caffe's rule), so at x = lo or hi dx = dy.
KERNEL(clip_backward, (const index_t n, const Dtype* dy, const Dtype* x, Dtype* dx,
                       const Dtype lo, const Dtype hi)) {
  KERNEL_LOOP(i) { dx[i] = (x[i] >= lo && x[i] <= hi) ? dy[i] : Dtype(0); }
}

KERNEL(swish_forward, (const index_t n, const Dtype* x, Dtype* y, const Dtype beta)) {
  KERNEL_LOOP(i) { y[i] = x[i] / (Dtype(1) + exp(-beta * x[i])); }
}

KERNEL(swish_backward, (const index_t n, const Dtype* dy, const Dtype* x, const Dtype* y,
                        Dtype* dx, const Dtype beta)) {
  KERNEL_LOOP(i) {
    const Dtype s = Dtype(1) / (Dtype(1) + exp(-beta * x[i]));
    const Dtype by = beta * y[i];
    dx[i] = dy[i] * (by + s * (Dtype(1) - by));
  }
}
