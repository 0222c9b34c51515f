// Single-row dot products: one weight row (GGUF blocks) with one activation
// row. matmul uses tiled versions of the same arithmetic (matmul_quant.hpp,
// matmul_float.hpp); these are the building blocks for callers that need one
// dot, and the units the tests pin down.
//
// Quantized rows take quantized activations (Q8_0 for weights with a zero
// point, Q8_1 for weights with a minimum, whose s = d * sum(q) field carries
// the minimum's term). n is the number of elements, a multiple of 32.
#pragma once

#include <cstdint>

#include "tandem/core/half.hpp"
#include "tandem/gguf/types.hpp"
#include "tandem/kernels/block_dot.hpp"
#include "tandem/kernels/simd.hpp"

TANDEM_KERNELS_BEGIN

namespace kernels_detail {

// sum over blocks of d_w * d_a * dot(q_w - zero, q_a) + m_w * s_a (s_a = d_a * sum(q_a)).
template <GgmlType T, typename ABlock>
inline float vec_dot_quant(const typename QFormat<T>::Block* w, const ABlock* a, std::int64_t n) noexcept {
    using F = QFormat<T>;
    const std::int64_t nb = n / 32;
    float corr = 0.0f;
#if defined(TANDEM_KERNELS_AVX2)
    __m256 acc = _mm256_setzero_ps();
    for (std::int64_t b = 0; b < nb; ++b) {
        const __m256i p = dot_w16_i8(F::prep(w[b]), a[b].qs);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(F::d(w[b]) * simd::f16_to_f32(a[b].d)), acc);
        if constexpr (F::kMin) corr += F::m(w[b]) * simd::f16_to_f32(a[b].s);
    }
    return simd::hsum(acc) + corr;
#elif defined(TANDEM_KERNELS_NEON)
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (std::int64_t b = 0; b < nb; ++b) {
        const int32x4_t p = dot_w8(F::prep(w[b]), a[b].qs);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), F::d(w[b]) * simd::f16_to_f32(a[b].d));
        if constexpr (F::kMin) corr += F::m(w[b]) * simd::f16_to_f32(a[b].s);
    }
    return simd::hsum(acc) + corr;
#else
    float acc = 0.0f;
    for (std::int64_t b = 0; b < nb; ++b) {
        std::int32_t s = 0;
        for (int j = 0; j < 32; ++j) s += (F::quant(w[b], j) - F::kZero) * a[b].qs[j];
        acc += static_cast<float>(s) * (F::d(w[b]) * fp16_to_fp32(a[b].d));
        if constexpr (F::kMin) corr += F::m(w[b]) * fp16_to_fp32(a[b].s);
    }
    return acc + corr;
#endif
}

}  // namespace kernels_detail

inline float vec_dot_q8_0_q8_0(const BlockQ8_0* w, const BlockQ8_0* a, std::int64_t n) noexcept {
    return kernels_detail::vec_dot_quant<GgmlType::Q8_0>(w, a, n);
}
inline float vec_dot_q4_0_q8_0(const BlockQ4_0* w, const BlockQ8_0* a, std::int64_t n) noexcept {
    return kernels_detail::vec_dot_quant<GgmlType::Q4_0>(w, a, n);
}
inline float vec_dot_q5_0_q8_0(const BlockQ5_0* w, const BlockQ8_0* a, std::int64_t n) noexcept {
    return kernels_detail::vec_dot_quant<GgmlType::Q5_0>(w, a, n);
}
inline float vec_dot_q4_1_q8_1(const BlockQ4_1* w, const BlockQ8_1* a, std::int64_t n) noexcept {
    return kernels_detail::vec_dot_quant<GgmlType::Q4_1>(w, a, n);
}
inline float vec_dot_q5_1_q8_1(const BlockQ5_1* w, const BlockQ8_1* a, std::int64_t n) noexcept {
    return kernels_detail::vec_dot_quant<GgmlType::Q5_1>(w, a, n);
}

/// F32 (n,) . F32 (n,), any n.
inline float vec_dot_f32_f32(const float* w, const float* x, std::int64_t n) noexcept {
    std::int64_t i = 0;
    float s = 0.0f;
#if defined(TANDEM_KERNELS_AVX2)
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    s = simd::hsum(_mm256_add_ps(a0, a1));
#elif defined(TANDEM_KERNELS_NEON)
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vld1q_f32(w + i + 4), vld1q_f32(x + i + 4));
    }
    s = simd::hsum(vaddq_f32(a0, a1));
#endif
    for (; i < n; ++i) s += w[i] * x[i];
    return s;
}

/// F16 (n,) . F32 (n,), any n.
inline float vec_dot_f16_f32(const std::uint16_t* w, const float* x, std::int64_t n) noexcept {
    std::int64_t i = 0;
    float s = 0.0f;
#if defined(TANDEM_KERNELS_AVX2)
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(simd::load_f16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(simd::load_f16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    s = simd::hsum(_mm256_add_ps(a0, a1));
#elif defined(TANDEM_KERNELS_NEON)
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, simd::load_f16x4(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, simd::load_f16x4(w + i + 4), vld1q_f32(x + i + 4));
    }
    s = simd::hsum(vaddq_f32(a0, a1));
#endif
    for (; i < n; ++i) s += fp16_to_fp32(w[i]) * x[i];
    return s;
}

/// BF16 (n,) . F32 (n,), any n.
inline float vec_dot_bf16_f32(const std::uint16_t* w, const float* x, std::int64_t n) noexcept {
    std::int64_t i = 0;
    float s = 0.0f;
#if defined(TANDEM_KERNELS_AVX2)
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(simd::load_bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(simd::load_bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    s = simd::hsum(_mm256_add_ps(a0, a1));
#elif defined(TANDEM_KERNELS_NEON)
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, simd::load_bf16x4(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, simd::load_bf16x4(w + i + 4), vld1q_f32(x + i + 4));
    }
    s = simd::hsum(vaddq_f32(a0, a1));
#endif
    for (; i < n; ++i) s += bf16_to_fp32(w[i]) * x[i];
    return s;
}

TANDEM_KERNELS_END
