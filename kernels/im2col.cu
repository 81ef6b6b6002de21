// im2col / col2im for 2-D convolution (netdef/layers/base_conv.py).
//
// Geometry, per spatial axis: input size H, kernel kh, stride sh, pad ph, dilation dh,
// output size OH = (H + 2 ph - (dh (kh - 1) + 1)) / sh + 1. Output position oh with kernel tap
// ki reads input row  h = oh sh - ph + ki dh  (zero when h is outside [0, H)); likewise for w.
//
// im2col: col[img, c, ki, kj, ohr, ow] = x[img, c, (oh0 + ohr) sh - ph + ki dh, ow sw - pw + kj dw]
//   for the output rows oh0 .. oh0 + rows - 1 (rows = OH for whole images), i.e. per image a
//   (C kh kw) x (rows OW) matrix. One iteration fills `tile` consecutive positions (ohr, ow) of
//   one col row: the caller passes tile = 1 on the GPU (neighbouring threads, neighbouring
//   addresses) and a longer tile on the CPU (fewer index divisions per element).
//
// col2im (the adjoint of im2col, a gather so that it is deterministic and needs no atomics):
//   x[img, c, h, w] (+)= sum over (ki, ohr, kj, ow) with (oh0 + ohr) sh - ph + ki dh = h and
//                        ow sw - pw + kj dw = w of col[img, c, ki, kj, ohr, ow]
//   for the input rows h0 .. h0 + hrows - 1. The taps ki that hit row h form an arithmetic
//   progression with step steph = sh / gcd(sh, dh) (passed in by the caller), so each output
//   element visits only its contributing taps, even for stride 32 and kernel 64.
//   accumulate != 0 adds to x (used when an image's col is processed in row chunks).
//   With tile == 1 (GPU) one element sums its taps in a register; with a longer tile (CPU) the
//   iteration adds each tap's contiguous col row segment into its row segment of x.
#include "common.cuh"
#include "conv_taps.cuh"

// A whole col row of a stride-1 convolution whose output rows are as wide as the input's
// (OW == W: "same" padding, 3 x 3 pad 1, 5 x 5 pad 2): output position p = ohr OW + ow reads
// input element base + p of the plane (rows are W apart on both sides), so the row is one
// contiguous copy, then zeros where the tap falls outside the image: the rows above and below
// it, and |off| columns at one side of every row (the copy reads only inside the plane). On the
// CPU 1.4-2x the speed of the row-by-row copy on 7..56-wide planes (GoogLeNet's, SqueezeNet's,
// CaffeNet's 3 x 3 and 5 x 5; bench/README.md), whose rows are too short for its loops.
DEVICE_FN void im2col_same_width(const Dtype* x, Dtype* col, index_t r, const index_t H,
                                 const index_t W, const index_t kh, const index_t kw,
                                 const index_t ph, const index_t pw, const index_t dh,
                                 const index_t dw, const index_t oh0, const index_t rows) {
  const index_t len = rows * W;
  const index_t kj = r % kw;
  r /= kw;
  const index_t ki = r % kh;
  r /= kh;  // r = img * C + c
  Dtype* out = col + ((r * kh + ki) * kw + kj) * len;
  const index_t off = kj * dw - pw;       // output column ow reads input column ow + off
  const index_t h0 = oh0 - ph + ki * dh;  // the input row of the band's first output row
  const index_t r0 = index_min(index_max(-h0, 0), rows);
  const index_t r1 = index_max(index_min(H - h0, rows), r0);  // output rows [r0, r1) read rows
  const Dtype* plane = x + r * H * W;
  for (index_t p = 0; p < r0 * W; ++p) out[p] = Dtype(0);
  // with |off| >= W every column of the tap is outside: nothing to copy
  const bool inside = off > -W && off < W;
  const index_t p0 = r0 * W + (off < 0 ? -off : 0);
  const index_t p1 = inside ? index_max(r1 * W - (off > 0 ? off : 0), p0) : p0;
  const index_t shift = h0 * W + off;  // out[p] = plane[p + shift]
  for (index_t p = p0; p < p1; ++p) out[p] = plane[p + shift];
  for (index_t p = r1 * W; p < len; ++p) out[p] = Dtype(0);
  const index_t zlo = off < 0 ? 0 : W - index_min(off, W);
  const index_t zhi = off < 0 ? index_min(-off, W) : W;
  for (index_t q = r0; q < r1; ++q)
    for (index_t w = zlo; w < zhi; ++w) out[q * W + w] = Dtype(0);
}

