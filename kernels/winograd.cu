// Winograd's minimal filtering F(2x2, 3x3) and F(4x4, 3x3) for 3x3 convolutions at stride 1
// without dilation (netdef/layers/base_conv.py's "winograd" path; Lavin & Gray 2015). F(2x2,
// 3x3) first, F(4x4, 3x3) (the wino4_ functions) next, then the three kernels, which take the
// tile m (2 or 4) as an argument. F(2x2, 3x3): each 2x2 block of outputs
// (a tile) comes from a 4x4 block of inputs d starting at (2 th - ph, 2 tw - pw), zero outside
// the image:
//     Y = A^T [ (G g G^T) .* (B^T d B) ] A          (.*: elementwise over the 16 positions)
//     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//     A^T = [1 1 1 0; 0 1 -1 -1]
// Summed over input channels, the elementwise products become 16 GEMMs (one per position xi):
//     M[xi] (Co x P) = U[xi] (Co x Ci) V[xi] (Ci x P),  P = N TH TW tiles, p = (n TH + th) TW + tw
// (or a band of the images and tile rows at a time, P the band's tiles)
// with U = G g G^T per (o, c) (wino_weight) and V = B^T d B per (c, tile) (wino_input); then
// wino_output takes each tile's 16 values of M to its 2x2 outputs. 16 multiplies per 4 outputs
// instead of 36: 2.25 x fewer than the direct or im2col form, for a few additions.
#include "common.cuh"

// The 3x3 kernels of pairs i0 .. i0 + len - 1 copied apart by their 9 taps, g[k][u] = w[(i0 + u)
// 9 + k], so that the transforms' arithmetic and stores run along the pairs (vectors on the CPU).
DEVICE_FN void wino_taps(const Dtype* w, Dtype (*g)[ND_LANES], const index_t i0, const index_t len) {
  for (index_t u = 0; u < len; ++u)
    for (int k = 0; k < 9; ++k) g[k][u] = w[(i0 + u) * 9 + k];
}

// U[xi, o, c] = (G g G^T)[xi] for the 3x3 kernels g = w[o, c] of pairs i0 .. i0 + len - 1
// (i = o Ci + c); U[xi] is `pairs` long.
SIMD_FN void wino_weight_block(const Dtype* w, Dtype* U, const index_t i0, const index_t len,
                               const index_t pairs) {
  Dtype g[9][ND_LANES], t[4][3][ND_LANES];  // the taps; G g
  wino_taps(w, g, i0, len);
  for (int j = 0; j < 3; ++j)
    for (index_t u = 0; u < len; ++u) {
      const Dtype a = g[j][u], b = g[3 + j][u], c = g[6 + j][u];
      t[0][j][u] = a;
      t[1][j][u] = Dtype(0.5) * (a + b + c);
      t[2][j][u] = Dtype(0.5) * (a - b + c);
      t[3][j][u] = c;
    }
  for (int r = 0; r < 4; ++r) {
    Dtype* u0 = U + (r * 4) * pairs + i0;
    Dtype* u1 = u0 + pairs;
    Dtype* u2 = u1 + pairs;
    Dtype* u3 = u2 + pairs;
    for (index_t u = 0; u < len; ++u) {
      const Dtype a = t[r][0][u], b = t[r][1][u], c = t[r][2][u];
      u0[u] = a;
      u1[u] = Dtype(0.5) * (a + b + c);
      u2[u] = Dtype(0.5) * (a - b + c);
      u3[u] = c;
    }
  }
}

// Widest tile row the CPU's row functions take (m TW + 2 padded input columns for F(2x2),
// m TW + 4 for F(4x4)); base_conv.py keeps wider images on im2col.
#define WINO_MAX_COLS 1024

