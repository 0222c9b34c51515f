// Integer dot products of K-quant weight rows (Q4_K, Q5_K, Q6_K) with Q8_K
// activations (one F32 scale per 256 values, plus the sums of each 16 quants),
// and the Q8_K activation quantizer.
//
// A super-block of 256 weights holds sub-block scales; the dot stays in
// integers across the whole super-block (the sub-block scales are applied with
// vpmaddwd) and meets floats once:
//   Q4_K/Q5_K: sum = d*d_a * sum_s sc_s dot(q_s, a_s) - dmin*d_a * sum_s m_s sum(a_s)
//   Q6_K:      sum = d*d_a * sum_g sc_g (dot(q_g, a_g) - 32 sum(a_g))      (g: 16 values)
// where sum(a) comes from the activation block's bsums. This is what makes
// K-quant decode bandwidth-bound instead of bound by dequantization.
//
// quantize_row_q8_K_fast produces exactly the blocks of the reference
// quantizer (max-magnitude value to -127, round half to even).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "tandem/core/half.hpp"
#include "tandem/gguf/types.hpp"
#include "tandem/kernels/simd.hpp"

TANDEM_KERNELS_BEGIN

namespace kernels_detail {

/// The 8 six-bit scales (sc[0..7]) and mins (m[0..7]) of a Q4_K/Q5_K super-block,
/// unpacked from its 12 bytes (4 at a time in 32-bit words).
inline void unpack_k4_scales(const std::uint8_t* packed, std::uint8_t sc[8], std::uint8_t m[8]) noexcept {
    std::uint32_t u[3];
    std::memcpy(u, packed, 12);
    constexpr std::uint32_t k6 = 0x3f3f3f3f, k4 = 0x0f0f0f0f, k2 = 0x03030303;
    const std::uint32_t sc_lo = u[0] & k6;                              // sc 0..3
    const std::uint32_t sc_hi = (u[2] & k4) | (((u[0] >> 6) & k2) << 4);  // sc 4..7
    const std::uint32_t m_lo = u[1] & k6;                               // m 0..3
    const std::uint32_t m_hi = ((u[2] >> 4) & k4) | (((u[1] >> 6) & k2) << 4);  // m 4..7
    std::memcpy(sc, &sc_lo, 4);
    std::memcpy(sc + 4, &sc_hi, 4);
    std::memcpy(m, &m_lo, 4);
    std::memcpy(m + 4, &m_hi, 4);
}

/// sum_s m[s] * (bsums[2s] + bsums[2s+1]).
inline std::int32_t k4_min_dot(const std::uint8_t m[8], const std::int16_t bsums[16]) noexcept {
    std::int32_t s = 0;
    for (int i = 0; i < 8; ++i) s += static_cast<std::int32_t>(m[i]) * (bsums[2 * i] + bsums[2 * i + 1]);
    return s;
}

#if defined(TANDEM_KERNELS_AVX2)
/// 16 int16 lanes all equal to lane k of v (v: 8 int16 in both 128-bit halves).
inline __m256i splat_i16(__m256i v, int k) noexcept {
    const __m256i idx = _mm256_set1_epi16(static_cast<short>((2 * k) | ((2 * k + 1) << 8)));
    return _mm256_shuffle_epi8(v, idx);
}

/// Q4_K (kHigh = false) or Q5_K (kHigh = true) super-block dot, integer part:
/// 8 int32 lanes of sum_s sc_s * dot(q_s, a_s).
template <bool kHigh>
inline __m256i k4_block_dot(const std::uint8_t* qs, const std::uint8_t* qh, const std::uint8_t sc[8],
                            const std::int8_t* a) noexcept {
    std::uint64_t sc64;
    std::memcpy(&sc64, sc, 8);
    const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc64))));
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256i hbits = _mm256_setzero_si256();
    if constexpr (kHigh) hbits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
    __m256i sum = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * j));
        __m256i lo = _mm256_and_si256(q, low4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
        if constexpr (kHigh) {
            const __m256i one = _mm256_set1_epi8(1);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), one), 4));
        }
        const __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 64 * j)));
        const __m256i phi =
            _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 64 * j + 32)));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(plo, splat_i16(scales, 2 * j)));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(phi, splat_i16(scales, 2 * j + 1)));
    }
    return sum;
}
#endif

