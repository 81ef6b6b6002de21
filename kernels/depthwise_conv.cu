// Direct depthwise (group == channels) 2-D convolution, no column matrix: depthwise
// Convolutions (MobileNet's, also with a channel multiplier: Co = mult Ci output channels, the
// output channel co reading input channel co / mult) and FCN's bilinear upsampling
// (Deconvolution with group = channels), see netdef/layers/base_conv.py. Geometry as in
// im2col.cu.
//
// One filter per output channel, w: (Co, kh, kw); "in" is the (N, Ci, H, W) side and "out" the
// (N, Co, OH, OW) side of the convolution:
//   dw_conv_forward:      out[n,co,oh,ow] = sum_{ki,kj} w[co,ki,kj] in[n,co/mult,h(oh,ki),w(ow,kj)]
//   dw_conv_backward:     in[n,c,h,w] = sum over co = c mult .. c mult + mult - 1 and the taps
//                         hitting (h, w) of w[co,ki,kj] out[n,co,oh,ow]
//                         (Convolution's backward-data, Deconvolution's forward: FCN's bilinear
//                          upsampling with group = channels runs here, not as per-group GEMMs)
//   dw_conv_weight_partial: partial[(co kh + ki) kw + kj, p] = sum over image rows r = p, p + parts, ...
//                         of (n, oh) of sum_ow out[n,co,oh,ow] in[n,co/mult,h,w]  (summed over p by
//                         the caller)
// An iteration takes `tile` outputs of one plane (forward, backward) or one tap's share of the
// rows (weight gradient): one output per GPU thread (tile 1), whole planes on the CPU, where a
// row is split into its border, where taps fall in the padding and are checked, and its
// interior, which reads no padding and vectorizes; 3x3 kernels at stride 1 or 2 (MobileNet's)
// keep their nine taps in registers and make one pass per output row (or per plane, dw_plane).
#include "common.cuh"
#include "conv_taps.cuh"

// The taps [*ki0, *ki1] of one axis whose input position b + k d lies in [0, X).
DEVICE_FN void taps_inside(const index_t b, const index_t X, const index_t K, const index_t d,
                           index_t* k0, index_t* k1) {
  *k0 = index_max(fceil_div(-b, d), 0);
  *k1 = index_min(ffloor_div(X - 1 - b, d), K - 1);
}

// One output of a correlation of the plane x (H x W) with the taps w[t ws] (t = ki kw + kj), its
// window starting at row hb (rows ki0..ki1 inside) and column ow sw - pw, the taps checked.
DEVICE_FN Dtype dw_point(const Dtype* x, const Dtype* w, const index_t ws, const index_t hb,
                         const index_t ki0, const index_t ki1, const index_t ow, const index_t W,
                         const index_t kw, const index_t sw, const index_t pw, const index_t dh,
                         const index_t dw) {
  const index_t wb = ow * sw - pw;
  index_t kj0, kj1;
  taps_inside(wb, W, kw, dw, &kj0, &kj1);
  Dtype acc = Dtype(0);
  for (index_t ki = ki0; ki <= ki1; ++ki) {
    const Dtype* row = x + (hb + ki * dh) * W + wb;
    for (index_t kj = kj0; kj <= kj1; ++kj) acc += w[(ki * kw + kj) * ws] * row[kj * dw];
  }
  return acc;
}

// The nine products of a 3x3 window at column c of the rows r0, r1, r2 (dilation 1).
DEVICE_FN Dtype dw3x3_at(const Dtype* r0, const Dtype* r1, const Dtype* r2, const index_t c,
                         const Dtype* k) {
  return k[0] * r0[c] + k[1] * r0[c + 1] + k[2] * r0[c + 2] + k[3] * r1[c] + k[4] * r1[c + 1] +
         k[5] * r1[c + 2] + k[6] * r2[c] + k[7] * r2[c + 1] + k[8] * r2[c + 2];
}

