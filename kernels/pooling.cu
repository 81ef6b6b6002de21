// Pooling (Caffe's PoolingLayer) over the H x W planes of an (N, C, H, W) bottom into
// (N, C, PH, PW). Window (a, b) covers rows [a sh - ph, a sh - ph + kh) and columns
// [b sw - pw, b sw - pw + kw) of the zero-padded plane, clipped to the image.
//   MAX:  y = the window's maximum (first one in row-major order on ties); mask = h * W + w
//         dx[h, w] = sum of dy over the windows whose mask is h * W + w
//   AVE:  y = sum / size, size = the window clipped to the *padded* plane (Caffe's rule):
//         (min(hs + kh, H + ph) - hs) * (min(ws + kw, W + pw) - ws) with hs = a sh - ph
//         dx[h, w] = sum of dy / size over the windows containing (h, w)
//   STOCHASTIC (no padding; meant for non-negative inputs):
//     train: with u uniform in [0, 1), y = x at the first position of the window (row-major)
//            whose running sum reaches u * (window sum); mask as for MAX, same backward
//     test:  y = S2 / S1, S1 = FLT_MIN + sum x, S2 = sum x^2 over the window
//            dx[h, w] = sum over windows containing (h, w) of dy (2 x - y) / S1
// A window that lies entirely outside the image (Caffe's ceil rule allows this when there is
// no padding and stride > kernel) gives y = 0 and mask = -1 and receives no gradient.
// Backward passes gather: each iteration writes only its own bottom elements, visiting the
// windows that contain them.
#include "common.cuh"

// Range [first, last) of pooled indices along one axis whose windows contain position p.
DEVICE_FN void pool_windows_of(const index_t p, const index_t pad, const index_t k,
                               const index_t s, const index_t P, index_t* first, index_t* last) {
  const index_t q = p + pad;
  *first = q < k ? 0 : (q - k) / s + 1;
  *last = index_min(q / s + 1, P);
}

// MAX and AVE take `tile` outputs (forward) or bottom elements (backward) of one row per
// iteration: 1 on the GPU, a row segment on the CPU, where the index divisions of an iteration
// would otherwise cost more than its few loads. A backward iteration zeroes its segment of dx and
// adds in the windows that reach it, window by window in row-major order: per element the same
// sums in the same order as one thread per element would do.
// mask is written only with has_mask (TEST nets keep none: no backward reads it). The window's
// scan selects without branching, which the C++ compiler turns into conditional moves; where a
// segment's windows lie inside the image's columns, blocks of ND_LANES neighbouring windows are
// scanned together (vector loads at stride sw on the CPU), each window still in row-major order.

// Output o (column b of a row whose windows cover rows [hs, he)), its window clipped.
DEVICE_FN void max_pool_one(const Dtype* plane, Dtype* y, index_t* mask, const index_t o,
                            const index_t b, const index_t hs, const index_t he, const index_t W,
                            const index_t kw, const index_t sw, const index_t pw,
                            const index_t has_mask) {
  const index_t ws = index_max(b * sw - pw, 0), we = index_min(b * sw - pw + kw, W);
  if (hs >= he || ws >= we) {
    y[o] = Dtype(0);
    if (has_mask) mask[o] = -1;
    return;
  }
  index_t best = hs * W + ws;
  Dtype m = plane[best];
  if (has_mask) {
    for (index_t h = hs; h < he; ++h)
      for (index_t w = ws; w < we; ++w) {
        const Dtype v = plane[h * W + w];
        const bool more = v > m;
        m = more ? v : m;
        best = more ? h * W + w : best;
      }
    mask[o] = best;
  } else {
    for (index_t h = hs; h < he; ++h)
      for (index_t w = ws; w < we; ++w) m = max(m, plane[h * W + w]);
  }
  y[o] = m;
}