template <bool kHigh, typename Block>
inline float vec_dot_k4(const Block* w, const BlockQ8_K* a, std::int64_t n) noexcept {
    const std::int64_t nb = n / 256;
    float summ = 0.0f;
#if defined(TANDEM_KERNELS_AVX2)
    __m256 acc = _mm256_setzero_ps();
#else
    float acc = 0.0f;
#endif
    for (std::int64_t i = 0; i < nb; ++i) {
        std::uint8_t sc[8], m[8];
        unpack_k4_scales(w[i].scales, sc, m);
        const float d = fp16_to_fp32(w[i].d) * a[i].d;
        const float dmin = fp16_to_fp32(w[i].dmin) * a[i].d;
        summ += dmin * static_cast<float>(k4_min_dot(m, a[i].bsums));
        const std::uint8_t* qh = nullptr;
        if constexpr (kHigh) qh = w[i].qh;
#if defined(TANDEM_KERNELS_AVX2)
        _mm_prefetch(reinterpret_cast<const char*>(w + i) + 512, _MM_HINT_T0);  // rows stream from memory
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(k4_block_dot<kHigh>(w[i].qs, qh, sc, a[i].qs)), acc);
#else
        std::int32_t isum = 0;
        for (int j = 0; j < 4; ++j)
            for (int l = 0; l < 32; ++l) {
                int lo = w[i].qs[32 * j + l] & 0x0f, hi = w[i].qs[32 * j + l] >> 4;
                if constexpr (kHigh) {
                    lo += ((qh[l] >> (2 * j)) & 1) << 4;
                    hi += ((qh[l] >> (2 * j + 1)) & 1) << 4;
                }
                isum += sc[2 * j] * lo * a[i].qs[64 * j + l] + sc[2 * j + 1] * hi * a[i].qs[64 * j + 32 + l];
            }
        acc += d * static_cast<float>(isum);
#endif
    }
#if defined(TANDEM_KERNELS_AVX2)
    return simd::hsum(acc) - summ;
#else
    return acc - summ;
#endif
}

}  // namespace kernels_detail

/// Q4_K row (n/256 blocks) . Q8_K row.
inline float vec_dot_q4_K_q8_K(const BlockQ4_K* w, const BlockQ8_K* a, std::int64_t n) noexcept {
    return kernels_detail::vec_dot_k4<false>(w, a, n);
}

/// Q5_K row . Q8_K row.
inline float vec_dot_q5_K_q8_K(const BlockQ5_K* w, const BlockQ8_K* a, std::int64_t n) noexcept {
    return kernels_detail::vec_dot_k4<true>(w, a, n);
}

/// Q6_K row . Q8_K row.
inline float vec_dot_q6_K_q8_K(const BlockQ6_K* w, const BlockQ8_K* a, std::int64_t n) noexcept {
    const std::int64_t nb = n / 256;
#if defined(TANDEM_KERNELS_AVX2)
    __m256 acc = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (std::int64_t i = 0; i < nb; ++i) {
        const auto& b = w[i];
        _mm_prefetch(reinterpret_cast<const char*>(w + i) + 512, _MM_HINT_T0);  // rows stream from memory
        const float d = fp16_to_fp32(b.d) * a[i].d;
        // Scales as int16: lanes 0..7 (first half of the block) and 8..15 (second half),
        // each half broadcast to both 128-bit lanes so an in-lane shuffle can pick any.
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
        const __m256i sc_half[2] = {_mm256_permute2x128_si256(sc16, sc16, 0x00),
                                    _mm256_permute2x128_si256(sc16, sc16, 0x11)};
        // The -32 offset: 32 * sum_g sc_g * bsums_g.
        const __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i].bsums)));
        __m256i sum = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
        for (int h = 0; h < 2; ++h) {
            const std::uint8_t* ql = b.ql + 64 * h;
            const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
            const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x03)), 4)),
                _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x0c)), 2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, _mm256_set1_epi8(0x30))),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(static_cast<char>(0xc0))), 2))};
            for (int k = 0; k < 4; ++k) {
                const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i].qs + 128 * h + 32 * k));
                const __m256i p = _mm256_maddubs_epi16(q[k], av);
                // Lanes 0..7 hold values 0..15 (scale 2k), lanes 8..15 values 16..31 (scale 2k+1).
                const __m256i s = _mm256_shuffle_epi8(
                    sc_half[h], _mm256_setr_epi8(static_cast<char>(4 * k), static_cast<char>(4 * k + 1),
                                                 static_cast<char>(4 * k), static_cast<char>(4 * k + 1),
                                                 static_cast<char>(4 * k), static_cast<char>(4 * k + 1),
                                                 static_cast<char>(4 * k), static_cast<char>(4 * k + 1),
                                                 static_cast<char>(4 * k), static_cast<char>(4 * k + 1),
                                                 static_cast<char>(4 * k), static_cast<char>(4 * k + 1),
                                                 static_cast<char>(4 * k), static_cast<char>(4 * k + 1),
                                                 static_cast<char>(4 * k), static_cast<char>(4 * k + 1),
                                                 static_cast<char>(4 * k + 2), static_cast<char>(4 * k + 3),
                                                 static_cast<char>(4 * k + 2), static_cast<char>(4 * k + 3),
                                                 static_cast<char>(4 * k + 2), static_cast<char>(4 * k + 3),
                                                 static_cast<char>(4 * k + 2), static_cast<char>(4 * k + 3),
                                                 static_cast<char>(4 * k + 2), static_cast<char>(4 * k + 3),
                                                 static_cast<char>(4 * k + 2), static_cast<char>(4 * k + 3),
                                                 static_cast<char>(4 * k + 2), static_cast<char>(4 * k + 3),
                                                 static_cast<char>(4 * k + 2), static_cast<char>(4 * k + 3)));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, s));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
    }
    return simd::hsum(acc);
