// Softmax over one axis and the per-pixel softmax cross-entropy loss (SoftmaxWithLoss).
// A bottom of `outer` x C x `inner` elements has n = outer * inner "pixels"; pixel i holds the
// C values at (i / inner) * C * inner + i % inner + c * inner. Channel reductions are one
// iteration per pixel (or a run of pixels, see below); elementwise passes are one thread per
// element. No atomics.
//
//   softmax:   y_c = exp(x_c - max x) / sum_c' exp(x_c' - max x)
//              dx_c = y_c (dy_c - sum_c' dy_c' y_c')
//   loss:      per pixel with label l (not ignored):  loss = -log(max(p_l, FLT_MIN)), valid = 1
//              dx_c = (p_c - [c == l]) * top_diff[0] * inv_norm;  ignored pixels: loss 0, dx 0
//   labels are read by common.cuh's read_label; a label that is neither the ignore label nor
//   in [0, C) sets bad[i] = 1 (the layer reports it afterwards).
#include "common.cuh"

// The softmax kernels take the pixels of one outer index o in segments of `tile` (common.cuh's
// row_tile over rows of `inner` pixels: one pixel on the GPU, a long run on the CPU), and a
// segment in blocks of ND_LANES pixels whose running max / sum sit in local arrays while the
// channels stream past: every loop then runs over neighbouring addresses. With inner = 1 (the
// softmax over the last axis) a pixel's channels are contiguous and its loops run over them.
KERNEL(softmax_forward, (const index_t n, const Dtype* x, Dtype* y, const index_t C,
                         const index_t inner, const index_t tile)) {
  const index_t ntiles = (inner + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile * C) {
    index_t first, last;
    const index_t o = row_tile(i, ntiles, tile, inner, &first, &last);
    const Dtype* xo = x + o * C * inner;
    Dtype* yo = y + o * C * inner;  // x may be y (in place): each x_c is read before y_c is written
    if (inner == 1) {
      Dtype m = xo[0];
      for (index_t c = 1; c < C; ++c) m = max(m, xo[c]);
      Dtype sum = Dtype(0);
      for (index_t c = 0; c < C; ++c) {
        const Dtype e = exp(xo[c] - m);
        yo[c] = e;
        sum += e;
      }
      const Dtype inv = Dtype(1) / sum;
      for (index_t c = 0; c < C; ++c) yo[c] *= inv;
      continue;
    }
    for (index_t p0 = first; p0 < last; p0 += ND_LANES) {
      const index_t w = index_min(ND_LANES, last - p0);
      Dtype m[ND_LANES], s[ND_LANES];
      for (index_t j = 0; j < w; ++j) m[j] = xo[p0 + j];
      for (index_t c = 1; c < C; ++c) {
        const Dtype* xc = xo + c * inner + p0;
        for (index_t j = 0; j < w; ++j) m[j] = max(m[j], xc[j]);
      }
      for (index_t j = 0; j < w; ++j) s[j] = Dtype(0);
      for (index_t c = 0; c < C; ++c) {
        const Dtype* xc = xo + c * inner + p0;
        Dtype* yc = yo + c * inner + p0;
        for (index_t j = 0; j < w; ++j) {
          const Dtype e = exp(xc[j] - m[j]);
          yc[j] = e;
          s[j] += e;
        }
      }
      for (index_t j = 0; j < w; ++j) s[j] = Dtype(1) / s[j];
      for (index_t c = 0; c < C; ++c) {
        Dtype* yc = yo + c * inner + p0;
        for (index_t j = 0; j < w; ++j) yc[j] *= s[j];
      }
    }
  }
}

// dx_c = y_c (dy_c - sum_c' dy_c' y_c'), in segments and blocks as softmax_forward; dx may be
// dy (in place).
KERNEL(softmax_backward, (const index_t n, const Dtype* y, const Dtype* dy, Dtype* dx,
                          const index_t C, const index_t inner, const index_t tile)) {
  const index_t ntiles = (inner + tile - 1) / tile;
  KERNEL_LOOP_WORK(i, tile * C) {
    index_t first, last;
    const index_t o = row_tile(i, ntiles, tile, inner, &first, &last);
    const index_t base = o * C * inner;
    for (index_t p0 = first; p0 < last; p0 += ND_LANES) {
      const index_t w = index_min(ND_LANES, last - p0);
      Dtype dot[ND_LANES];
      for (index_t j = 0; j < w; ++j) dot[j] = Dtype(0);
      for (index_t c = 0; c < C; ++c) {
        const index_t q = base + c * inner + p0;
        for (index_t j = 0; j < w; ++j) dot[j] += dy[q + j] * y[q + j];
      }
      for (index_t c = 0; c < C; ++c) {
        const index_t q = base + c * inner + p0;
        for (index_t j = 0; j < w; ++j) dx[q + j] = (dy[q + j] - dot[j]) * y[q + j];
      }
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
