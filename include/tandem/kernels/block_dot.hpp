// Integer dot products of one 32-element weight block with 32 8-bit
// activations: the inner step of every quantized matmul.
//
// For each format QFormat<type> gives the block's scale d, its zero point or
// minimum m, and (per instruction set) `prep`, which unpacks a block once into
// signed integers with the zero point removed, so that it can meet many tokens:
//
//   Q8_0: w = d * q,         q in [-127, 127]   sum(w*a) = d * dot(q, a)
//   Q4_0: w = d * (q - 8),   q in [0, 15]        = d * dot(q - 8, a)
//   Q5_0: w = d * (q - 16),  q in [0, 31]        = d * dot(q - 16, a)
//   Q4_1: w = d * q + m,     q in [0, 15]        = d * dot(q, a) + m * sum(a)
//   Q5_1: w = d * q + m,     q in [0, 31]        = d * dot(q, a) + m * sum(a)
//
// The minimum of Q4_1/Q5_1 becomes a per-block term m * sum(a) that callers
// add in F32 (kMin); everything else is an exact integer dot.
//
// Two AVX2 forms, chosen per use by matmul_quant.hpp (measured on Zen 3, whose
// limits are 2 integer multiplies and ~2 vector loads per cycle):
//  - prep  (W16): quants widened to int16 with the zero point removed, met by
//    int16 activations with vpmaddwd (16 products summed in pairs into 8
//    int32 lanes, two per block): block_dot_i32. (Batches of Q8_0 and Q4_0 use
//    the row-interleaved Packed8 of matmul_quant.hpp instead.)
//  - prep8 (W8): quants as bytes for vpmaddubsw (unsigned x signed bytes into
//    int16 pairs, then vpmaddwd by 1 into int32): the 4/5-bit quants go in
//    unsigned as stored (|pair| <= 2 * 31 * 128, no saturation), the zero
//    point becoming a correction; signed Q8_0 quants take the sign trick
//    |w| * (a * sign(w)) (|pair| <= 2 * 127 * 127 < 32767).
// NEON: signed x signed byte dots, vdotq_s32 where the CPU has it.
#pragma once

#include <cstdint>

#include "tandem/gguf/types.hpp"
#include "tandem/kernels/simd.hpp"

TANDEM_KERNELS_BEGIN

