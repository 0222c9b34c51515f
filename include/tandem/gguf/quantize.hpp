// Reference quantizers: F32 -> GGUF block formats, round-to-nearest exactly as
// ggml's reference quantizers (quantize_row_*_ref in ggml-quants.c) define them.
//
// These fix the bytes a model file gets, so they follow ggml's float operations
// in order: the same scale (d = max / -8 for Q4_0, amax / 127 for Q8_0, ...),
// the same reciprocal, the same rounding (truncation after +0.5 / +8.5 / +16.5
// for the 4- and 5-bit formats, roundf for Q8_0/Q8_1, round-half-even for
// Q8_K). Floating-point contraction is off in these functions, so
// `x * id + 8.5f` is two roundings on every compiler and CPU (ggml's own build
// may fuse it into an FMA where the target has one, which moves rare ties). Non-finite inputs give deterministic bytes (ggml
// leaves them undefined): every float -> integer conversion here saturates and
// maps NaN to 0 instead of invoking undefined behaviour.
//
// `dst` may have any alignment; it receives n / block_size blocks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "tandem/core/half.hpp"
#include "tandem/gguf/dequantize.hpp"
#include "tandem/gguf/types.hpp"

// Floating-point contraction off for one function: GCC takes a function
// attribute, clang a pragma at the top of the body (GCC ignores the standard
// FP_CONTRACT pragma in C++).
#if defined(__clang__)
#define TANDEM_NO_FP_CONTRACT_FN
#define TANDEM_NO_FP_CONTRACT_BODY _Pragma("clang fp contract(off)")
#elif defined(__GNUC__)
#define TANDEM_NO_FP_CONTRACT_FN __attribute__((optimize("fp-contract=off")))
#define TANDEM_NO_FP_CONTRACT_BODY
#else
#define TANDEM_NO_FP_CONTRACT_FN
#define TANDEM_NO_FP_CONTRACT_BODY
#endif