// The 4 x TW transformed tiles of one tile row from its 4 input rows: first B^T down the rows,
// written as the even and odd columns apart (so that the second pass reads contiguous runs),
// then B across: v[xi][tw] for xi = 4 r + s, v[xi] `plane` apart. rows[r] are the padded
// input rows (2 TW + 2 values).
SIMD_FN void wino_input_row(const Dtype* rows, Dtype* v, const index_t TW, const index_t plane) {
  const index_t half = TW + 1;
  Dtype e[4][WINO_MAX_COLS / 2], o[4][WINO_MAX_COLS / 2];
  const Dtype* d0 = rows;
  const Dtype* d1 = rows + 2 * half;
  const Dtype* d2 = rows + 4 * half;
  const Dtype* d3 = rows + 6 * half;
  for (index_t j = 0; j < half; ++j) {
    const index_t q = 2 * j;
    e[0][j] = d0[q] - d2[q];
    e[1][j] = d1[q] + d2[q];
    e[2][j] = d2[q] - d1[q];
    e[3][j] = d1[q] - d3[q];
    o[0][j] = d0[q + 1] - d2[q + 1];
    o[1][j] = d1[q + 1] + d2[q + 1];
    o[2][j] = d2[q + 1] - d1[q + 1];
    o[3][j] = d1[q + 1] - d3[q + 1];
  }
  for (int r = 0; r < 4; ++r) {
    Dtype* v0 = v + (4 * r) * plane;
    Dtype* v1 = v0 + plane;
    Dtype* v2 = v1 + plane;
    Dtype* v3 = v2 + plane;
    const Dtype* er = e[r];
    const Dtype* orr = o[r];
    for (index_t tw = 0; tw < TW; ++tw) {  // columns 2 tw .. 2 tw + 3
      v0[tw] = er[tw] - er[tw + 1];
      v1[tw] = orr[tw] + er[tw + 1];
      v2[tw] = er[tw + 1] - orr[tw];
      v3[tw] = orr[tw] - orr[tw + 1];
    }
  }
}

// One tile row's outputs: y rows 2 th and 2 th + 1 (`rows` of them, 1 or 2; `OW` columns) from
// m[xi][tw] (m[xi] `plane` apart): A^T down the 4 values of each column s, then A across.
SIMD_FN void wino_output_row(const Dtype* m, Dtype* y, const index_t TW, const index_t plane,
                             const index_t OW, const index_t rows) {
  Dtype t[2][4][WINO_MAX_COLS / 2];
  for (int s = 0; s < 4; ++s) {
    const Dtype* m0 = m + s * plane;
    const Dtype* m1 = m0 + 4 * plane;
    const Dtype* m2 = m1 + 4 * plane;
    const Dtype* m3 = m2 + 4 * plane;
    for (index_t tw = 0; tw < TW; ++tw) {
      t[0][s][tw] = m0[tw] + m1[tw] + m2[tw];
      t[1][s][tw] = m1[tw] - m2[tw] - m3[tw];
    }
  }
  Dtype out[WINO_MAX_COLS];
  for (index_t r = 0; r < rows; ++r) {
    const Dtype* t0 = t[r][0];
    const Dtype* t1 = t[r][1];
    const Dtype* t2 = t[r][2];
    const Dtype* t3 = t[r][3];
    for (index_t tw = 0; tw < TW; ++tw) {
      out[2 * tw] = t0[tw] + t1[tw] + t2[tw];
      out[2 * tw + 1] = t1[tw] - t2[tw] - t3[tw];
    }
    for (index_t w = 0; w < OW; ++w) y[r * OW + w] = out[w];
  }
}

// ---- F(4x4, 3x3) ---------------------------------------------------------------------------
// Each 4x4 block of outputs comes from a 6x6 block of inputs d starting at (4 th - ph, 4 tw - pw)
// through the same three steps, with 36 positions xi = 6 r + s instead of 16. Interpolation
// points 0, 1, -1, 1/2, -2 and infinity (Toom-Cook; the textbook 0, +-1, +-2 gives ~3x the
// float32 rounding error: 6.5e-6 against 2.0e-6 of the largest output on 256-channel tiles):
//     B^T = [1 -3/2 -2 3/2 1 0; 0 -1 1/2 5/2 1 0; 0 1 -5/2 1/2 1 0;
//            0 -2 -1 2 1 0; 0 1/2 -1 -1/2 1 0; 0 1 -3/2 -2 3/2 1]
//     G   = [1 0 0; 1/3 1/3 1/3; -1/3 1/3 -1/3; -16/15 -8/15 -4/15; 1/15 -2/15 4/15; 0 0 1]
//     A^T = [1 1 1 1 1 0; 0 1 -1 1/2 -2 0; 0 1 1 1/4 4 0; 0 1 -1 1/8 -8 1]
// 36 multiplies per 16 outputs instead of 144: 4 x fewer than im2col (1.78 x fewer than F(2x2,
// 3x3)), for transforms with more terms (rounding errors some 5 x those of F(2x2, 3x3) in float32:
// tests/layers/test_convolution_winograd.py holds both to 1e-5 of the largest value).

