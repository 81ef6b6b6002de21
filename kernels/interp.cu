// Interp (DeepLab): bilinear resize with aligned corners of each of the `planes` (N * C)
// H x W planes. Only the window [y0, y0 + Hi) x [x0, x0 + Wi) of the input is resized
// (y0 = -pad_beg, Hi = H + pad_beg + pad_end: DeepLab's non-positive pads crop).
// Output (h2, w2) of Ho x Wo reads the input at the real position (rh h2, rw w2) in the
// window, rh = (Hi - 1) / (Ho - 1) (0 when Ho = 1), rw likewise, computed in float as DeepLab
// does:  h1 = floor(rh h2), lh = rh h2 - h1, the next row h1 + (h1 < Hi - 1), and
//   y = (1 - lh) ((1 - lw) v[h1, w1] + lw v[h1, w1+]) + lh ((1 - lw) v[h1+, w1] + lw v[h1+, w1+])
// Backward is the adjoint, written as a gather: input (hi, wi) sums dy over the outputs whose
// taps reach it, found in a range of h2 (w2) around hi / rh and checked with the forward's own
// arithmetic; inputs outside the window get 0.
#include "common.cuh"

// The taps of output coordinate o: the first at *lo with weight *w_lo, the second at *lo + *step
// with weight *w_hi (DeepLab: the fraction in float, its complement in Dtype).
DEVICE_FN void interp_taps(const index_t o, const float r, const index_t len_in, index_t* lo,
                           index_t* step, Dtype* w_lo, Dtype* w_hi) {
  const float pos = r * (float)o;
  const index_t i = (index_t)pos;
  *lo = i;
  *step = i < len_in - 1 ? 1 : 0;
  *w_hi = Dtype(pos - (float)i);
  *w_lo = Dtype(1) - *w_hi;
}

KERNEL(interp_forward, (const index_t n, const Dtype* x, Dtype* y, const index_t H,
                        const index_t W, const index_t y0, const index_t x0, const index_t Hi,
                        const index_t Wi, const index_t Ho, const index_t Wo, const Dtype rh_,
                        const Dtype rw_)) {
  const float rh = (float)rh_, rw = (float)rw_;
  KERNEL_LOOP(k) {
    const index_t w2 = k % Wo, h2 = (k / Wo) % Ho, p = k / (Wo * Ho);
    index_t h1, hs, w1, ws;
    Dtype a0, a1, b0, b1;
    interp_taps(h2, rh, Hi, &h1, &hs, &a0, &a1);
    interp_taps(w2, rw, Wi, &w1, &ws, &b0, &b1);
    const Dtype* v = x + p * H * W + (y0 + h1) * W + x0 + w1;
    y[k] = a0 * (b0 * v[0] + b1 * v[ws]) + a1 * (b0 * v[hs * W] + b1 * v[hs * W + ws]);
  }
}

// The weight with which output coordinate o reads input coordinate i (0, one tap or both).
DEVICE_FN Dtype interp_weight(const index_t o, const index_t i, const float r, const index_t len_in) {
  index_t lo, step;
  Dtype w_lo, w_hi;
  interp_taps(o, r, len_in, &lo, &step, &w_lo, &w_hi);
  Dtype wgt = Dtype(0);
  if (lo == i) wgt += w_lo;
  if (lo + step == i) wgt += w_hi;
  return wgt;
}

// The outputs o whose taps may reach input i: r o in (i - 1, i + 1), widened by one for the
// float rounding (interp_weight decides exactly).
DEVICE_FN void interp_range(const index_t i, const float r, const index_t len_out, index_t* first,
                            index_t* last) {
  if (r <= 0.0f) {
    *first = 0;
    *last = len_out;
    return;
  }
  const index_t a = (index_t)((float)(i - 1) / r) - 1;
  const index_t b = (index_t)((float)(i + 1) / r) + 2;
  *first = index_clamp(a, 0, len_out);
  *last = index_clamp(b, 0, len_out);
}

KERNEL(interp_backward, (const index_t n, const Dtype* dy, Dtype* dx, const index_t H,
                         const index_t W, const index_t y0, const index_t x0, const index_t Hi,
                         const index_t Wi, const index_t Ho, const index_t Wo, const Dtype rh_,
                         const Dtype rw_)) {
  const float rh = (float)rh_, rw = (float)rw_;
  KERNEL_LOOP(k) {
    const index_t w = k % W, h = (k / W) % H, p = k / (W * H);
    const index_t hi = h - y0, wi = w - x0;
    Dtype s = Dtype(0);
    if (hi >= 0 && hi < Hi && wi >= 0 && wi < Wi) {
      index_t h_first, h_last, w_first, w_last;
      interp_range(hi, rh, Ho, &h_first, &h_last);
      interp_range(wi, rw, Wo, &w_first, &w_last);
      const Dtype* g = dy + p * Ho * Wo;
      for (index_t h2 = h_first; h2 < h_last; ++h2) {
        const Dtype a = interp_weight(h2, hi, rh, Hi);
        if (a == Dtype(0)) continue;
        Dtype row = Dtype(0);
        for (index_t w2 = w_first; w2 < w_last; ++w2) {
          const Dtype b = interp_weight(w2, wi, rw, Wi);
          if (b != Dtype(0)) row += b * g[h2 * Wo + w2];
        }
        s += a * row;
      }
    }
    dx[k] = s;
  }
}