// Outputs [o, o + len) of columns b.. whose windows lie inside the image's columns. Inlined into
// max_pool_rows with the stride as a constant where it is 1 or 2 (a runtime stride would keep
// the loads scalar).
DEVICE_FN void max_pool_scan(const Dtype* plane, Dtype* y, index_t* mask, const index_t o,
                             const index_t b, const index_t len, const index_t hs,
                             const index_t he, const index_t W, const index_t kw,
                             const index_t sw, const index_t pw, const index_t has_mask) {
  Dtype m[ND_LANES];
  const index_t start = hs * W + b * sw - pw;  // the first window's top-left element
  for (index_t u = 0; u < len; ++u) m[u] = plane[start + u * sw];
  for (index_t h = hs; h < he; ++h)
    for (index_t dw = 0; dw < kw; ++dw) {
      const Dtype* r = plane + h * W + b * sw - pw + dw;
      for (index_t u = 0; u < len; ++u) {
        const Dtype v = r[u * sw];
        m[u] = m[u] < v ? v : m[u];  // max(m, v), spelt out so that it becomes a vector max
      }
    }
  if (has_mask) {
    // The row-major scan keeps the first position holding the maximum: found here as the last
    // match of a backward scan (start when the maximum is a NaN of the first position).
    index_t best[ND_LANES];
    for (index_t u = 0; u < len; ++u) best[u] = start + u * sw;
    for (index_t h = he - 1; h >= hs; --h)
      for (index_t dw = kw - 1; dw >= 0; --dw) {
        const index_t q = h * W + b * sw - pw + dw;
        for (index_t u = 0; u < len; ++u) best[u] = plane[q + u * sw] == m[u] ? q + u * sw : best[u];
      }
    for (index_t u = 0; u < len; ++u) mask[o + u] = best[u];
  }
  for (index_t u = 0; u < len; ++u) y[o + u] = m[u];
}

// Output rows [a0, a1) of one plane, columns [b0, b1) of each: the clipped windows one by one,
// the others in blocks of ND_LANES (max_pool_scan, inlined with the stride as a constant where it
// is 1 or 2: a runtime stride would keep the loads scalar). One call for several rows, so that a
// small plane (GoogLeNet's 14 x 14 and 7 x 7) pays the call into the SIMD clone and the index
// arithmetic once, not once per row.
SIMD_FN void max_pool_rows(const Dtype* plane, Dtype* y, index_t* mask, const index_t a0,
                           const index_t a1, const index_t b0, const index_t b1, const index_t H,
                           const index_t W, const index_t PW, const index_t kh, const index_t kw,
                           const index_t sh, const index_t sw, const index_t ph, const index_t pw,
                           const index_t has_mask) {
  for (index_t a = a0; a < a1; ++a) {
    const index_t hs = index_max(a * sh - ph, 0), he = index_min(a * sh - ph + kh, H);
    // [c0, c1): the columns whose windows need no clipping (b sw - pw >= 0, b sw - pw + kw <= W)
    index_t c0 = b1, c1 = b1;
    if (hs < he && W + pw - kw >= 0) {
      c0 = index_clamp((pw + sw - 1) / sw, b0, b1);
      c1 = index_clamp((W + pw - kw) / sw + 1, c0, b1);
    }
    const index_t o = a * PW;
    for (index_t b = b0; b < c0; ++b)
      max_pool_one(plane, y, mask, o + b, b, hs, he, W, kw, sw, pw, has_mask);
    for (index_t b = c0; b < c1; b += ND_LANES) {
      const index_t len = index_min(ND_LANES, c1 - b);
      if (sw == 1)
        max_pool_scan(plane, y, mask, o + b, b, len, hs, he, W, kw, 1, pw, has_mask);
      else if (sw == 2)
        max_pool_scan(plane, y, mask, o + b, b, len, hs, he, W, kw, 2, pw, has_mask);
      else
        max_pool_scan(plane, y, mask, o + b, b, len, hs, he, W, kw, sw, pw, has_mask);
    }
    for (index_t b = c1; b < b1; ++b)
      max_pool_one(plane, y, mask, o + b, b, hs, he, W, kw, sw, pw, has_mask);
  }
}