// The 6-point transforms, one value set at a time: out[j] = (B^T x)[j], (G x)[j], (A^T x)[j].
#define WINO4_BT(x0, x1, x2, x3, x4, x5, o0, o1, o2, o3, o4, o5)            \
  do {                                                                    \
    o0 = x0 + x4 - Dtype(2) * x2 + Dtype(1.5) * (x3 - x1);               \
    o1 = x4 - x1 + Dtype(0.5) * x2 + Dtype(2.5) * x3;                    \
    o2 = x4 + x1 - Dtype(2.5) * x2 + Dtype(0.5) * x3;                    \
    o3 = x4 - x2 + Dtype(2) * (x3 - x1);                                 \
    o4 = x4 - x2 + Dtype(0.5) * (x1 - x3);                               \
    o5 = x1 + x5 - Dtype(2) * x3 + Dtype(1.5) * (x4 - x2);               \
  } while (0)
#define WINO4_G(a, b, c, o0, o1, o2, o3, o4, o5)                           \
  do {                                                                    \
    o0 = a;                                                               \
    o1 = Dtype(1.0 / 3) * (a + b + c);                                    \
    o2 = Dtype(-1.0 / 3) * (a - b + c);                                   \
    o3 = Dtype(-1.0 / 15) * (Dtype(16) * a + Dtype(8) * b + Dtype(4) * c); \
    o4 = Dtype(1.0 / 15) * (a - Dtype(2) * b + Dtype(4) * c);             \
    o5 = c;                                                               \
  } while (0)
#define WINO4_AT(x0, x1, x2, x3, x4, x5, o0, o1, o2, o3)                    \
  do {                                                                    \
    o0 = x0 + (x1 + x2) + (x3 + x4);                                      \
    o1 = (x1 - x2) + Dtype(0.5) * x3 - Dtype(2) * x4;                     \
    o2 = (x1 + x2) + Dtype(0.25) * x3 + Dtype(4) * x4;                    \
    o3 = (x1 - x2) + Dtype(0.125) * x3 - Dtype(8) * x4 + x5;              \
  } while (0)

// U[xi, o, c] = (G g G^T)[xi] for the pairs i0 .. i0 + len - 1 (as wino_weight_block).
SIMD_FN void wino4_weight_block(const Dtype* w, Dtype* U, const index_t i0, const index_t len,
                                const index_t pairs) {
  Dtype g[9][ND_LANES], t[6][3][ND_LANES];  // the taps; G g
  wino_taps(w, g, i0, len);
  for (int j = 0; j < 3; ++j)
    for (index_t u = 0; u < len; ++u)
      WINO4_G(g[j][u], g[3 + j][u], g[6 + j][u], t[0][j][u], t[1][j][u], t[2][j][u], t[3][j][u],
              t[4][j][u], t[5][j][u]);
  for (int r = 0; r < 6; ++r) {
    Dtype* u0 = U + (r * 6) * pairs + i0;
    for (index_t u = 0; u < len; ++u)
      WINO4_G(t[r][0][u], t[r][1][u], t[r][2][u], u0[u], u0[pairs + u], u0[2 * pairs + u],
              u0[3 * pairs + u], u0[4 * pairs + u], u0[5 * pairs + u]);
  }
}