// Interior outputs [lo, hi) of a 3x3 row at stride S (a constant, so the loads vectorize),
// the window of output ow starting at column ow S + c0.
template <int S>
DEVICE_FN void dw3x3_interior(const Dtype* r0, const Dtype* r1, const Dtype* r2, const index_t c0,
                              const Dtype* w, const index_t ws, Dtype* o, const index_t lo,
                              const index_t hi, const index_t add) {
  Dtype k[9];
  for (int t = 0; t < 9; ++t) k[t] = w[t * ws];
  if (add) {
    for (index_t ow = lo; ow < hi; ++ow) o[ow] += dw3x3_at(r0, r1, r2, ow * S + c0, k);
  } else {
    for (index_t ow = lo; ow < hi; ++ow) o[ow] = dw3x3_at(r0, r1, r2, ow * S + c0, k);
  }
}

// Outputs [ow0, ow1) of output row oh of the correlation of the plane x (H x W) with the taps
// w[t ws] (ws = 1; -1 with w at the last tap: the kernel flipped): o[ow] = (or +=, when add)
// sum_{ki,kj} w[(ki kw + kj) ws] x[oh sh - ph + ki dh, ow sw - pw + kj dw], zero outside x.
DEVICE_FN void dw_row(const Dtype* x, const Dtype* w, const index_t ws, Dtype* o, const index_t oh,
                    const index_t ow0, const index_t ow1, const index_t H, const index_t W,
                    const index_t kh, const index_t kw, const index_t sh, const index_t sw,
                    const index_t ph, const index_t pw, const index_t dh, const index_t dw,
                    const index_t add) {
  const index_t hb = oh * sh - ph;
  index_t ki0, ki1;
  taps_inside(hb, H, kh, dh, &ki0, &ki1);
  // interior: ow sw - pw >= 0 and ow sw - pw + (kw - 1) dw <= W - 1
  const index_t lo = index_clamp(fceil_div(pw, sw), ow0, ow1);
  const index_t hi = index_clamp(ffloor_div(W - 1 + pw - (kw - 1) * dw, sw) + 1, lo, ow1);
  for (index_t ow = ow0; ow < lo; ++ow) {
    const Dtype v = dw_point(x, w, ws, hb, ki0, ki1, ow, W, kw, sw, pw, dh, dw);
    o[ow] = add ? o[ow] + v : v;
  }
  for (index_t ow = hi; ow < ow1; ++ow) {
    const Dtype v = dw_point(x, w, ws, hb, ki0, ki1, ow, W, kw, sw, pw, dh, dw);
    o[ow] = add ? o[ow] + v : v;
  }
  if (lo >= hi) return;
  if (kh == 3 && kw == 3 && dh == 1 && dw == 1 && ki0 == 0 && ki1 == 2 && (sw == 1 || sw == 2)) {
    const Dtype* r0 = x + hb * W;
    if (sw == 1)
      dw3x3_interior<1>(r0, r0 + W, r0 + 2 * W, -pw, w, ws, o, lo, hi, add);
    else
      dw3x3_interior<2>(r0, r0 + W, r0 + 2 * W, -pw, w, ws, o, lo, hi, add);
    return;
  }
  if (!add)
    for (index_t ow = lo; ow < hi; ++ow) o[ow] = Dtype(0);
  if (ki0 > ki1) return;
  for (index_t ki = ki0; ki <= ki1; ++ki) {
    const Dtype* row = x + (hb + ki * dh) * W;
    for (index_t kj = 0; kj < kw; ++kj) {
      const Dtype wv = w[(ki * kw + kj) * ws];
      const index_t c = kj * dw - pw;
      if (sw == 1) {
        for (index_t ow = lo; ow < hi; ++ow) o[ow] += wv * row[ow + c];
      } else {
        for (index_t ow = lo; ow < hi; ++ow) o[ow] += wv * row[ow * sw + c];
      }
    }
  }
}