// A whole plane at stride 1 without a mask, when its padded plane fits ND_PLANE (the CPU; the
// inception modules' 3 x 3 / 1 pad 1 pools on 28 x 28 .. 7 x 7): the plane is copied into a
// padded one of Hb x Wb whose padding holds `low`, the plane's minimum (NaNs passed over), so that
// it never replaces a maximum (`m < low` is false for every image value m, NaN included).
// Window (a, b) then starts at flat position q = a Wb + b and each tap is one pass over q in
// [0, Q) in a single vector loop, with no row ends or clipping. It is the row-major scan, bit for
// bit: a window whose first position is image (top-left inside) starts there as the scan does;
// one whose first position is padding starts at `low` instead of at its first image element v0,
// which changes nothing when v0 > low (v0 replaces low where the scan would start), and when v0
// is a NaN or no element exceeded low (then v0 == low in value: ties keep the first) the scan's
// answer is v0 itself.
SIMD_FN void max_pool_plane_s1(const Dtype* plane, Dtype* y, const index_t H, const index_t W,
                               const index_t PH, const index_t PW, const index_t kh,
                               const index_t kw, const index_t ph, const index_t pw) {
  const index_t Hb = PH + kh - 1, Wb = PW + kw - 1;
  Dtype pb[ND_PLANE], m[ND_PLANE];
  Dtype low = plane[0];
  for (index_t t = 1; t < H * W; ++t) low = plane[t] < low || low != low ? plane[t] : low;
  for (index_t t = 0; t < Hb * Wb; ++t) pb[t] = low;
  const index_t w0 = index_min(pw, Wb), w1 = index_min(pw + W, Wb);
  for (index_t h = 0; h < H && h + ph < Hb; ++h)
    for (index_t c = w0; c < w1; ++c) pb[(h + ph) * Wb + c] = plane[h * W + c - pw];
  const index_t Q = (PH - 1) * Wb + PW;
  for (index_t q = 0; q < Q; ++q) m[q] = pb[q];
  for (index_t i = 0; i < kh; ++i)
    for (index_t j = 0; j < kw; ++j) {
      if (i == 0 && j == 0) continue;
      const Dtype* r = pb + i * Wb + j;
      for (index_t q = 0; q < Q; ++q) m[q] = m[q] < r[q] ? r[q] : m[q];
    }
  for (index_t a = 0; a < PH; ++a) {
    for (index_t b = 0; b < PW; ++b) y[a * PW + b] = m[a * Wb + b];
    const index_t row = index_max(a - ph, 0) * W;
    for (index_t b = 0; b < (a < ph ? PW : index_min(pw, PW)); ++b) {  // first position: padding
      const Dtype v0 = plane[row + index_max(b - pw, 0)], v = y[a * PW + b];
      y[a * PW + b] = v0 != v0 || !(low < v) ? v0 : v;
    }
  }
}

// An iteration takes `rows` output rows of one plane (the last group of a plane may be shorter)
// and `tile` columns of each: rows = tile = 1 on the GPU, whole rows on the CPU, and whole
// planes there when there are enough planes for the threads.
KERNEL(max_pool_forward, (const index_t n, const Dtype* x, Dtype* y, index_t* mask,
                          const index_t H, const index_t W, const index_t PH, const index_t PW,
                          const index_t kh, const index_t kw, const index_t sh, const index_t sw,
                          const index_t ph, const index_t pw, const index_t tile,
                          const index_t rows, const index_t has_mask)) {
  // n = N * C * ngroups * ntiles
  const index_t ntiles = (PW + tile - 1) / tile;
  const index_t ngroups = (PH + rows - 1) / rows;
  KERNEL_LOOP_WORK(i, tile * rows * kh * kw) {
    index_t b0, b1;
    const index_t r = row_tile(i, ntiles, tile, PW, &b0, &b1);  // plane * ngroups + group
    const index_t p = r / ngroups, a0 = (r - p * ngroups) * rows;
    const index_t o = p * PH * PW;
    // (stride 1 only: at stride 2 the flat positions q = a Wb + b would be half padding
    // columns, and the rows' scans at a constant stride 2 measured twice as fast)
    if (rows >= PH && b0 == 0 && b1 == PW && sh == 1 && sw == 1 && !has_mask &&
        (PH + kh - 1) * (PW + kw - 1) <= ND_PLANE) {
      max_pool_plane_s1(x + p * H * W, y + o, H, W, PH, PW, kh, kw, ph, pw);
      continue;
    }
    max_pool_rows(x + p * H * W, y + o, has_mask ? mask + o : mask, a0, index_min(a0 + rows, PH),
                  b0, b1, H, W, PW, kh, kw, sh, sw, ph, pw, has_mask);
  }
}