namespace kernels_detail {

#if defined(TANDEM_KERNELS_AVX2)
/// A block as 32 int16 (elements 0..15 in lo, 16..31 in hi).
struct W16 {
    __m256i lo, hi;
};
/// 16 low nibbles (lo) and 16 high nibbles (hi) of 16 bytes, as int16 minus `zero`.
inline W16 nibbles_i16(const std::uint8_t* qs, int zero) noexcept {
    const __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
    const __m256i z = _mm256_set1_epi16(static_cast<short>(zero));
    return {_mm256_sub_epi16(_mm256_and_si256(x, _mm256_set1_epi16(0x0f)), z),
            _mm256_sub_epi16(_mm256_srli_epi16(x, 4), z)};
}
/// 0x10 in int16 lane j where bit j of `bits16` is set (the fifth bit of Q5 quants).
inline __m256i high_bits_i16(std::uint32_t bits16) noexcept {
    const __m256i bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
                                          static_cast<short>(-32768));
    const __m256i v = _mm256_and_si256(_mm256_set1_epi16(static_cast<short>(bits16)), bit);
    return _mm256_and_si256(_mm256_cmpeq_epi16(v, bit), _mm256_set1_epi16(0x10));
}
inline W16 q5_i16(const std::uint8_t* qs, const std::uint8_t* qh, int zero) noexcept {
    W16 w = nibbles_i16(qs, 0);
    const std::uint32_t h = simd::load_unaligned<std::uint32_t>(qh);
    const __m256i z = _mm256_set1_epi16(static_cast<short>(zero));
    w.lo = _mm256_sub_epi16(_mm256_or_si256(w.lo, high_bits_i16(h & 0xffffu)), z);
    w.hi = _mm256_sub_epi16(_mm256_or_si256(w.hi, high_bits_i16(h >> 16)), z);
    return w;
}
/// 8 int32 lanes of dot(w, a) for 32 int16 activations at a.
inline __m256i dot_w16(const W16& w, const std::int16_t* a) noexcept {
    return _mm256_add_epi32(_mm256_madd_epi16(w.lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a))),
                            _mm256_madd_epi16(w.hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 16))));
}
/// The same with 32 int8 activations, widened on the fly.
inline __m256i dot_w16_i8(const W16& w, const std::int8_t* a) noexcept {
    const __m256i lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a)));
    const __m256i hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 16)));
    return _mm256_add_epi32(_mm256_madd_epi16(w.lo, lo), _mm256_madd_epi16(w.hi, hi));
}
/// 32 unsigned 4-bit quants as bytes: low nibbles are elements 0..15, high 16..31.
/// (The 16 bytes are loaded into both halves and the upper half shifted by 4.)
inline __m256i nibbles_u8(const std::uint8_t* qs) noexcept {
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
    const __m256i sh = _mm256_srlv_epi32(t, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(sh, _mm256_set1_epi8(0x0f));
}
/// 0x10 in byte j where bit j of `bits` is set.
inline __m256i high_bits_u8(std::uint32_t bits) noexcept {
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
    const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(0x10));
}
/// A block for vpmaddubsw: unsigned bytes u, and for signed Q8_0 quants the
/// signs to move onto the activations (|w| * (a * sign(w))).
struct W8 {
    __m256i u, sign;
};
#elif defined(TANDEM_KERNELS_NEON)
/// A block as 32 int8 (elements 0..15 in lo, 16..31 in hi).
struct W8 {
    int8x16_t lo, hi;
};
inline W8 nibbles_i8(const std::uint8_t* qs, int zero) noexcept {
    const uint8x16_t t = vld1q_u8(qs);
    const int8x16_t z = vdupq_n_s8(static_cast<std::int8_t>(zero));
    return {vsubq_s8(vreinterpretq_s8_u8(vandq_u8(t, vdupq_n_u8(0x0f))), z),
            vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(t, 4)), z)};
}
/// 0x10 in byte j where bit j of `bits16` is set (16 bits, 16 bytes).
inline int8x16_t high_bits_i8(std::uint32_t bits16) noexcept {
    const uint8x16_t v = vcombine_u8(vdup_n_u8(static_cast<std::uint8_t>(bits16)),
                                     vdup_n_u8(static_cast<std::uint8_t>(bits16 >> 8)));
    static const std::uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    return vreinterpretq_s8_u8(vandq_u8(vtstq_u8(v, vld1q_u8(kBit)), vdupq_n_u8(0x10)));
}
inline W8 q5_i8(const std::uint8_t* qs, const std::uint8_t* qh, int zero) noexcept {
    W8 w = nibbles_i8(qs, 0);
    const std::uint32_t h = simd::load_unaligned<std::uint32_t>(qh);
    const int8x16_t z = vdupq_n_s8(static_cast<std::int8_t>(zero));
    w.lo = vsubq_s8(vorrq_s8(w.lo, high_bits_i8(h & 0xffffu)), z);
    w.hi = vsubq_s8(vorrq_s8(w.hi, high_bits_i8(h >> 16)), z);
    return w;
}
/// 4 int32 lanes of dot(w, a) for 32 int8 activations at a.
inline int32x4_t dot_w8(const W8& w, const std::int8_t* a) noexcept {
    const int32x4_t acc = simd::dot_i8x16(vdupq_n_s32(0), w.lo, vld1q_s8(a));
    return simd::dot_i8x16(acc, w.hi, vld1q_s8(a + 16));
}
#endif

template <GgmlType T>
struct QFormat;

template <>
struct QFormat<GgmlType::Q8_0> {
    using Block = BlockQ8_0;
    static constexpr int kZero = 0;
    static constexpr bool kMin = false;
    static float d(const Block& b) noexcept { return simd::f16_to_f32(b.d); }
    static float m(const Block&) noexcept { return 0.0f; }
    static int quant(const Block& b, int j) noexcept { return b.qs[j]; }
#if defined(TANDEM_KERNELS_AVX2)
    static W16 prep(const Block& b) noexcept {
        return {_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs))),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16)))};
    }
    static W8 prep8(const Block& b) noexcept {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
        return {_mm256_sign_epi8(w, w), w};
    }
#elif defined(TANDEM_KERNELS_NEON)
    static W8 prep(const Block& b) noexcept { return {vld1q_s8(b.qs), vld1q_s8(b.qs + 16)}; }
#endif
};

template <>
struct QFormat<GgmlType::Q4_0> {
    using Block = BlockQ4_0;
    static constexpr int kZero = 8;
    static constexpr bool kMin = false;
    static float d(const Block& b) noexcept { return simd::f16_to_f32(b.d); }
    static float m(const Block&) noexcept { return 0.0f; }
    static int quant(const Block& b, int j) noexcept { return j < 16 ? (b.qs[j] & 0x0f) : (b.qs[j - 16] >> 4); }
#if defined(TANDEM_KERNELS_AVX2)
    static W16 prep(const Block& b) noexcept { return nibbles_i16(b.qs, kZero); }
    static W8 prep8(const Block& b) noexcept { return {nibbles_u8(b.qs), _mm256_setzero_si256()}; }
#elif defined(TANDEM_KERNELS_NEON)
    static W8 prep(const Block& b) noexcept { return nibbles_i8(b.qs, kZero); }
#endif
};