// Outputs [p0, p1) of one (OH x OW) output plane o (flat index oh OW + ow) of dw_row's
// correlation, row by row; a whole plane of a 3x3 "same" correlation (stride 1, pad 1: OH x OW
// = H x W) takes one flat loop over its inner rows, as if a row went on into the next (the
// columns where it does, 0 and W - 1, are computed again afterwards): a 7 x 7 or 14 x 14 plane
// then vectorizes, where its rows are too short to.
SIMD_FN void dw_plane(const Dtype* x, const Dtype* w, const index_t ws, Dtype* o, const index_t p0,
                      const index_t p1, const index_t H, const index_t W, const index_t OH,
                      const index_t OW, const index_t kh, const index_t kw, const index_t sh,
                      const index_t sw, const index_t ph, const index_t pw, const index_t dh,
                      const index_t dw, const index_t add) {
  if (!add && p0 == 0 && p1 == OH * OW && OH == H && OW == W && H >= 3 && W >= 3 && kh == 3 &&
      kw == 3 && sh == 1 && sw == 1 && ph == 1 && pw == 1 && dh == 1 && dw == 1) {
    Dtype k[9];
    for (int t = 0; t < 9; ++t) k[t] = w[t * ws];
    // output p = oh W + ow of rows 1 .. H - 2 reads x[p - W - 1 + ki W + kj]
    for (index_t p = W + 1; p < (H - 1) * W - 1; ++p) o[p] = dw3x3_at(x, x + W, x + 2 * W, p - W - 1, k);
    for (index_t oh = 1; oh < H - 1; ++oh) {
      o[oh * W] = dw_point(x, w, ws, oh - 1, 0, 2, 0, W, 3, 1, 1, 1, 1);
      o[oh * W + W - 1] = dw_point(x, w, ws, oh - 1, 0, 2, W - 1, W, 3, 1, 1, 1, 1);
    }
    dw_row(x, w, ws, o, 0, 0, W, H, W, 3, 3, 1, 1, 1, 1, 1, 1, 0);
    dw_row(x, w, ws, o + (H - 1) * W, H - 1, 0, W, H, W, 3, 3, 1, 1, 1, 1, 1, 1, 0);
    return;
  }
  for (index_t oh = p0 / OW; oh * OW < p1; ++oh) {
    const index_t r0 = oh * OW;
    dw_row(x, w, ws, o + r0, oh, index_max(p0 - r0, 0), index_min(p1 - r0, OW), H, W, kh, kw, sh,
           sw, ph, pw, dh, dw, add);
  }
}

// The forward, finished by the per-channel map y = z es[co] + eb[co] and ReLU of the Net's
// inference fusion (common.cuh's affine_segment; flags 0: the plain convolution) on each segment
// while it is still in cache, y written to eout: out itself (a chain in place), or the top of a
// BatchNorm that reads out (out keeps z). A depthwise convolution's BatchNorm + Scale + ReLU then
// cost no pass of their own.
KERNEL(dw_conv_forward, (const index_t n, const Dtype* in, const Dtype* wt, Dtype* out,
                         const index_t Ci, const index_t H, const index_t W, const index_t OH,
                         const index_t OW, const index_t kh, const index_t kw, const index_t sh,
                         const index_t sw, const index_t ph, const index_t pw, const index_t dh,
                         const index_t dw, const index_t mult, const index_t tile,
                         Dtype* eout, const Dtype* es, const Dtype* eb, const index_t has_scale,
                         const index_t has_bias, const index_t has_relu, const Dtype slope)) {
  // n = N * Co * ntiles (Co = Ci mult): `tile` outputs of one (OH x OW) plane per iteration
  const index_t L = OH * OW;
  const index_t ntiles = (L + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile * kh * kw) {
    index_t p0, p1;
    const index_t plane = row_tile(i, ntiles, tile, L, &p0, &p1);  // img Co + co
    const index_t co = plane % (Ci * mult);
    Dtype* o = out + plane * L;
    // img Co + co over mult is img Ci + co / mult: the input plane
    dw_plane(in + plane / mult * H * W, wt + co * kh * kw, 1, o, p0, p1, H, W, OH, OW,
             kh, kw, sh, sw, ph, pw, dh, dw, 0);
    if (has_scale || has_bias || has_relu)
      affine_segment(o, eout + plane * L, p0, p1, has_scale ? es[co] : Dtype(1), has_bias ? eb[co] : Dtype(0),
                     has_bias, has_relu, slope);
  }
}