namespace tandem {

namespace detail {

template <typename Block>
inline void store_block(void* dst, std::int64_t i, const Block& b) noexcept {
    std::memcpy(static_cast<std::byte*>(dst) + static_cast<std::size_t>(i) * sizeof(Block), &b, sizeof(Block));
}

/// C's (int8_t)v where that is defined (truncation toward zero); saturates
/// outside [-128, 127] and maps NaN to 0.
inline int trunc_to_i8(float v) noexcept {
    if (!(v == v)) return 0;
    if (v >= 127.0f) return 127;
    if (v <= -128.0f) return -128;
    return static_cast<int>(v);
}

/// C's (uint8_t)v where defined; saturates outside [0, 255], NaN -> 0.
inline int trunc_to_u8(float v) noexcept {
    if (!(v > -1.0f)) return 0;
    if (v >= 255.0f) return 255;
    return static_cast<int>(v);
}

/// (int8_t)roundf(v): round half away from zero; saturating, NaN -> 0.
inline int round_to_i8(float v) noexcept {
    if (!(v == v)) return 0;
    if (v >= 127.0f) return 127;
    if (v <= -128.0f) return -128;
    return static_cast<int>(std::round(v));
}

/// ggml's nearest_int: round half to even via the 1.5 * 2^23 trick, valid for
/// |f| <= 2^22 - 1 (callers stay far inside). Defined for every input.
inline int nearest_int(float f) noexcept {
    const float v = f + 12582912.0f;
    std::int32_t i;
    std::memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/// ggml's MAX(a, b) macro: a > b ? a : b (differs from std::max for NaN).
inline float max_like_ggml(float a, float b) noexcept { return a > b ? a : b; }

}  // namespace detail

inline void quantize_row_f32(const float* x, void* dst, std::int64_t n) {
    detail::count_blocks(n, 1, "F32");
    if (n > 0) std::memcpy(dst, x, static_cast<std::size_t>(n) * sizeof(float));
}

inline void quantize_row_f16(const float* x, void* dst, std::int64_t n) {
    detail::count_blocks(n, 1, "F16");
    auto* p = static_cast<std::byte*>(dst);
    for (std::int64_t i = 0; i < n; ++i) {
        const std::uint16_t h = fp32_to_fp16(x[i]);
        std::memcpy(p + 2 * i, &h, 2);
    }
}

inline void quantize_row_bf16(const float* x, void* dst, std::int64_t n) {
    detail::count_blocks(n, 1, "BF16");
    auto* p = static_cast<std::byte*>(dst);
    for (std::int64_t i = 0; i < n; ++i) {
        const std::uint16_t h = fp32_to_bf16(x[i]);
        std::memcpy(p + 2 * i, &h, 2);
    }
}

/// Q4_0: d = max / -8 where max is the first element of largest magnitude, so
/// that element lands exactly on q = 0; q = min(15, trunc(x / d + 8.5)).
TANDEM_NO_FP_CONTRACT_FN inline void quantize_row_q4_0(const float* x, void* dst, std::int64_t n) {
    TANDEM_NO_FP_CONTRACT_BODY
    const auto nb = detail::count_blocks(n, kQK4_0, "Q4_0");
    for (std::int64_t i = 0; i < nb; ++i, x += kQK4_0) {
        float amax = 0.0f, max = 0.0f;
        for (std::uint32_t j = 0; j < kQK4_0; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        BlockQ4_0 b{};
        b.d = fp32_to_fp16(d);
        for (std::uint32_t j = 0; j < kQK4_0 / 2; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[j + kQK4_0 / 2] * id;
            const int q0 = std::min(15, detail::trunc_to_i8(x0 + 8.5f));
            const int q1 = std::min(15, detail::trunc_to_i8(x1 + 8.5f));
            b.qs[j] = static_cast<std::uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
        }
        detail::store_block(dst, i, b);
    }
}

/// Q4_1: d = (max - min) / 15, m = min; q = min(15, trunc((x - min) / d + 0.5)).
TANDEM_NO_FP_CONTRACT_FN inline void quantize_row_q4_1(const float* x, void* dst, std::int64_t n) {
    TANDEM_NO_FP_CONTRACT_BODY
    const auto nb = detail::count_blocks(n, kQK4_1, "Q4_1");
    for (std::int64_t i = 0; i < nb; ++i, x += kQK4_1) {
        float min = std::numeric_limits<float>::max();
        float max = -std::numeric_limits<float>::max();
        for (std::uint32_t j = 0; j < kQK4_1; ++j) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        BlockQ4_1 b{};
        b.d = fp32_to_fp16(d);
        b.m = fp32_to_fp16(min);
        for (std::uint32_t j = 0; j < kQK4_1 / 2; ++j) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[j + kQK4_1 / 2] - min) * id;
            const int q0 = std::min(15, detail::trunc_to_i8(x0 + 0.5f));
            const int q1 = std::min(15, detail::trunc_to_i8(x1 + 0.5f));
            b.qs[j] = static_cast<std::uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
        }
        detail::store_block(dst, i, b);
    }
}

/// Q5_0: d = max / -16; q = min(31, trunc(x / d + 16.5)); bit 4 goes to qh.
TANDEM_NO_FP_CONTRACT_FN inline void quantize_row_q5_0(const float* x, void* dst, std::int64_t n) {
    TANDEM_NO_FP_CONTRACT_BODY
    const auto nb = detail::count_blocks(n, kQK5_0, "Q5_0");
    for (std::int64_t i = 0; i < nb; ++i, x += kQK5_0) {
        float amax = 0.0f, max = 0.0f;
        for (std::uint32_t j = 0; j < kQK5_0; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        BlockQ5_0 b{};
        b.d = fp32_to_fp16(d);
        std::uint32_t qh = 0;
        for (std::uint32_t j = 0; j < kQK5_0 / 2; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[j + kQK5_0 / 2] * id;
            const auto q0 = static_cast<std::uint32_t>(std::min(31, detail::trunc_to_i8(x0 + 16.5f)));
            const auto q1 = static_cast<std::uint32_t>(std::min(31, detail::trunc_to_i8(x1 + 16.5f)));
            b.qs[j] = static_cast<std::uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 & 0x10u) >> 4) << j;
            qh |= ((q1 & 0x10u) >> 4) << (j + kQK5_0 / 2);
        }
        std::memcpy(b.qh, &qh, sizeof qh);
        detail::store_block(dst, i, b);
    }
}

