// Format-level conversions between F32 and every GGUF tensor type tandem
// handles: one entry point each way, dispatching on the GgmlType.
//
//   dequantize_row(type, src, dst, n): n elements (a multiple of the block size)
//       stored as `type` at src -> n floats. F32, F16, BF16, Q4_0, Q4_1, Q5_0,
//       Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K.
//   quantize_row(type, src, dst, n): n floats -> n / block_size blocks of `type`,
//       with ggml's reference quantizers (no importance matrix). F32, F16,
//       BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q8_K (round-to-nearest, in
//       quantize.hpp) and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (scale search, in
//       quantize_k.hpp).
//
// Any other type throws UnsupportedError naming it ("cannot dequantize
// IQ2_XXS tensors"); an n that is not a multiple of the block size throws
// ConfigError. The per-type functions (dequantize_row_q4_k, quantize_row_q8_0,
// ...) live in dequantize.hpp, quantize.hpp and quantize_k.hpp for kernels to
// call directly.
// These are scalar references: fast paths live in kernels/ and are tested
// against them.
#pragma once

#include <cstdint>
#include <string>

#include "tandem/core/error.hpp"
#include "tandem/gguf/dequantize.hpp"
#include "tandem/gguf/quantize.hpp"
#include "tandem/gguf/quantize_k.hpp"
#include "tandem/gguf/types.hpp"

namespace tandem {

namespace detail {
using DequantizeFn = void (*)(const void*, float*, std::int64_t);
using QuantizeFn = void (*)(const float*, void*, std::int64_t);

inline DequantizeFn find_dequantizer(GgmlType type) noexcept {
    switch (type) {
        case GgmlType::F32: return dequantize_row_f32;
        case GgmlType::F16: return dequantize_row_f16;
        case GgmlType::BF16: return dequantize_row_bf16;
        case GgmlType::Q4_0: return dequantize_row_q4_0;
        case GgmlType::Q4_1: return dequantize_row_q4_1;
        case GgmlType::Q5_0: return dequantize_row_q5_0;
        case GgmlType::Q5_1: return dequantize_row_q5_1;
        case GgmlType::Q8_0: return dequantize_row_q8_0;
        case GgmlType::Q8_1: return dequantize_row_q8_1;
        case GgmlType::Q2_K: return dequantize_row_q2_k;
        case GgmlType::Q3_K: return dequantize_row_q3_k;
        case GgmlType::Q4_K: return dequantize_row_q4_k;
        case GgmlType::Q5_K: return dequantize_row_q5_k;
        case GgmlType::Q6_K: return dequantize_row_q6_k;
        case GgmlType::Q8_K: return dequantize_row_q8_k;
        default: return nullptr;
    }
}

inline QuantizeFn find_quantizer(GgmlType type) noexcept {
    switch (type) {
        case GgmlType::F32: return quantize_row_f32;
        case GgmlType::F16: return quantize_row_f16;
        case GgmlType::BF16: return quantize_row_bf16;
        case GgmlType::Q4_0: return quantize_row_q4_0;
        case GgmlType::Q4_1: return quantize_row_q4_1;
        case GgmlType::Q5_0: return quantize_row_q5_0;
        case GgmlType::Q5_1: return quantize_row_q5_1;
        case GgmlType::Q8_0: return quantize_row_q8_0;
        case GgmlType::Q8_1: return quantize_row_q8_1;
        case GgmlType::Q8_K: return quantize_row_q8_k;
        case GgmlType::Q2_K: return quantize_row_q2_k;
        case GgmlType::Q3_K: return quantize_row_q3_k;
        case GgmlType::Q4_K: return quantize_row_q4_k;
        case GgmlType::Q5_K: return quantize_row_q5_k;
        case GgmlType::Q6_K: return quantize_row_q6_k;
        default: return nullptr;
    }
}

/// "Q4_0", or "type id 99" for an id outside the table.
inline std::string type_label(GgmlType type) {
    if (const auto t = find_type_traits(static_cast<std::uint32_t>(type))) return std::string(t->name);
    return "type id " + std::to_string(static_cast<std::uint32_t>(type));
}
}  // namespace detail

inline bool can_dequantize(GgmlType type) noexcept { return detail::find_dequantizer(type) != nullptr; }
inline bool can_quantize(GgmlType type) noexcept { return detail::find_quantizer(type) != nullptr; }

/// n elements of `type` at src -> n floats at dst (src: any alignment).
inline void dequantize_row(GgmlType type, const void* src, float* dst, std::int64_t n) {
    const auto fn = detail::find_dequantizer(type);
    if (fn == nullptr) throw UnsupportedError("cannot dequantize " + detail::type_label(type) + " tensors");
    fn(src, dst, n);
}

/// n floats at src -> n elements of `type` at dst (dst: row_bytes(type, n) bytes, any alignment).
inline void quantize_row(GgmlType type, const float* src, void* dst, std::int64_t n) {
    const auto fn = detail::find_quantizer(type);
    if (fn == nullptr) throw UnsupportedError("cannot quantize to " + detail::type_label(type));
    fn(src, dst, n);
}

}  // namespace tandem