// Inputs [w0, w1) of input row h of the adjoint at a stride > 1 (at stride 1 it is dw_row with
// the kernel flipped): o[w] (+)= sum of w[ki,kj] y[oh,ow] over the taps with oh sh - ph + ki dh = h
// and ow sw - pw + kj dw = w, y the (OH x OW) plane. One input (a GPU thread) gathers its taps;
// a longer segment adds each tap's output row into the inputs it reaches, as col2im. Not a
// SIMD_FN: a strided scatter gains nothing from AVX2 (which has no scatter).
DEVICE_FN void dw_adjoint_row(const Dtype* y, const Dtype* wc, Dtype* o, const index_t h,
                            const index_t w0, const index_t w1, const index_t OH, const index_t OW,
                            const index_t kh, const index_t kw, const index_t sh, const index_t sw,
                            const index_t ph, const index_t pw, const index_t dh, const index_t dw,
                            const index_t steph, const index_t stepw, const index_t add) {
  const index_t dow = stepw * dw / sw;
  const index_t doh = steph * dh / sh;
  index_t oh = 0;
  const index_t kif = first_tap(h, kh, sh, ph, dh, steph, 0, OH, &oh);
  const index_t kil = last_tap(h, kh, sh, ph, dh, 0);
  if (w1 - w0 == 1) {
    const index_t w = w0;
    index_t ow = 0;
    const index_t kjf = first_tap(w, kw, sw, pw, dw, stepw, 0, OW, &ow);
    const index_t kjl = last_tap(w, kw, sw, pw, dw, 0);
    Dtype acc = Dtype(0);
    for (index_t ki = kif; ki <= kil; ki += steph, oh -= doh) {
      const Dtype* row = y + oh * OW;
      index_t owk = ow;
      for (index_t kj = kjf; kj <= kjl; kj += stepw, owk -= dow) acc += wc[ki * kw + kj] * row[owk];
    }
    o[w] = add ? o[w] + acc : acc;
    return;
  }
  if (!add)
    for (index_t w = w0; w < w1; ++w) o[w] = Dtype(0);
  for (index_t ki = kif; ki <= kil; ki += steph, oh -= doh) {
    const Dtype* row = y + oh * OW;
    for (index_t kj = 0; kj < kw; ++kj) {
      const index_t off = kj * dw - pw;  // w = ow sw + off
      const index_t lo = index_max(fceil_div(w0 - off, sw), 0);
      const index_t hi = index_min(ffloor_div(w1 - 1 - off, sw), OW - 1);
      const Dtype wv = wc[ki * kw + kj];
      Dtype* ow_at = o + off;
      for (index_t ow = lo; ow <= hi; ++ow) ow_at[ow * sw] += wv * row[ow];
    }
  }
}