// dst[t] = src[t s], a strided gather that the C++ compiler vectorizes (in each SIMD clone) where
// the stride is a constant: the first convolutions' stride 2 (GoogLeNet's 7 x 7, SqueezeNet's
// 3 x 3: 1.6-1.9x the plain loop's speed) and 4 (CaffeNet's 11 x 11: ~1.1x).
SIMD_FN void copy_strided(Dtype* dst, const Dtype* src, const index_t n, const index_t s) {
  if (s == 2)
    for (index_t t = 0; t < n; ++t) dst[t] = src[2 * t];
  else if (s == 4)
    for (index_t t = 0; t < n; ++t) dst[t] = src[4 * t];
  else
    for (index_t t = 0; t < n; ++t) dst[t] = src[t * s];
}

// One col row (img, c, ki, kj) is rows OW long; an iteration fills `tile` consecutive positions
// of it, which may span several output rows (so that small images, 13 x 13 say, still give an
// iteration many elements for its few index divisions); a whole row of a stride-1 "same"-width
// convolution is filled at once by im2col_same_width.
KERNEL(im2col, (const index_t n, const Dtype* x, Dtype* col, const index_t H, const index_t W,
                const index_t kh, const index_t kw, const index_t sh, const index_t sw,
                const index_t ph, const index_t pw, const index_t dh, const index_t dw,
                const index_t OW, const index_t oh0, const index_t rows,
                const index_t tile)) {
  // n = images * C * kh * kw * ntiles
  const index_t len = rows * OW;
  const index_t ntiles = (len + tile - 1) / tile;
  const bool same_width = tile >= len && sh == 1 && sw == 1 && OW == W;  // whole col rows (the CPU)
  KERNEL_LOOP_WORK(i, tile) {
    if (same_width) {
      im2col_same_width(x, col, i, H, W, kh, kw, ph, pw, dh, dw, oh0, rows);
      continue;
    }
    index_t r = i;
    const index_t t = r % ntiles;
    r /= ntiles;
    const index_t kj = r % kw;
    r /= kw;
    const index_t ki = r % kh;
    r /= kh;  // r = img * C + c
    const index_t p0 = t * tile;
    const index_t p1 = index_min(p0 + tile, len);
    Dtype* col_row = col + ((r * kh + ki) * kw + kj) * len;
    const index_t off = kj * dw - pw;  // w = ow sw + off
    // the columns [wlo, whi) that read inside the image, the same on every output row
    const index_t wlo = index_min(index_max(fceil_div(-off, sw), 0), OW);
    const index_t whi = index_max(index_min(ffloor_div(W - 1 - off, sw) + 1, OW), wlo);
    for (index_t ohr = p0 / OW; ohr * OW < p1; ++ohr) {
      const index_t ow0 = index_max(p0 - ohr * OW, 0);
      const index_t ow1 = index_min(p1 - ohr * OW, OW);
      Dtype* out = col_row + ohr * OW;
      const index_t h = (oh0 + ohr) * sh - ph + ki * dh;
      if (h < 0 || h >= H) {
        for (index_t ow = ow0; ow < ow1; ++ow) out[ow] = Dtype(0);
        continue;
      }
      const index_t lo = index_min(index_max(wlo, ow0), ow1);
      const index_t hi = index_max(index_min(whi, ow1), lo);
      const Dtype* in = x + (r * H + h) * W + off;
      for (index_t ow = ow0; ow < lo; ++ow) out[ow] = Dtype(0);
      if (sw == 1) {
        for (index_t ow = lo; ow < hi; ++ow) out[ow] = in[ow];
      } else if (hi - lo >= 16) {
        copy_strided(out + lo, in + lo * sw, hi - lo, sw);
      } else {  // a short row: not worth the call into the SIMD clone
        for (index_t ow = lo; ow < hi; ++ow) out[ow] = in[ow * sw];
      }
      for (index_t ow = hi; ow < ow1; ++ow) out[ow] = Dtype(0);
    }
  }
}

