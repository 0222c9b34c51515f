// Rotary position embedding (RoPE).
//
// Pair i (0 <= i < n_dims/2) of each head is rotated by the angle
//   theta_i = pos * freq_scale * freq_base^(-2i / n_dims).
// Two layouts say which two elements form pair i:
//   Normal  (2i, 2i+1)          llama as stored in GGUF (the converter permutes Wq, Wk for it)
//   NeoX    (i, i + n_dims/2)   GPT-NeoX, Falcon, Qwen2, Phi, ...
// Elements n_dims..head_dim-1 are left alone (partial rotary, n_dims < head_dim).
//
// The angles are computed in double (pos * frequency in F32 loses bits at long
// contexts); cos/sin are computed once per position and shared by every head.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "tandem/core/error.hpp"

namespace tandem {

enum class RopeLayout : std::uint8_t {
    Normal,  // rotate adjacent pairs (2i, 2i+1): llama as stored in GGUF
    NeoX,    // rotate (i, i + n_dims/2)
};

/// cs (n_dims,) = [cos theta_0, sin theta_0, cos theta_1, sin theta_1, ...] for `pos`.
inline void rope_coefficients(std::int64_t pos, std::int64_t n_dims, float freq_base, float freq_scale, float* cs) {
    const double p = static_cast<double>(pos) * static_cast<double>(freq_scale);
    for (std::int64_t i = 0; i < n_dims / 2; ++i) {
        const double theta =
            p * std::pow(static_cast<double>(freq_base), -2.0 * static_cast<double>(i) / static_cast<double>(n_dims));
        cs[2 * i] = static_cast<float>(std::cos(theta));
        cs[2 * i + 1] = static_cast<float>(std::sin(theta));
    }
}

/// Rotates x (n_heads, head_dim) in place with the coefficients of rope_coefficients.
inline void rope_apply(float* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t n_dims, const float* cs,
                       RopeLayout layout) noexcept {
    const std::int64_t half = n_dims / 2;
    for (std::int64_t h = 0; h < n_heads; ++h) {
        float* v = x + h * head_dim;
        for (std::int64_t i = 0; i < half; ++i) {
            const std::int64_t i0 = layout == RopeLayout::Normal ? 2 * i : i;
            const std::int64_t i1 = layout == RopeLayout::Normal ? 2 * i + 1 : i + half;
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float a = v[i0], b = v[i1];
            v[i0] = a * c - b * s;
            v[i1] = a * s + b * c;
        }
    }
}

/// Rotates x (n_heads, head_dim) in place for position `pos`. n_dims must be
/// even and <= head_dim (ConfigError otherwise).
inline void rope_inplace(float* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t n_dims, std::int64_t pos,
                         float freq_base, float freq_scale, RopeLayout layout) {
    if (n_dims < 0 || n_dims % 2 != 0 || n_dims > head_dim)
        throw ConfigError("rope: " + std::to_string(n_dims) + " rotated dimensions do not fit a head of " +
                          std::to_string(head_dim) + " (even, at most head_dim)");
    constexpr std::int64_t kStack = 256;
    float stack[kStack];
    float* cs = stack;
    std::unique_ptr<float[]> heap;
    if (n_dims > kStack) {
        heap = std::make_unique<float[]>(static_cast<std::size_t>(n_dims));
        cs = heap.get();
    }
    rope_coefficients(pos, n_dims, freq_base, freq_scale, cs);
    rope_apply(x, n_heads, head_dim, n_dims, cs, layout);
}

}  // namespace tandem
