// Helpers shared by the kernel tests: random data, random weights in every
// format, and naive references written out loop by loop.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "tandem/core/half.hpp"
#include "tandem/gguf/quant.hpp"
#include "tandem/gguf/types.hpp"
#include "tandem/kernels/weight.hpp"

namespace tandem::test {

inline std::vector<float> random_floats(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

inline bool is_k_quant(GgmlType t) {
    return t == GgmlType::Q2_K || t == GgmlType::Q3_K || t == GgmlType::Q4_K || t == GgmlType::Q5_K ||
           t == GgmlType::Q6_K;
}

/// A (rows, cols) weight of `type` with random content. Types with a reference
/// quantizer are quantized from normal floats; the K-quants (no quantizer in
/// gguf/) are random bytes with small positive F16 super-block scales, which is
/// as valid a block as any the format allows.
inline std::vector<std::byte> random_weight(GgmlType type, std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
    const auto rb = static_cast<std::size_t>(row_bytes(type, static_cast<std::uint64_t>(cols)));
    std::vector<std::byte> data(rb * static_cast<std::size_t>(rows));
    if (!is_k_quant(type)) {
        for (std::int64_t r = 0; r < rows; ++r) {
            const auto x = random_floats(static_cast<std::size_t>(cols), seed + static_cast<std::uint32_t>(r), 0.5f);
            quantize_row(type, x.data(), data.data() + static_cast<std::size_t>(r) * rb, cols);
        }
        return data;
    }
    std::mt19937 rng(seed);
    for (auto& b : data) b = static_cast<std::byte>(rng() & 0xff);
    std::uniform_real_distribution<float> scale(0.001f, 0.02f);
    const std::size_t bs = type_traits(type).type_size;
    auto put = [&](std::size_t off, float v) {
        const std::uint16_t h = fp32_to_fp16(v);
        std::memcpy(data.data() + off, &h, 2);
    };
    for (std::size_t blk = 0; blk < data.size() / bs; ++blk) {
        const std::size_t o = blk * bs;
        switch (type) {
            case GgmlType::Q2_K:
                put(o + offsetof(BlockQ2_K, d), scale(rng));
                put(o + offsetof(BlockQ2_K, dmin), scale(rng));
                break;
            case GgmlType::Q3_K: put(o + offsetof(BlockQ3_K, d), scale(rng)); break;
            case GgmlType::Q4_K:
                put(o + offsetof(BlockQ4_K, d), scale(rng));
                put(o + offsetof(BlockQ4_K, dmin), scale(rng));
                break;
            case GgmlType::Q5_K:
                put(o + offsetof(BlockQ5_K, d), scale(rng));
                put(o + offsetof(BlockQ5_K, dmin), scale(rng));
                break;
            case GgmlType::Q6_K: put(o + offsetof(BlockQ6_K, d), scale(rng)); break;
            default: break;
        }
    }
    return data;
}

/// W as F32 (rows, cols), through the format reference dequantizer.
inline std::vector<float> dequantize_matrix(const WeightView& w) {
    std::vector<float> f(static_cast<std::size_t>(w.rows * w.cols));
    for (std::int64_t r = 0; r < w.rows; ++r) dequantize_row(w.type, w.row(r), f.data() + r * w.cols, w.cols);
    return f;
}

/// y (n, rows) = x (n, cols) @ W^T in double, and sum |w||x| per output (the scale of rounding errors).
inline void matmul_slow(const std::vector<float>& wf, std::int64_t rows, std::int64_t cols, const float* x,
                        std::int64_t n, std::vector<double>& y, std::vector<double>& mag) {
    y.assign(static_cast<std::size_t>(n * rows), 0.0);
    mag.assign(static_cast<std::size_t>(n * rows), 0.0);
    for (std::int64_t t = 0; t < n; ++t)
        for (std::int64_t r = 0; r < rows; ++r) {
            double s = 0.0, m = 0.0;
            for (std::int64_t c = 0; c < cols; ++c) {
                const double p = static_cast<double>(wf[static_cast<std::size_t>(r * cols + c)]) *
                                 static_cast<double>(x[t * cols + c]);
                s += p;
                m += std::fabs(p);
            }
            y[static_cast<std::size_t>(t * rows + r)] = s;
            mag[static_cast<std::size_t>(t * rows + r)] = m;
        }
}

/// Activations as the matmul sees them: each row through `act` (Q8_0, Q8_K) and back; F32 as is.
inline std::vector<float> act_roundtrip(const std::vector<float>& x, std::int64_t cols, GgmlType act) {
    if (act == GgmlType::F32) return x;
    std::vector<float> out(x.size());
    std::vector<std::byte> blocks(row_bytes(act, static_cast<std::uint64_t>(cols)));
    for (std::size_t r = 0; r < x.size() / static_cast<std::size_t>(cols); ++r) {
        quantize_row(act, x.data() + r * static_cast<std::size_t>(cols), blocks.data(), cols);
        dequantize_row(act, blocks.data(), out.data() + r * static_cast<std::size_t>(cols), cols);
    }
    return out;
}

}  // namespace tandem::test
