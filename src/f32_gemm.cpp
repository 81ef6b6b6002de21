// Batched float32 GEMM on AVX-512 FMA, for the many thin products of the Winograd path:
//
//   C[b] (M x N) = A[b] (M x K) . B[b] (K x N) + beta C[b],     b < batch
//
// Why not the BLAS: F(4x4, 3x3) at batch 1 is 36 products of Co x Ci by Ci x P with P = 49 .. 196
// tiles (GoogLeNet, ResNet-50 at 28 x 28 .. 56 x 56). One BLAS call per product splits each across
// the threads and synchronizes 36 times; OpenBLAS runs them at 90 - 150 GFLOP/s on 2 Zen 4 cores.
// Here each product is one thread's work (the batch is shared out, or a product's column blocks
// and row chunks where the batch is short), in one parallel region.
//
// Blocking: K in blocks of KC = 128, so that a 128 x 32 block of B (16 KB) stays in L1 while all
// of A's rows pass over it (A's M x 128 block in L2). That block of B is copied into a zero-padded
// buffer first (see block()); A is not packed: its rows are read by broadcasts from MR = 12 rows at
// once (packing A measured no faster). Micro-kernel 12 x 32 (24 zmm accumulators; 2 loads of B
// and 12 broadcasts of A per k) or 12 x 16 at a column edge of <= 16 (F(2x2) on 7 x 7: 16 tiles),
// C's stores masked at the edges.
// It is not a kernel family of kernels/: a register-blocked GEMM has no device-neutral form (the
// GPU's products are cuBLAS's). src/bf16_gemm.cpp is its bf16 sibling.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace {

constexpr int MR = 12;
constexpr long KC = 128;

#define F32_TARGET __attribute__((target("avx512f")))

struct Mat {  // element (r, k) at base[r * ld + k] (k contiguous)
  const float* base;
  long ld;
};

inline __mmask16 lanes(long n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1); }

// C[r, j] (r < mr, j < nr) = sum_k A[r, k] B[k, j] (+ beta C[r, j] where accumulate), NV zmm of
// columns (nr <= 16 NV). Rows past mr repeat row 0 (computed, dropped).
template <int NV>
F32_TARGET void micro(long kc, const float* a, long lda, int mr, const float* b, long ldb, int nr, float* c, long ldc,
                      bool accumulate, float beta) {
  const float* ar[MR];
  for (int r = 0; r < MR; ++r) ar[r] = a + (r < mr ? r : 0) * lda;
  __m512 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (long k = 0; k < kc; ++k) {
    __m512 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + k * ldb + 16 * v);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(ar[r][k]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
  const __mmask16 m0 = lanes(nr), m1 = NV > 1 ? lanes(nr - 16) : 0;
  const __m512 vb = _mm512_set1_ps(beta);
  for (int r = 0; r < mr; ++r) {
    float* row = c + r * ldc;
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = v ? m1 : m0;
      __m512 y = acc[r][v];
      // C is read only when it counts: beta = 0 must ignore NaNs left in it
      if (accumulate) y = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, row + 16 * v), y);
      _mm512_mask_storeu_ps(row + 16 * v, m, y);
    }
  }
}

// One task: rows [i0, i1) and columns [j0, j1) of one product. Each 32-column panel of B is
// copied per K block into a contiguous, zero-padded buffer first (16 KB, L1): the micro-kernel
// then reads it without masks (masked loads at a 17 - 31 column edge halved its rate) and
// without the strides of a wide B (41 x 41 tiles: 6.7 KB between rows, a page every row).
F32_TARGET void block(long K, Mat A, Mat B, float* C, long ldc, float beta, long i0, long i1, long j0, long j1) {
  alignas(64) float panel[KC * 32];
  for (long j = j0; j < j1; j += 32) {
    const int nr = static_cast<int>(std::min<long>(32, j1 - j));
    const __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
    for (long k0 = 0; k0 < K; k0 += KC) {
      const long kc = std::min(KC, K - k0);
      const bool accumulate = k0 > 0 || beta != 0.0f;
      const float bt = k0 > 0 ? 1.0f : beta;
      const float* src = B.base + k0 * B.ld + j;
      for (long k = 0; k < kc; ++k) {
        _mm512_store_ps(panel + k * 32, _mm512_maskz_loadu_ps(m0, src + k * B.ld));
        _mm512_store_ps(panel + k * 32 + 16, _mm512_maskz_loadu_ps(m1, src + k * B.ld + 16));
      }
      for (long i = i0; i < i1; i += MR) {
        const int mr = static_cast<int>(std::min<long>(MR, i1 - i));
        float* c = C + i * ldc + j;
        const float* a = A.base + i * A.ld + k0;
        if (nr > 16)
          micro<2>(kc, a, A.ld, mr, panel, 32, nr, c, ldc, accumulate, bt);
        else
          micro<1>(kc, a, A.ld, mr, panel, 32, nr, c, ldc, accumulate, bt);
      }
    }
  }
}

}  // namespace

extern "C" {

// 1 where this CPU runs netdef_gemm_f32_batched (AVX-512F), else 0.
__attribute__((visibility("default"))) int netdef_gemm_f32_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}

// C[b] = A[b] B[b] + beta C[b] for b < batch, strides in elements: A[b](m, k) at a[b sab + m lda + k],
// B[b](k, n) at b[b sbb + k ldb + n], C[b](m, n) at c[b scb + m ldc + n] (sab or sbb 0: one
// operand for every product). Returns 0, or -1 where the CPU cannot.
__attribute__((visibility("default"))) int netdef_gemm_f32_batched(long batch, long M, long N, long K, const float* a,
                                                                   long sab, long lda, const float* b, long sbb,
                                                                   long ldb, float beta, float* c, long scb,
                                                                   long ldc) {
  if (!netdef_gemm_f32_supported()) return -1;
  if (batch <= 0 || M <= 0 || N <= 0) return 0;
  const int threads = std::max(1, omp_get_max_threads());
  // column blocks of 32 and row chunks of MR rows, as few as give every thread some 4 tasks
  const long npanels = (N + 31) / 32, mpanels = (M + MR - 1) / MR;
  const long want = 4L * threads;
  long jblocks = 1, ichunks = 1;
  if (batch < want) {
    jblocks = std::min(npanels, (want + batch - 1) / batch);
    if (batch * jblocks < want) ichunks = std::min(mpanels, (want + batch * jblocks - 1) / (batch * jblocks));
  }
  const long per_j = (npanels + jblocks - 1) / jblocks * 32, per_i = (mpanels + ichunks - 1) / ichunks * MR;
  const long tasks = batch * jblocks * ichunks;
#pragma omp parallel for schedule(static) num_threads(threads) if (tasks > 1 && batch * M * N * K > 2000000L)
  for (long t = 0; t < tasks; ++t) {
    const long p = t / (jblocks * ichunks), jb = t / ichunks % jblocks, ic = t % ichunks;
    const long j0 = jb * per_j, i0 = ic * per_i;
    if (j0 >= N || i0 >= M) continue;
    float* cp = c + p * scb;
    if (K <= 0) {
      for (long i = i0; i < std::min(M, i0 + per_i); ++i)
        for (long j = j0; j < std::min(N, j0 + per_j); ++j) cp[i * ldc + j] = beta == 0.0f ? 0.0f : beta * cp[i * ldc + j];
      continue;
    }
    block(K, Mat{a + p * sab, lda}, Mat{b + p * sbb, ldb}, cp, ldc, beta, i0, std::min(M, i0 + per_i), j0,
          std::min(N, j0 + per_j));
  }
  return 0;
}

}  // extern "C"