// The 6 x TW transformed tiles of one tile row from its 6 padded input rows (cols = 4 TW + 4
// values each, the last two zero): B^T down the rows first, along whole rows (contiguous: one
// vector op per 16 columns), then the result split into its four column phases (e[r][k][j] =
// column 4 j + k: one strided read per value, where reading the phases straight from the input
// rows took six), so that the pass across reads each tile's 6 columns as runs along tw; then B
// across: v[xi][tw] for xi = 6 r + s, v[xi] `plane` apart.
SIMD_FN void wino4_input_row(const Dtype* rows, Dtype* v, const index_t TW, const index_t plane) {
  const index_t cols = 4 * TW + 4, quarter = TW + 1;
  Dtype d[6][WINO_MAX_COLS], e[6][4][WINO_MAX_COLS / 4];
  for (index_t q = 0; q < cols; ++q)
    WINO4_BT(rows[q], rows[cols + q], rows[2 * cols + q], rows[3 * cols + q], rows[4 * cols + q],
             rows[5 * cols + q], d[0][q], d[1][q], d[2][q], d[3][q], d[4][q], d[5][q]);
  for (int r = 0; r < 6; ++r)
    for (index_t j = 0; j < quarter; ++j) {
      e[r][0][j] = d[r][4 * j];
      e[r][1][j] = d[r][4 * j + 1];
      e[r][2][j] = d[r][4 * j + 2];
      e[r][3][j] = d[r][4 * j + 3];
    }
  for (int r = 0; r < 6; ++r) {
    Dtype* v0 = v + (6 * r) * plane;
    const Dtype *c0 = e[r][0], *c1 = e[r][1], *c2 = e[r][2], *c3 = e[r][3];
    for (index_t tw = 0; tw < TW; ++tw)  // columns 4 tw .. 4 tw + 5
      WINO4_BT(c0[tw], c1[tw], c2[tw], c3[tw], c0[tw + 1], c1[tw + 1], v0[tw], v0[plane + tw],
               v0[2 * plane + tw], v0[3 * plane + tw], v0[4 * plane + tw], v0[5 * plane + tw]);
  }
}

// One tile row's outputs: y rows 4 th .. 4 th + rows - 1 (rows <= 4; OW columns) from m[xi][tw]:
// A^T down the 6 values of each column s, then A across.
SIMD_FN void wino4_output_row(const Dtype* m, Dtype* y, const index_t TW, const index_t plane,
                              const index_t OW, const index_t rows) {
  Dtype t[4][6][WINO_MAX_COLS / 4];
  for (int s = 0; s < 6; ++s) {
    const Dtype* m0 = m + s * plane;
    for (index_t tw = 0; tw < TW; ++tw)
      WINO4_AT(m0[tw], m0[6 * plane + tw], m0[12 * plane + tw], m0[18 * plane + tw],
               m0[24 * plane + tw], m0[30 * plane + tw], t[0][s][tw], t[1][s][tw], t[2][s][tw],
               t[3][s][tw]);
  }
  Dtype out[WINO_MAX_COLS];
  for (index_t r = 0; r < rows; ++r) {
    const Dtype *t0 = t[r][0], *t1 = t[r][1], *t2 = t[r][2], *t3 = t[r][3], *t4 = t[r][4],
                *t5 = t[r][5];
    for (index_t tw = 0; tw < TW; ++tw)
      WINO4_AT(t0[tw], t1[tw], t2[tw], t3[tw], t4[tw], t5[tw], out[4 * tw], out[4 * tw + 1],
               out[4 * tw + 2], out[4 * tw + 3]);
    for (index_t w = 0; w < OW; ++w) y[r * OW + w] = out[w];
  }
}

