// Direct depthwise (group == channels) 2-D convolution, no column matrix: FCN's bilinear
// upsampling (Deconvolution with group = channels) and depthwise Convolutions
// (netdef/layers/base_conv.py). Geometry as in im2col.cu.
//
// One filter per channel, w: (C, kh, kw); "in" is the (N, C, H, W) side and "out" the
// (N, C, OH, OW) side of the convolution:
//   dw_conv_forward:      out[n,c,oh,ow] = sum_{ki,kj} w[c,ki,kj] in[n,c,h(oh,ki),w(ow,kj)]
//   dw_conv_backward:     in[n,c,h,w]    = sum over the taps hitting (h, w) of w[c,ki,kj] out[n,c,oh,ow]
//                         (tile columns per iteration, as col2im)
//                         (Convolution's backward-data, Deconvolution's forward: FCN's bilinear
//                          upsampling with group = channels runs here, not as per-group GEMMs)
//   dw_conv_weight_partial: partial[(c kh + ki) kw + kj, p] = sum over image rows r = p, p + parts, ...
//                         of (n, oh) of sum_ow out[n,c,oh,ow] in[n,c,h,w]  (summed over p by the caller)
#include "common.cuh"
#include "conv_taps.cuh"

KERNEL(dw_conv_forward, (const index_t n, const Dtype* in, const Dtype* wt, Dtype* out,
                         const index_t C, const index_t H, const index_t W, const index_t OH,
                         const index_t OW, const index_t kh, const index_t kw, const index_t sh,
                         const index_t sw, const index_t ph, const index_t pw, const index_t dh,
                         const index_t dw)) {
  // n = N * C * OH * OW
  KERNEL_LOOP(i) {
    const index_t ow = i % OW;
    const index_t oh = (i / OW) % OH;
    const index_t r = i / (OW * OH);  // img * C + c
    const index_t c = r % C;
    const index_t hb = oh * sh - ph, wb = ow * sw - pw;
    const index_t ki0 = index_max(fceil_div(-hb, dh), 0), ki1 = index_min(ffloor_div(H - 1 - hb, dh), kh - 1);
    const index_t kj0 = index_max(fceil_div(-wb, dw), 0), kj1 = index_min(ffloor_div(W - 1 - wb, dw), kw - 1);
    const Dtype* inr = in + r * H * W;
    const Dtype* wc = wt + c * kh * kw;
    Dtype acc = Dtype(0);
    for (index_t ki = ki0; ki <= ki1; ++ki) {
      const Dtype* row = inr + (hb + ki * dh) * W + wb;
      for (index_t kj = kj0; kj <= kj1; ++kj) acc += wc[ki * kw + kj] * row[kj * dw];
    }
    out[i] = acc;
  }
}

KERNEL(dw_conv_backward, (const index_t n, const Dtype* out, const Dtype* wt, Dtype* in,
                          const index_t C, const index_t H, const index_t W, const index_t OH,
                          const index_t OW, const index_t kh, const index_t kw, const index_t sh,
                          const index_t sw, const index_t ph, const index_t pw, const index_t dh,
                          const index_t dw, const index_t steph, const index_t stepw,
                          const index_t tile)) {
  // n = N * C * H * ntiles; tile as in col2im
  const index_t ntiles = (W + tile - 1) / tile;
  const index_t dow = stepw * dw / sw;
  const index_t doh = steph * dh / sh;
  KERNEL_LOOP_WORK(i, tile * kh * kw) {
    const index_t t = i % ntiles;
    const index_t h = (i / ntiles) % H;
    const index_t r = i / (ntiles * H);  // img * C + c
    const index_t c = r % C;
    const index_t w0 = t * tile;
    const index_t w1 = index_min(w0 + tile, W);
    index_t oh = 0;
    const index_t kif = first_tap(h, kh, sh, ph, dh, steph, 0, OH, &oh);
    const index_t kil = last_tap(h, kh, sh, ph, dh, 0);
    const Dtype* outr = out + r * OH * OW;
    const Dtype* wc = wt + c * kh * kw;
    Dtype* inr = in + (r * H + h) * W;
    if (tile == 1) {
      const index_t w = w0;
      index_t ow = 0;
      const index_t kjf = first_tap(w, kw, sw, pw, dw, stepw, 0, OW, &ow);
      const index_t kjl = last_tap(w, kw, sw, pw, dw, 0);
      Dtype acc = Dtype(0);
      for (index_t ki = kif; ki <= kil; ki += steph, oh -= doh) {
        const Dtype* row = outr + oh * OW;
        index_t owk = ow;
        for (index_t kj = kjf; kj <= kjl; kj += stepw, owk -= dow) acc += wc[ki * kw + kj] * row[owk];
      }
      inr[w] = acc;
    } else {
      for (index_t w = w0; w < w1; ++w) inr[w] = Dtype(0);
      for (index_t ki = kif; ki <= kil; ki += steph, oh -= doh) {
        const Dtype* row = outr + oh * OW;
        for (index_t kj = 0; kj < kw; ++kj) {
          const index_t off = kj * dw - pw;  // w = ow sw + off
          const index_t lo = index_max(fceil_div(w0 - off, sw), 0);
          const index_t hi = index_min(ffloor_div(w1 - 1 - off, sw), OW - 1);
          const Dtype wv = wc[ki * kw + kj];
          Dtype* iw = inr + off;
          for (index_t ow = lo; ow <= hi; ++ow) iw[ow * sw] += wv * row[ow];
        }
      }
    }
  }
}

KERNEL(dw_conv_weight_partial, (const index_t n, const Dtype* in, const Dtype* out,
                                Dtype* partial, const index_t N, const index_t C, const index_t H,
                                const index_t W, const index_t OH, const index_t OW,
                                const index_t kh, const index_t kw, const index_t sh,
                                const index_t sw, const index_t ph, const index_t pw,
                                const index_t dh, const index_t dw, const index_t parts)) {
  // n = C * kh * kw * parts; the rows (img, oh) of one channel are split over the parts
  KERNEL_LOOP(i) {
    const index_t p = i % parts;
    const index_t tap = i / parts;
    const index_t kj = tap % kw;
    const index_t ki = (tap / kw) % kh;
    const index_t c = tap / (kw * kh);
    const index_t wb = kj * dw - pw;  // w = ow sw + wb
    const index_t ow0 = index_max(fceil_div(-wb, sw), 0);
    const index_t ow1 = index_min(ffloor_div(W - 1 - wb, sw), OW - 1);
    Dtype acc = Dtype(0);
    for (index_t q = p; q < N * OH; q += parts) {
      const index_t oh = q % OH;
      const index_t img = q / OH;
      const index_t h = oh * sh - ph + ki * dh;
      if (h < 0 || h >= H) continue;
      const Dtype* orow = out + ((img * C + c) * OH + oh) * OW;
      const Dtype* irow = in + ((img * C + c) * H + h) * W + wb;
      for (index_t ow = ow0; ow <= ow1; ++ow) acc += orow[ow] * irow[ow * sw];
    }
    partial[i] = acc;
  }
}