// Windows [*a0, *a1) x [*b0, *b1) that reach row h, columns [w0, w1) of a bottom plane.
DEVICE_FN void pool_windows_of_segment(const index_t h, const index_t w0, const index_t w1,
                                       const index_t PH, const index_t PW, const index_t kh,
                                       const index_t kw, const index_t sh, const index_t sw,
                                       const index_t ph, const index_t pw, index_t* a0,
                                       index_t* a1, index_t* b0, index_t* b1) {
  index_t unused;
  pool_windows_of(h, ph, kh, sh, PH, a0, a1);
  pool_windows_of(w0, pw, kw, sw, PW, b0, &unused);
  pool_windows_of(w1 - 1, pw, kw, sw, PW, &unused, b1);
}

// Also the backward pass of STOCHASTIC pooling in TRAIN (the mask holds the sampled position).
KERNEL(max_pool_backward, (const index_t n, const Dtype* dy, const index_t* mask, Dtype* dx,
                           const index_t H, const index_t W, const index_t PH, const index_t PW,
                           const index_t kh, const index_t kw, const index_t sh, const index_t sw,
                           const index_t ph, const index_t pw, const index_t tile)) {
  // n = N * C * H * ntiles
  const index_t ntiles = (W + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t w0, w1;
    const index_t row = row_tile(i, ntiles, tile, W, &w0, &w1);  // plane * H + h
    const index_t h = row % H;
    const index_t top = (row / H) * PH * PW;
    index_t a0, a1, b0, b1;
    pool_windows_of_segment(h, w0, w1, PH, PW, kh, kw, sh, sw, ph, pw, &a0, &a1, &b0, &b1);
    Dtype* dxr = dx + row * W;
    for (index_t w = w0; w < w1; ++w) dxr[w] = Dtype(0);
    for (index_t a = a0; a < a1; ++a)
      for (index_t b = b0; b < b1; ++b) {
        const index_t q = top + a * PW + b;
        const index_t w = mask[q] - h * W;  // in [w0, w1) only for a maximum on this segment
        if (w >= w0 && w < w1) dxr[w] += dy[q];
      }
  }
}

KERNEL(ave_pool_forward, (const index_t n, const Dtype* x, Dtype* y,
                          const index_t H, const index_t W, const index_t PH, const index_t PW,
                          const index_t kh, const index_t kw, const index_t sh, const index_t sw,
                          const index_t ph, const index_t pw, const index_t tile)) {
  // n = N * C * PH * ntiles
  const index_t ntiles = (PW + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile * kh * kw) {
    index_t b0, b1;
    const index_t row = row_tile(i, ntiles, tile, PW, &b0, &b1);  // plane * PH + a
    const index_t a = row % PH;
    const Dtype* plane = x + (row / PH) * H * W;
    const index_t h0 = a * sh - ph;
    const index_t rows = index_min(h0 + kh, H + ph) - h0;
    const index_t hs = index_max(h0, 0), he = index_min(h0 + kh, H);
    for (index_t b = b0; b < b1; ++b) {
      const index_t o = row * PW + b;
      const index_t w0 = b * sw - pw;
      const index_t ws = index_max(w0, 0), we = index_min(w0 + kw, W);
      if (hs >= he || ws >= we) {
        y[o] = Dtype(0);
        continue;
      }
      Dtype sum = Dtype(0);
      for (index_t h = hs; h < he; ++h)
        for (index_t w = ws; w < we; ++w) sum += plane[h * W + w];
      y[o] = sum / Dtype(rows * (index_min(w0 + kw, W + pw) - w0));
    }
  }
}

KERNEL(ave_pool_backward, (const index_t n, const Dtype* dy, Dtype* dx,
                           const index_t H, const index_t W, const index_t PH, const index_t PW,
                           const index_t kh, const index_t kw, const index_t sh, const index_t sw,
                           const index_t ph, const index_t pw, const index_t tile)) {
  // n = N * C * H * ntiles
  const index_t ntiles = (W + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile) {
    index_t w0, w1;
    const index_t row = row_tile(i, ntiles, tile, W, &w0, &w1);  // plane * H + h
    const index_t h = row % H;
    const index_t top = (row / H) * PH * PW;
    index_t a0, a1, b0, b1;
    pool_windows_of_segment(h, w0, w1, PH, PW, kh, kw, sh, sw, ph, pw, &a0, &a1, &b0, &b1);
    Dtype* dxr = dx + row * W;
    for (index_t w = w0; w < w1; ++w) dxr[w] = Dtype(0);
    for (index_t a = a0; a < a1; ++a) {
      const index_t hs = a * sh - ph;
      const index_t rows = index_min(hs + kh, H + ph) - hs;
      for (index_t b = b0; b < b1; ++b) {
        const index_t ws = b * sw - pw;
        const Dtype g = dy[top + a * PW + b] / Dtype(rows * (index_min(ws + kw, W + pw) - ws));
        const index_t lo = index_max(ws, w0), hi = index_min(ws + kw, w1);
        for (index_t w = lo; w < hi; ++w) dxr[w] += g;
      }
    }
  }
}

