// bf16 GEMM with float32 accumulation on AVX512-BF16 (Zen 4, Cooper Lake, Sapphire Rapids):
//
//   C (M x N) = bf16(A) (M x K) . bf16(B) (K x N) + beta C,     float32 in, float32 out,
//
// bf16(x) rounding to nearest even as netdef's precision rule does (netdef/core/precision.py;
// values already rounded by Layer.operand pass through unchanged). The products of two bf16
// numbers are exact in float32 and VDPBF16PS adds two of them into a float32 accumulator, so
// this is the rule's "bf16 operands, float32 accumulation" at twice the float32 FMA rate: one
// 512-bit VDPBF16PS does 32 multiply-adds where VFMADD231PS does 16. Like every bf16 unit
// (MKL's and oneDNN's paths on these instructions too), the conversion and the dot products
// treat subnormal inputs as zero and flush subnormal results: bf16 subnormals are below
// 1.2e-38, far under anything a network's activations or weights hold.
//
// The CPU backend calls this where the CPU lists avx512_bf16 (netdef/backend/blas.py:
// OwnBf16Gemm, NETDEF_BF16_GEMM); the GPU's bf16 products are cuBLAS's. It is not a kernel
// family of kernels/: there is no device-neutral form of a register-blocked GEMM.
//
// Blocking (Goto / BLIS style, with a 2-core machine's L1 = 32 KB, L2 = 1 MB in mind):
//   * K in blocks of KC = 256 (128 pairs): a packed B panel (KC x NR = 32, 16 KB) stays in L1,
//     the packed A block (M x KC, 512 B per row) in L2 / L3;
//   * per K block the threads pack all of A in MR = 8 row panels (pairs of k as one 32-bit
//     value per row: the broadcast operand), then share out the NR = 32 column panels of B,
//     each packed into the thread's own buffer right before it is used (so B, which is the big
//     operand of a convolution - its column matrix - is read from memory once);
//   * where there are too few column panels for the threads (N = 25 .. 64: FCN's fc layers on
//     5 x 5, 7 x 7 planes) the row panels are cut into chunks as well;
//   * micro-kernel 8 x 32: 16 zmm accumulators, 2 loads of B and 8 broadcasts of A per pair of
//     k (16 VDPBF16PS), C read (beta != 0, or a later K block) and written once per K block.
// Packing reads any strides; the two layouts netdef passes (contiguous along k, or along the
// rows / columns) have vector paths, anything else a scalar one.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <vector>

namespace {

constexpr int MR = 8;
constexpr int NR = 32;
constexpr long KC = 256;
constexpr long KP = KC / 2;  // pairs of k per block

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// bf16 bits of x, nearest even, subnormals to (signed) zero, NaNs quiet: what VCVTNE2PS2BF16
// gives, for the scalar packing path.
inline uint32_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0) return (u >> 16) & 0x8000u;
  if ((u & 0x7fffffffu) > 0x7f800000u) return ((u >> 16) | 0x40u) & 0xffffu;
  return ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) & 0xffffu;
}

// A strided float matrix: element (line, k) at base[line * sl + k * sk]. A "line" is a row of
// A or a column of B: packing turns lines into pairs of k.
struct Operand {
  const float* base;
  long sl, sk;
  const float* at(long line, long k) const { return base + line * sl + k * sk; }
};

// A 16 x 16 transpose of 32-bit elements: r[i] holds row i; afterwards r[j] holds column j.
BF16_TARGET inline void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // u[4 g + q], 128-bit lane l: rows 4 g .. 4 g + 3 of column 4 l + q
  for (int g = 0; g < 16; g += 4) {
    u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
    u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
    u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
    u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
  }
  for (int q = 0; q < 4; ++q) {
    const __m512i v = _mm512_shuffle_i32x4(u[q], u[4 + q], 0x88), w = _mm512_shuffle_i32x4(u[q], u[4 + q], 0xdd);
    const __m512i v2 = _mm512_shuffle_i32x4(u[8 + q], u[12 + q], 0x88), w2 = _mm512_shuffle_i32x4(u[8 + q], u[12 + q], 0xdd);
    r[q] = _mm512_shuffle_i32x4(v, v2, 0x88);
    r[8 + q] = _mm512_shuffle_i32x4(v, v2, 0xdd);
    r[4 + q] = _mm512_shuffle_i32x4(w, w2, 0x88);
    r[12 + q] = _mm512_shuffle_i32x4(w, w2, 0xdd);
  }
}

// Where packing puts the pair p of line i: group (i / 8) at base + (i / 8) gstride, then
// dst[p R + i % 8]. B's panel: one group after the other (gstride 8, R = NR); A's MR panels:
// gstride MR KP, R = MR.
struct Packed {
  uint32_t* base;
  long gstride, R;
  // the 16 pairs p of lines i0 .. i0 + 15 (i0 a multiple of 16) held in v: low 8 dwords to one
  // group, high 8 to the next, `lines` of them (< 16 at the edge)
  BF16_TARGET void store16(long i0, long p, __m512i v, long lines) const {
    const __mmask16 m = lines >= 16 ? 0xffff : static_cast<__mmask16>((1u << lines) - 1);
    uint32_t* g = base + (i0 / 8) * gstride + p * R;
    _mm256_mask_storeu_epi32(g, static_cast<__mmask8>(m), _mm512_castsi512_si256(v));
    if (lines > 8)
      _mm256_mask_storeu_epi32(g + gstride, static_cast<__mmask8>(m >> 8), _mm512_extracti64x4_epi64(v, 1));
  }
};