// ---- the kernels, for either tile ------------------------------------------------------------
// m: the output tile, 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3)); a tile row reads m + 2 input rows.
// V[xi, c, p] = (B^T d B)[xi] for the tiles of one row th of channel c of image img, over a band
// of BH tile rows th0 .. th0 + BH - 1 of images `x` points to (the caller's bands keep V within
// its workspace bound): p = (img BH + th - th0) TW + tw; n = images Ci BH (one tile row per
// iteration: its TW tiles are neighbours in each V[xi, c]).
KERNEL(wino_input, (const index_t n, const Dtype* x, Dtype* V, const index_t C, const index_t H,
                    const index_t W, const index_t ph, const index_t pw, const index_t th0,
                    const index_t BH, const index_t TW, const index_t m)) {
  const index_t P = n / C * TW;  // images BH TW
  const index_t plane = C * P;   // one V[xi]
  KERNEL_LOOP_WORK(i, TW * (m + 2) * (m + 2)) {
    const index_t band_row = i % BH;
    const index_t th = th0 + band_row;
    const index_t c = i / BH % C;
    const index_t img = i / (BH * C);
    const Dtype* xc = x + (img * C + c) * H * W;
    const index_t cols = m * TW + (m == 4 ? 4 : 2);  // wino4_input_row's phases read 2 more
    Dtype rows[6 * WINO_MAX_COLS];  // input rows m th - ph + r, columns -pw .. cols - pw - 1
    // columns q0 .. q1 - 1 of the padded rows are the image's (w = q - pw), the rest zero
    const index_t q0 = index_min(pw, cols), q1 = index_max(q0, index_min(cols, pw + W));
    for (index_t r = 0; r < m + 2; ++r) {
      const index_t h = m * th - ph + r;
      Dtype* row = rows + r * cols;
      if (h < 0 || h >= H) {
        for (index_t q = 0; q < cols; ++q) row[q] = Dtype(0);
        continue;
      }
      const Dtype* src = xc + h * W;
      for (index_t q = 0; q < q0; ++q) row[q] = Dtype(0);
      for (index_t q = q0; q < q1; ++q) row[q] = src[q - pw];
      for (index_t q = q1; q < cols; ++q) row[q] = Dtype(0);
    }
    Dtype* v = V + c * P + (img * BH + band_row) * TW;
    if (m == 4)
      wino4_input_row(rows, v, TW, plane);
    else
      wino_input_row(rows, v, TW, plane);
  }
}

// out[img, o, m th + a, m tw + b] = (A^T M_p A)[a, b], M_p the (m + 2)^2 values M[xi, o, p] of
// tile p, for the tiles of one row th of channel o of image img, over the band th0 .. th0 + BH - 1
// that wino_input transformed (outputs past OH x OW are not written); n = images Co BH.
KERNEL(wino_output, (const index_t n, const Dtype* M, Dtype* out, const index_t Co,
                     const index_t OH, const index_t OW, const index_t th0, const index_t BH,
                     const index_t TW, const index_t m)) {
  const index_t P = n / Co * TW;
  const index_t plane = Co * P;
  KERNEL_LOOP_WORK(i, TW * (m + 2) * (m + 2)) {
    const index_t band_row = i % BH;
    const index_t th = th0 + band_row;
    const index_t o = i / BH % Co;
    const index_t img = i / (BH * Co);
    const Dtype* mo = M + o * P + (img * BH + band_row) * TW;
    Dtype* y = out + (img * Co + o) * OH * OW + m * th * OW;
    if (m == 4)
      wino4_output_row(mo, y, TW, plane, OW, index_min(4, OH - 4 * th));
    else
      wino_output_row(mo, y, TW, plane, OW, index_min(2, OH - 2 * th));
  }
}

// U = the transform of every (o, c) kernel, m as wino_input; n = ceil(pairs / tile): `tile` pairs
// per iteration (1 on the GPU), pairs = Co Ci.
KERNEL(wino_weight, (const index_t n, const Dtype* w, Dtype* U, const index_t pairs,
                     const index_t tile, const index_t m)) {
  KERNEL_LOOP_WORK(i, tile * (m + 2) * (m + 2)) {
    const index_t first = i * tile, last = index_min(first + tile, pairs);
    for (index_t i0 = first; i0 < last; i0 += ND_LANES) {
      if (m == 4)
        wino4_weight_block(w, U, i0, index_min(ND_LANES, last - i0), pairs);
      else
        wino_weight_block(w, U, i0, index_min(ND_LANES, last - i0), pairs);
    }
  }
}