template <>
struct QFormat<GgmlType::Q4_1> {
    using Block = BlockQ4_1;
    static constexpr int kZero = 0;
    static constexpr bool kMin = true;
    static float d(const Block& b) noexcept { return simd::f16_to_f32(b.d); }
    static float m(const Block& b) noexcept { return simd::f16_to_f32(b.m); }
    static int quant(const Block& b, int j) noexcept { return j < 16 ? (b.qs[j] & 0x0f) : (b.qs[j - 16] >> 4); }
#if defined(TANDEM_KERNELS_AVX2)
    static W16 prep(const Block& b) noexcept { return nibbles_i16(b.qs, 0); }
    static W8 prep8(const Block& b) noexcept { return {nibbles_u8(b.qs), _mm256_setzero_si256()}; }
#elif defined(TANDEM_KERNELS_NEON)
    static W8 prep(const Block& b) noexcept { return nibbles_i8(b.qs, 0); }
#endif
};

template <>
struct QFormat<GgmlType::Q5_0> {
    using Block = BlockQ5_0;
    static constexpr int kZero = 16;
    static constexpr bool kMin = false;
    static float d(const Block& b) noexcept { return simd::f16_to_f32(b.d); }
    static float m(const Block&) noexcept { return 0.0f; }
    static int quant(const Block& b, int j) noexcept {
        const std::uint32_t qh = simd::load_unaligned<std::uint32_t>(b.qh);
        const int lo = j < 16 ? (b.qs[j] & 0x0f) : (b.qs[j - 16] >> 4);
        return lo | static_cast<int>(((qh >> j) & 1u) << 4);
    }
#if defined(TANDEM_KERNELS_AVX2)
    static W16 prep(const Block& b) noexcept { return q5_i16(b.qs, b.qh, kZero); }
    static W8 prep8(const Block& b) noexcept {
        return {_mm256_or_si256(nibbles_u8(b.qs), high_bits_u8(simd::load_unaligned<std::uint32_t>(b.qh))), _mm256_setzero_si256()};
    }
#elif defined(TANDEM_KERNELS_NEON)
    static W8 prep(const Block& b) noexcept { return q5_i8(b.qs, b.qh, kZero); }
#endif
};

template <>
struct QFormat<GgmlType::Q5_1> {
    using Block = BlockQ5_1;
    static constexpr int kZero = 0;
    static constexpr bool kMin = true;
    static float d(const Block& b) noexcept { return simd::f16_to_f32(b.d); }
    static float m(const Block& b) noexcept { return simd::f16_to_f32(b.m); }
    static int quant(const Block& b, int j) noexcept {
        const std::uint32_t qh = simd::load_unaligned<std::uint32_t>(b.qh);
        const int lo = j < 16 ? (b.qs[j] & 0x0f) : (b.qs[j - 16] >> 4);
        return lo | static_cast<int>(((qh >> j) & 1u) << 4);
    }
#if defined(TANDEM_KERNELS_AVX2)
    static W16 prep(const Block& b) noexcept { return q5_i16(b.qs, b.qh, 0); }
    static W8 prep8(const Block& b) noexcept {
        return {_mm256_or_si256(nibbles_u8(b.qs), high_bits_u8(simd::load_unaligned<std::uint32_t>(b.qh))), _mm256_setzero_si256()};
    }
#elif defined(TANDEM_KERNELS_NEON)
    static W8 prep(const Block& b) noexcept { return q5_i8(b.qs, b.qh, 0); }
#endif
};

/// The exact integer dot sum_j (q_j - zero) * a_j of a block with 32 int8
/// activations. Every path returns the same value (the tests check it).
template <GgmlType T>
inline std::int32_t block_dot_i32(const typename QFormat<T>::Block& w, const std::int8_t* a) noexcept {
    using F = QFormat<T>;
#if defined(TANDEM_KERNELS_AVX2)
    return simd::hsum_i32(dot_w16_i8(F::prep(w), a));
#elif defined(TANDEM_KERNELS_NEON)
    return vaddvq_s32(dot_w8(F::prep(w), a));
#else
    std::int32_t s = 0;
    for (int j = 0; j < 32; ++j) s += (F::quant(w, j) - F::kZero) * a[j];
    return s;
#endif
}

}  // namespace kernels_detail

TANDEM_KERNELS_END