#else
    float acc = 0.0f;
    for (std::int64_t i = 0; i < nb; ++i) {
        const auto& b = w[i];
        std::int32_t isum = 0;
        for (int h = 0; h < 2; ++h)
            for (int l = 0; l < 32; ++l) {
                const std::uint8_t* ql = b.ql + 64 * h;
                const std::uint8_t qh = b.qh[32 * h + l];
                const int q[4] = {(ql[l] & 0xF) | ((qh & 3) << 4), (ql[l + 32] & 0xF) | (((qh >> 2) & 3) << 4),
                                  (ql[l] >> 4) | (((qh >> 4) & 3) << 4), (ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4)};
                for (int k = 0; k < 4; ++k)
                    isum += b.scales[8 * h + 2 * k + l / 16] * (q[k] - 32) * a[i].qs[128 * h + 32 * k + l];
            }
        acc += fp16_to_fp32(b.d) * a[i].d * static_cast<float>(isum);
    }
    return acc;
#endif
}

/// F32 (n,) -> Q8_K blocks (n/256,), identical to the reference quantizer. n % 256 == 0.
inline void quantize_row_q8_K_fast(const float* x, BlockQ8_K* y, std::int64_t n) noexcept {
    for (std::int64_t i = 0; i < n / 256; ++i, x += 256) {
        BlockQ8_K& b = y[i];
        float amax = 0.0f;
#if defined(TANDEM_KERNELS_AVX2)
        __m256 m = _mm256_setzero_ps();
        const __m256 sign = _mm256_set1_ps(-0.0f);
        for (int j = 0; j < 256; j += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), m);  // NaN-blind
        alignas(32) float mm[8];
        _mm256_store_ps(mm, m);
        for (float v : mm) amax = std::max(amax, v);
#else
        for (int j = 0; j < 256; ++j)
            if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]);
#endif
        if (!(amax != 0.0f && std::isfinite(amax))) {
            std::memset(&b, 0, sizeof b);
            continue;
        }
        float max = 0.0f;  // the first value of largest magnitude, as the reference picks it
        for (int j = 0; j < 256; ++j)
            if (std::fabs(x[j]) == amax) {
                max = x[j];
                break;
            }
        const float iscale = -127.0f / max;
#if defined(TANDEM_KERNELS_AVX2)
        const __m256 s = _mm256_set1_ps(iscale);
        for (int j = 0; j < 256; j += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; ++k) {
                __m256 v = _mm256_mul_ps(s, _mm256_loadu_ps(x + j + 8 * k));
                v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));  // NaN -> 0
                q[k] = _mm256_cvtps_epi32(v);                           // round half to even
            }
            b.bsums[j / 16] = static_cast<std::int16_t>(simd::hsum_i32(_mm256_add_epi32(q[0], q[1])));
            b.bsums[j / 16 + 1] = static_cast<std::int16_t>(simd::hsum_i32(_mm256_add_epi32(q[2], q[3])));
            const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.qs + j),
                                _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
        }
#else
        for (int j = 0; j < 256; ++j) {
            const float v = iscale * x[j];
            // Round half to even, as the reference's nearest_int does; NaN -> 0.
            b.qs[j] = static_cast<std::int8_t>(v == v ? std::clamp(static_cast<int>(std::nearbyint(v)), -128, 127) : 0);
        }
        for (int k = 0; k < 16; ++k) {
            int sum = 0;
            for (int l = 0; l < 16; ++l) sum += b.qs[16 * k + l];
            b.bsums[k] = static_cast<std::int16_t>(sum);
        }
#endif
        b.d = 1.0f / iscale;
    }
}

TANDEM_KERNELS_END