/// Q5_1: d = (max - min) / 31, m = min; q = trunc((x - min) / d + 0.5).
TANDEM_NO_FP_CONTRACT_FN inline void quantize_row_q5_1(const float* x, void* dst, std::int64_t n) {
    TANDEM_NO_FP_CONTRACT_BODY
    const auto nb = detail::count_blocks(n, kQK5_1, "Q5_1");
    for (std::int64_t i = 0; i < nb; ++i, x += kQK5_1) {
        float min = std::numeric_limits<float>::max();
        float max = -std::numeric_limits<float>::max();
        for (std::uint32_t j = 0; j < kQK5_1; ++j) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        BlockQ5_1 b{};
        b.d = fp32_to_fp16(d);
        b.m = fp32_to_fp16(min);
        std::uint32_t qh = 0;
        for (std::uint32_t j = 0; j < kQK5_1 / 2; ++j) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[j + kQK5_1 / 2] - min) * id;
            const auto q0 = static_cast<std::uint32_t>(detail::trunc_to_u8(x0 + 0.5f));
            const auto q1 = static_cast<std::uint32_t>(detail::trunc_to_u8(x1 + 0.5f));
            b.qs[j] = static_cast<std::uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 & 0x10u) >> 4) << j;
            qh |= ((q1 & 0x10u) >> 4) << (j + kQK5_1 / 2);
        }
        std::memcpy(b.qh, &qh, sizeof qh);
        detail::store_block(dst, i, b);
    }
}

/// Q8_0: d = amax / 127; q = roundf(x / d).
inline void quantize_row_q8_0(const float* x, void* dst, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK8_0, "Q8_0");
    for (std::int64_t i = 0; i < nb; ++i, x += kQK8_0) {
        float amax = 0.0f;
        for (std::uint32_t j = 0; j < kQK8_0; ++j) amax = detail::max_like_ggml(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        BlockQ8_0 b{};
        b.d = fp32_to_fp16(d);
        for (std::uint32_t j = 0; j < kQK8_0; ++j) b.qs[j] = static_cast<std::int8_t>(detail::round_to_i8(x[j] * id));
        detail::store_block(dst, i, b);
    }
}

/// Q8_1: as Q8_0, plus s = sum(q) * d (with the F32 d, stored as F16).
inline void quantize_row_q8_1(const float* x, void* dst, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK8_1, "Q8_1");
    for (std::int64_t i = 0; i < nb; ++i, x += kQK8_1) {
        float amax = 0.0f;
        for (std::uint32_t j = 0; j < kQK8_1; ++j) amax = detail::max_like_ggml(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        BlockQ8_1 b{};
        b.d = fp32_to_fp16(d);
        int sum = 0;
        for (std::uint32_t j = 0; j < kQK8_1; ++j) {
            b.qs[j] = static_cast<std::int8_t>(detail::round_to_i8(x[j] * id));
            sum += b.qs[j];
        }
        b.s = fp32_to_fp16(static_cast<float>(sum) * d);
        detail::store_block(dst, i, b);
    }
}

/// Q8_K: iscale = -127 / max (max the first element of largest magnitude);
/// q = min(127, nearest_int(iscale * x)) rounding half to even; d = 1 / iscale
/// as F32; bsums[k] = sum of q[16k .. 16k+15]. An all-zero block is all zeros.
TANDEM_NO_FP_CONTRACT_FN inline void quantize_row_q8_k(const float* x, void* dst, std::int64_t n) {
    TANDEM_NO_FP_CONTRACT_BODY
    const auto nb = detail::count_blocks(n, kQK_K, "Q8_K");
    for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
        BlockQ8_K b{};
        float amax = 0.0f, max = 0.0f;
        for (std::uint32_t j = 0; j < kQK_K; ++j) {
            const float ax = std::fabs(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax != 0.0f && std::isfinite(amax)) {
            const float iscale = -127.0f / max;
            for (std::uint32_t j = 0; j < kQK_K; ++j) {
                const float v = iscale * x[j];
                // |v| <= 127 for finite input; NaN inputs stay out of nearest_int's range.
                const int q = (v == v) ? detail::nearest_int(v) : 0;
                b.qs[j] = static_cast<std::int8_t>(std::clamp(q, -128, 127));
            }
            for (std::uint32_t k = 0; k < kQK_K / 16; ++k) {
                int sum = 0;
                for (std::uint32_t l = 0; l < 16; ++l) sum += b.qs[16 * k + l];
                b.bsums[k] = static_cast<std::int16_t>(sum);
            }
            b.d = 1.0f / iscale;
        }
        detail::store_block(dst, i, b);
    }
}

}  // namespace tandem
