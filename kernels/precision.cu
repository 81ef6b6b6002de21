// Rounding to the 16-bit formats of reduced precision, values kept in the Dtype's storage.
//   round_bf16: y = bf16(x)   8 significant bits, float's exponent range
//   round_fp16: y = fp16(x)   11 significant bits, |y| <= 65504, subnormals down to 2^-24,
//                             beyond 65520 (the midpoint above 65504) +-inf
// Both round to nearest, ties to even, as the conversions of the hardware that computes in
// those formats (AMX's and AVX512-BF16's vcvtneps2bf16, CUDA's __float2bfloat16_rn /
// __float2half_rn); NaN stays NaN, -0 stays -0.
//
// Why values and not 16-bit arrays: a GEMM whose operands are rounded this way and that adds
// in float32 computes, product for product, what a bf16 / fp16 GEMM with fp32 accumulation
// computes (the product of two 8- or 11-bit significands is exact in float32's 24). So a layer
// rounds its operands (netdef/core/layer.py, Layer.operand) and every product path it has -
// im2col + GEMM, 1x1, depthwise, Winograd's transforms aside - keeps its code; a backend with a
// faster reduced GEMM (AMX through MKL, tensor cores) may take the hint that the operands are
// representable. A double Dtype is rounded to float first (two roundings: a tie may go the
// other way; reduced precision runs float32 nets).
#include "common.cuh"

DEVICE_FN float bf16_value(const float v) {
  const unsigned int u = float_bits(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bits_float((u | 0x00400000u) & 0xffff0000u);  // NaN: quiet
  // adding just under half of the dropped part's unit, plus the kept part's last bit, carries
  // into the kept part exactly when rounding to nearest even goes up (also up to inf)
  return bits_float((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
}

DEVICE_FN float fp16_value(const float v) {
  const unsigned int u = float_bits(v);
  const unsigned int sign = u & 0x80000000u, mag = u & 0x7fffffffu;
  if (mag > 0x7f800000u) return bits_float((u | 0x00400000u) & 0xffffe000u);  // NaN: quiet
  const float a = bits_float(mag);
  if (!(a < 65520.0f)) return bits_float(sign | 0x7f800000u);  // overflow: inf
  if (a < 6.103515625e-05f) {  // below 2^-14: fp16's subnormals, multiples of 2^-24 (exact)
    return bits_float(float_bits(round_even(a * 16777216.0f) * 5.9604644775390625e-08f) | sign);
  }
  return bits_float((u + 0xfffu + ((u >> 13) & 1u)) & 0xffffe000u);
}

SIMD_FN void bf16_segment(const Dtype* x, Dtype* y, const index_t first, const index_t last) {
  for (index_t t = first; t < last; ++t) y[t] = Dtype(bf16_value(float(x[t])));
}

SIMD_FN void fp16_segment(const Dtype* x, Dtype* y, const index_t first, const index_t last) {
  for (index_t t = first; t < last; ++t) y[t] = Dtype(fp16_value(float(x[t])));
}

// n segments of `tile` elements over x's `len` (one element per iteration on the GPU); y may be x.
KERNEL(round_bf16, (const index_t n, const Dtype* x, Dtype* y, const index_t len, const index_t tile)) {
  KERNEL_LOOP(i) { bf16_segment(x, y, i * tile, index_min(i * tile + tile, len)); }
}

KERNEL(round_fp16, (const index_t n, const Dtype* x, Dtype* y, const index_t len, const index_t tile)) {
  KERNEL_LOOP(i) { fp16_segment(x, y, i * tile, index_min(i * tile + tile, len)); }
}
