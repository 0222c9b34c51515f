// Compile-time choice of the kernels' instruction set, and the few vector
// helpers shared by every kernel header.
//
// One path is compiled per translation unit, chosen from the compiler's target
// macros: AVX2 (with FMA and F16C) on x86-64, NEON on arm64, portable scalar
// code otherwise. Defining TANDEM_KERNELS_FORCE_SCALAR before including any
// kernel header selects the scalar path even where SIMD exists (the tests use
// it to compare paths).
//
// Every function whose body depends on that choice lives in an inline
// namespace named after the path (tandem::kernels_avx2, ...). Callers still
// write tandem::matmul, but a scalar TU and a SIMD TU linked into one program
// define different symbols, so the one-definition rule holds.
#pragma once

#include <cstdint>
#include <cstring>

#include "tandem/core/half.hpp"

#if defined(TANDEM_KERNELS_FORCE_SCALAR)
#define TANDEM_KERNELS_SCALAR 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define TANDEM_KERNELS_AVX2 1
#elif defined(__aarch64__) && defined(__ARM_NEON)
#define TANDEM_KERNELS_NEON 1
#else
#define TANDEM_KERNELS_SCALAR 1
#endif

#if defined(TANDEM_KERNELS_AVX2)
#include <immintrin.h>
#define TANDEM_KERNELS_ISA kernels_avx2
#elif defined(TANDEM_KERNELS_NEON)
#include <arm_neon.h>
#define TANDEM_KERNELS_ISA kernels_neon
#else
#define TANDEM_KERNELS_ISA kernels_scalar
#endif

// Opens/closes the namespace for path-dependent code: tandem::<isa>::.
#define TANDEM_KERNELS_BEGIN \
    namespace tandem {       \
    inline namespace TANDEM_KERNELS_ISA {
#define TANDEM_KERNELS_END \
    }                      \
    }

TANDEM_KERNELS_BEGIN

/// Name of the compiled path: "avx2", "neon" or "scalar" (for logs and benchmarks).
inline constexpr const char* kernels_isa() noexcept {
#if defined(TANDEM_KERNELS_AVX2)
    return "avx2";
#elif defined(TANDEM_KERNELS_NEON)
#if defined(__ARM_FEATURE_DOTPROD)
    return "neon-dotprod";
#else
    return "neon";
#endif
#else
    return "scalar";
#endif
}

namespace simd {

/// Reads a little-endian value from possibly unaligned memory.
template <typename T>
inline T load_unaligned(const void* p) noexcept {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

#if defined(TANDEM_KERNELS_AVX2)

inline float hsum(__m256 v) noexcept {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline std::int32_t hsum_i32(__m256i v) noexcept {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/// Eight F16 values to F32 (F16C).
inline __m256 load_f16x8(const std::uint16_t* p) noexcept {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

/// Eight BF16 values to F32: BF16 is the top half of an F32.
inline __m256 load_bf16x8(const std::uint16_t* p) noexcept {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/// One F16 scalar to F32 through F16C (exact, like fp16_to_fp32).
inline float f16_to_f32(std::uint16_t h) noexcept {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

#elif defined(TANDEM_KERNELS_NEON)

inline float hsum(float32x4_t v) noexcept { return vaddvq_f32(v); }

inline float32x4_t load_f16x4(const std::uint16_t* p) noexcept {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

inline float32x4_t load_bf16x4(const std::uint16_t* p) noexcept {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

inline float f16_to_f32(std::uint16_t h) noexcept {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/// Dot of 16 signed bytes with 16 signed bytes, added to four int32 lanes.
inline int32x4_t dot_i8x16(int32x4_t acc, int8x16_t a, int8x16_t b) noexcept {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    const int16x8_t hi = vmull_high_s8(a, b);
    return vpadalq_s16(vpadalq_s16(acc, lo), hi);
#endif
}

#else

inline float f16_to_f32(std::uint16_t h) noexcept { return fp16_to_fp32(h); }

#endif

}  // namespace simd

TANDEM_KERNELS_END