KERNEL(col2im, (const index_t n, const Dtype* col, Dtype* x, const index_t H, const index_t W,
                const index_t kh, const index_t kw, const index_t sh, const index_t sw,
                const index_t ph, const index_t pw, const index_t dh, const index_t dw,
                const index_t OW, const index_t oh0, const index_t rows,
                const index_t h0, const index_t hrows, const index_t steph, const index_t stepw,
                const index_t tile, const index_t accumulate)) {
  // n = images * C * hrows * ntiles
  const index_t ntiles = (W + tile - 1) / tile;
  const index_t plane = rows * OW;         // one col row
  const index_t dow = stepw * dw / sw;     // ow decrease per kj step
  const index_t dohr = steph * dh / sh;    // oh decrease per ki step
  KERNEL_LOOP_WORK(i, tile * kh * kw) {
    index_t r = i;
    const index_t t = r % ntiles;
    r /= ntiles;
    const index_t h = h0 + r % hrows;
    r /= hrows;  // r = img * C + c
    const index_t w0 = t * tile;
    const index_t w1 = index_min(w0 + tile, W);
    index_t oh = 0;
    const index_t kif = first_tap(h, kh, sh, ph, dh, steph, oh0, rows, &oh);
    const index_t kil = last_tap(h, kh, sh, ph, dh, oh0);
    const Dtype* colc = col + r * kh * kw * plane;
    Dtype* xr = x + (r * H + h) * W;
    if (tile == 1) {
      // one element: visit only the taps that reach it, summing in a register
      const index_t w = w0;
      Dtype acc = Dtype(0);
      index_t ow = 0;
      const index_t kjf = first_tap(w, kw, sw, pw, dw, stepw, 0, OW, &ow);
      const index_t kjl = last_tap(w, kw, sw, pw, dw, 0);
      index_t ohr = oh - oh0;
      for (index_t ki = kif; ki <= kil; ki += steph, ohr -= dohr) {
        const Dtype* crow = colc + ki * kw * plane + ohr * OW;
        index_t owk = ow;
        for (index_t kj = kjf; kj <= kjl; kj += stepw, owk -= dow) acc += crow[kj * plane + owk];
      }
      xr[w] = accumulate ? xr[w] + acc : acc;
    } else {
      // a row segment: add each (ki, kj) col row into it (the same order of sums per element)
      if (!accumulate)
        for (index_t w = w0; w < w1; ++w) xr[w] = Dtype(0);
      index_t ohr = oh - oh0;
      for (index_t ki = kif; ki <= kil; ki += steph, ohr -= dohr) {
        for (index_t kj = 0; kj < kw; ++kj) {
          const index_t off = kj * dw - pw;  // w = ow sw + off
          const index_t lo = index_max(fceil_div(w0 - off, sw), 0);
          const index_t hi = index_min(ffloor_div(w1 - 1 - off, sw), OW - 1);
          const Dtype* crow = colc + (ki * kw + kj) * plane + ohr * OW;
          Dtype* xw = xr + off;
          if (sw == 1) {
            for (index_t ow = lo; ow <= hi; ++ow) xw[ow] += crow[ow];
          } else {
            for (index_t ow = lo; ow <= hi; ++ow) xw[ow * sw] += crow[ow];
          }
        }
      }
    }
  }
}