// Pairs (bf16 x(line0 + i, k0 + 2p) | bf16 x(line0 + i, k0 + 2p + 1) << 16), p < (kc + 1) / 2,
// i < lines, into dst (lines counted from line0, line0's group first); the second half of the
// last pair is zero when kc is odd (it meets valid data of the other operand). Lines past the
// last up to a multiple of 8 are zeroed too: the micro-kernel computes them (and drops them).
BF16_TARGET void pack_lines(const Operand& x, long line0, long lines, long k0, long kc, const Packed& dst) {
  const long kp = (kc + 1) / 2;
  if (lines % 8)
    for (long p = 0; p < kp; ++p)
      for (long i = lines; i < (lines + 7) / 8 * 8; ++i) dst.base[(i / 8) * dst.gstride + p * dst.R + i % 8] = 0;
  if (x.sk == 1) {
    // lines contiguous along k: 16 lines x 32 k convert to 16 x 16 pairs, transposed in registers
    for (long i0 = 0; i0 < lines; i0 += 16) {
      const long n = std::min<long>(16, lines - i0);
      for (long k = 0; k < kc; k += 32) {
        const long nk = std::min<long>(32, kc - k);
        const __mmask16 lo = nk >= 16 ? 0xffff : static_cast<__mmask16>((1u << nk) - 1);
        const __mmask16 hi = nk >= 32 ? 0xffff : nk > 16 ? static_cast<__mmask16>((1u << (nk - 16)) - 1) : 0;
        __m512i r[16];
        for (long i = 0; i < 16; ++i) {
          if (i < n) {
            const float* src = x.at(line0 + i0 + i, k0 + k);
            r[i] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + 16), _mm512_maskz_loadu_ps(lo, src));
          } else {
            r[i] = _mm512_setzero_si512();
          }
        }
        transpose16(r);
        const long np = (nk + 1) / 2;
        for (long p = 0; p < np; ++p) dst.store16(i0, k / 2 + p, r[p], n);
      }
    }
  } else if (x.sl == 1) {
    // lines contiguous (k the slow axis): two k rows of 16 lines interleave into 16 pairs
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (long p = 0; p < kp; ++p) {
      const float* row0 = x.at(line0, k0 + 2 * p);
      const bool second = 2 * p + 1 < kc;
      for (long i0 = 0; i0 < lines; i0 += 16) {
        const long n = std::min<long>(16, lines - i0);
        const __mmask16 m = n >= 16 ? 0xffff : static_cast<__mmask16>((1u << n) - 1);
        const __m512 v0 = _mm512_maskz_loadu_ps(m, row0 + i0);
        const __m512 v1 = second ? _mm512_maskz_loadu_ps(m, row0 + x.sk + i0) : _mm512_setzero_ps();
        const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(v1, v0);  // v0's 16 low, v1's high
        dst.store16(i0, p, _mm512_permutexvar_epi16(interleave, both), n);
      }
    }
  } else {
    for (long i = 0; i < lines; ++i)
      for (long p = 0; p < kp; ++p) {
        const uint32_t lo = bf16_bits(*x.at(line0 + i, k0 + 2 * p));
        const uint32_t hi = 2 * p + 1 < kc ? bf16_bits(*x.at(line0 + i, k0 + 2 * p + 1)) : 0;
        dst.base[(i / 8) * dst.gstride + p * dst.R + i % 8] = lo | hi << 16;
      }
  }
}

// C[r, j] (r < mr, j < nr) = sum_p a[p, r] . b[p, j] + (accumulate ? beta C[r, j] : 0)
BF16_TARGET void micro_8x32(long kp, const uint32_t* a, const uint32_t* b, float* c, long ldc,
                            int mr, int nr, bool accumulate, float beta) {
  __m512 acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (long p = 0; p < kp; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b + p * NR);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + p * NR + 16);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[p * MR + r]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
    }
  }
  const __mmask16 m0 = nr >= 16 ? 0xffff : static_cast<__mmask16>((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? static_cast<__mmask16>((1u << (nr - 16)) - 1) : 0;
  const __m512 vb = _mm512_set1_ps(beta);
  for (int r = 0; r < mr; ++r) {
    float* row = c + r * ldc;
    __m512 y0 = acc[r][0], y1 = acc[r][1];
    if (accumulate) {  // C is read only when it counts: beta = 0 must ignore NaNs left in it
      y0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, row), y0);
      y1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, row + 16), y1);
    }
    _mm512_mask_storeu_ps(row, m0, y0);
    _mm512_mask_storeu_ps(row + 16, m1, y1);
  }
}