KERNEL(dw_conv_backward, (const index_t n, const Dtype* out, const Dtype* wt, Dtype* in,
                          const index_t Ci, const index_t H, const index_t W, const index_t OH,
                          const index_t OW, const index_t kh, const index_t kw, const index_t sh,
                          const index_t sw, const index_t ph, const index_t pw, const index_t dh,
                          const index_t dw, const index_t mult, const index_t steph,
                          const index_t stepw, const index_t tile)) {
  // n = N * Ci * ntiles: `tile` inputs of one (H x W) plane per iteration
  const index_t L = H * W;
  const index_t ntiles = (L + tile - 1) / tile;
  const index_t taps = kh * kw;
  KERNEL_LOOP_WORK(i, tile * taps * mult) {
    index_t p0, p1;
    const index_t plane = row_tile(i, ntiles, tile, L, &p0, &p1);  // img Ci + c
    const index_t co0 = plane % Ci * mult;  // the first output channel of input channel c
    const Dtype* y = out + plane * mult * OH * OW;  // (img Co + co0) OH OW
    Dtype* o = in + plane * L;
    for (index_t j = 0; j < mult; ++j) {
      const Dtype* wc = wt + (co0 + j) * taps;
      if (sh == 1 && sw == 1) {  // the forward correlation of y with the kernel flipped
        dw_plane(y + j * OH * OW, wc + taps - 1, -1, o, p0, p1, OH, OW, H, W, kh, kw, 1, 1,
                 dh * (kh - 1) - ph, dw * (kw - 1) - pw, dh, dw, j);
      } else {
        for (index_t h = p0 / W; h * W < p1; ++h)
          dw_adjoint_row(y + j * OH * OW, wc, o + h * W, h, index_max(p0 - h * W, 0),
                         index_min(p1 - h * W, W), OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, steph,
                         stepw, j);
      }
    }
  }
}

// One tap's share of a weight gradient: sum over the rows q = p, p + parts, ... < N OH (image,
// output row) of sum_ow y[ow] x[ow sw + wb], y the output row, x the input row the tap reads.
SIMD_FN Dtype dw_weight_tap(const Dtype* in, const Dtype* out, const index_t ki, const index_t wb,
                            const index_t p, const index_t parts, const index_t N,
                            const index_t plane_in, const index_t plane_out, const index_t H,
                            const index_t W, const index_t OH, const index_t OW, const index_t sh,
                            const index_t sw, const index_t ph, const index_t dh, const index_t dw,
                            const index_t Ci, const index_t Co) {
  const index_t ow0 = index_max(fceil_div(-wb, sw), 0);
  const index_t ow1 = index_min(ffloor_div(W - 1 - wb, sw), OW - 1) + 1;
  Dtype acc = Dtype(0);
  if (ow0 >= ow1) return acc;
  for (index_t q = p; q < N * OH; q += parts) {
    const index_t oh = q % OH;
    const index_t img = q / OH;
    const index_t h = oh * sh - ph + ki * dh;
    if (h < 0 || h >= H) continue;
    const Dtype* y = out + ((img * Co + plane_out) * OH + oh) * OW;
    const Dtype* x = in + ((img * Ci + plane_in) * H + h) * W + wb;
    Dtype s = Dtype(0);
    if (sw == 1) {
      SIMD_SUM(s)
      for (index_t ow = ow0; ow < ow1; ++ow) s += y[ow] * x[ow];
    } else if (sw == 2) {
      SIMD_SUM(s)
      for (index_t ow = ow0; ow < ow1; ++ow) s += y[ow] * x[2 * ow];
    } else {
      for (index_t ow = ow0; ow < ow1; ++ow) s += y[ow] * x[ow * sw];
    }
    acc += s;
  }
  return acc;
}

KERNEL(dw_conv_weight_partial, (const index_t n, const Dtype* in, const Dtype* out,
                                Dtype* partial, const index_t N, const index_t Ci, const index_t H,
                                const index_t W, const index_t OH, const index_t OW,
                                const index_t kh, const index_t kw, const index_t sh,
                                const index_t sw, const index_t ph, const index_t pw,
                                const index_t dh, const index_t dw, const index_t mult,
                                const index_t parts)) {
  // n = Co * kh * kw * parts; the rows (img, oh) of one channel are split over the parts (1 on
  // the CPU: an iteration sums all rows of one tap, the threads taking taps, no atomics)
  KERNEL_LOOP_WORK(i, N * OH * OW / parts) {
    const index_t p = i % parts;
    const index_t tap = i / parts;
    const index_t kj = tap % kw;
    const index_t ki = (tap / kw) % kh;
    const index_t co = tap / (kw * kh);
    partial[i] = dw_weight_tap(in, out, ki, kj * dw - pw, p, parts, N, co / mult, co, H, W, OH, OW,
                               sh, sw, ph, dh, dw, Ci, Ci * mult);
  }
}