KERNEL(sto_pool_forward_train, (const index_t n, const Dtype* x, const Dtype* u, Dtype* y,
                                index_t* mask, const index_t H, const index_t W, const index_t PH,
                                const index_t PW, const index_t kh, const index_t kw,
                                const index_t sh, const index_t sw)) {
  KERNEL_LOOP(i) {
    const index_t b = i % PW;
    const index_t a = (i / PW) % PH;
    const Dtype* plane = x + (i / (PW * PH)) * H * W;
    const index_t hs = a * sh, he = index_min(a * sh + kh, H);
    const index_t ws = b * sw, we = index_min(b * sw + kw, W);
    if (hs >= he || ws >= we) {
      y[i] = Dtype(0);
      mask[i] = -1;
      continue;
    }
    Dtype total = Dtype(0);
    for (index_t h = hs; h < he; ++h)
      for (index_t w = ws; w < we; ++w) total += plane[h * W + w];
    const Dtype threshold = u[i] * total;
    // The same summation order as above, so the running sum reaches `total` exactly and some
    // position always qualifies (u < 1); the last position is the fallback all the same.
    const index_t cols = we - ws, len = (he - hs) * cols;
    index_t pick = (he - 1) * W + we - 1;
    Dtype run = Dtype(0);
    for (index_t k = 0; k < len; ++k) {
      const index_t q = (hs + k / cols) * W + ws + k % cols;
      run += plane[q];
      if (run >= threshold) {
        pick = q;
        break;
      }
    }
    y[i] = plane[pick];
    mask[i] = pick;
  }
}

KERNEL(sto_pool_forward_test, (const index_t n, const Dtype* x, Dtype* y,
                               const index_t H, const index_t W, const index_t PH, const index_t PW,
                               const index_t kh, const index_t kw, const index_t sh,
                               const index_t sw)) {
  KERNEL_LOOP(i) {
    const index_t b = i % PW;
    const index_t a = (i / PW) % PH;
    const Dtype* plane = x + (i / (PW * PH)) * H * W;
    const index_t he = index_min(a * sh + kh, H), we = index_min(b * sw + kw, W);
    Dtype s1 = ND_FLT_MIN, s2 = Dtype(0);
    for (index_t h = a * sh; h < he; ++h)
      for (index_t w = b * sw; w < we; ++w) {
        const Dtype v = plane[h * W + w];
        s1 += v;
        s2 += v * v;
      }
    y[i] = s2 / s1;
  }
}

KERNEL(sto_pool_backward_test, (const index_t n, const Dtype* x, const Dtype* dy, Dtype* dx,
                                const index_t H, const index_t W, const index_t PH,
                                const index_t PW, const index_t kh, const index_t kw,
                                const index_t sh, const index_t sw)) {
  KERNEL_LOOP(i) {
    const index_t w = i % W;
    const index_t h = (i / W) % H;
    const Dtype* plane = x + (i / (H * W)) * H * W;
    const index_t top = (i / (H * W)) * PH * PW;
    const Dtype v = plane[h * W + w];
    index_t a0, a1, b0, b1;
    pool_windows_of(h, 0, kh, sh, PH, &a0, &a1);
    pool_windows_of(w, 0, kw, sw, PW, &b0, &b1);
    Dtype acc = Dtype(0);
    for (index_t a = a0; a < a1; ++a)
      for (index_t b = b0; b < b1; ++b) {
        const index_t he = index_min(a * sh + kh, H), we = index_min(b * sw + kw, W);
        Dtype s1 = ND_FLT_MIN, s2 = Dtype(0);
        for (index_t r = a * sh; r < he; ++r)
          for (index_t c = b * sw; c < we; ++c) {
            const Dtype t = plane[r * W + c];
            s1 += t;
            s2 += t * t;
          }
        acc += dy[top + a * PW + b] * (Dtype(2) * v - s2 / s1) / s1;
      }
    dx[i] = acc;
  }
}