// Column panels packed at once: a task packs up to this many side by side (reading B's rows in
// runs of up to 8 x 32 floats, where one panel alone read 128 bytes per row: 2 x the rate on
// FCN's 64 x 576 x 12544) and then runs them.
constexpr long GROUP = 8;

std::mutex g_lock;  // one call at a time: the packed operands are shared buffers
std::vector<uint32_t> g_apack, g_bpack;

uint32_t* aligned(std::vector<uint32_t>& v, size_t n) {
  if (v.size() < n + 16) v.resize(n + 16);
  return v.data() + ((64 - reinterpret_cast<uintptr_t>(v.data()) % 64) % 64) / 4;
}

BF16_TARGET void gemm(long M, long N, long K, Operand A, Operand B, float* C, long ldc, float beta) {
  const long mpanels = (M + MR - 1) / MR;
  const long npanels = (N + NR - 1) / NR;
  const int threads = std::max(1, omp_get_max_threads());
  // panels per task: long runs of B where there are plenty of panels, one where few
  const long group = std::max<long>(1, std::min<long>(GROUP, npanels / (4 * threads)));
  const long ngroups = (npanels + group - 1) / group;
  // cut the row panels into chunks when the column groups alone cannot feed every thread evenly
  // (7 groups on 2 threads: 4 against 3)
  const long mchunks = ngroups >= 8 * threads ? 1 : std::min(mpanels, (8 * threads + ngroups - 1) / ngroups);
  const long per_chunk = (mpanels + mchunks - 1) / mchunks;
  const long tasks = ngroups * mchunks;
  std::lock_guard<std::mutex> guard(g_lock);
  uint32_t* apack = aligned(g_apack, mpanels * MR * KP);
  const long bsize = group * KP * NR;
  uint32_t* bpack = aligned(g_bpack, threads * bsize);
#pragma omp parallel num_threads(threads)
  {
    uint32_t* bpanels = bpack + omp_get_thread_num() * bsize;
    for (long k0 = 0; k0 < K; k0 += KC) {
      const long kc = std::min(KC, K - k0);
      const long kp = (kc + 1) / 2;
      const bool accumulate = k0 > 0 || beta != 0.0f;
      const float b = k0 > 0 ? 1.0f : beta;
#pragma omp for schedule(static)
      for (long i0 = 0; i0 < M; i0 += 16)  // two MR panels at a time
        pack_lines(A, i0, std::min<long>(16, M - i0), k0, kc, Packed{apack + (i0 / MR) * MR * KP, MR * KP, MR});
#pragma omp for schedule(static)
      for (long t = 0; t < tasks; ++t) {
        const long jg = t / mchunks, chunk = t % mchunks;
        const long j0 = jg * group * NR;
        const long cols = std::min<long>(group * NR, N - j0);
        // the group's panels one after the other: panel q is lines 32 q .. 32 q + 31
        for (long q = 0; q * NR < cols; ++q)
          pack_lines(B, j0 + q * NR, std::min<long>(NR, cols - q * NR), k0, kc, Packed{bpanels + q * KP * NR, 8, NR});
        const long ip1 = std::min(mpanels, (chunk + 1) * per_chunk);
        for (long q = 0; q * NR < cols; ++q) {
          const int nr = static_cast<int>(std::min<long>(NR, cols - q * NR));
          for (long ip = chunk * per_chunk; ip < ip1; ++ip) {
            const int mr = static_cast<int>(std::min<long>(MR, M - ip * MR));
            micro_8x32(kp, apack + ip * MR * KP, bpanels + q * KP * NR, C + ip * MR * ldc + j0 + q * NR, ldc, mr,
                       nr, accumulate, b);
          }
        }
      }
    }
  }
}

}  // namespace

extern "C" {

// 1 where this CPU runs netdef_gemm_bf16 (AVX512-BF16 and AVX512-BW/VL), else 0.
__attribute__((visibility("default"))) int netdef_gemm_bf16_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}

// C = bf16(A) bf16(B) + beta C. Strides in elements: A(m, k) at a[m * sam + k * sak], B(k, n) at
// b[k * sbk + n * sbn], C(m, n) at c[m * ldc + n]. Returns 0, or -1 where the CPU cannot.
__attribute__((visibility("default"))) int netdef_gemm_bf16(long M, long N, long K, const float* a, long sam,
                                                            long sak, const float* b, long sbk, long sbn,
                                                            float beta, float* c, long ldc) {
  if (!netdef_gemm_bf16_supported()) return -1;
  if (M <= 0 || N <= 0) return 0;
  if (K <= 0) {  // an empty sum: C = beta C
    for (long m = 0; m < M; ++m)
      for (long n = 0; n < N; ++n) c[m * ldc + n] = beta == 0.0f ? 0.0f : beta * c[m * ldc + n];
    return 0;
  }
  gemm(M, N, K, Operand{a, sam, sak}, Operand{b, sbn, sbk}, c, ldc, beta);
  return 0;
}

}  // extern "C"
