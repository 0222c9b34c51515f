// TEMPORARY naive ops so the model can be brought up before kernels/ lands.
// To be replaced by tandem/kernels/*.hpp and deleted.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tandem/core/thread_pool.hpp"
#include "tandem/gguf/reader.hpp"
#include "tandem/kernels/weight.hpp"
#include "tandem/model/config.hpp"

namespace tandem {

inline void matmul(const WeightView& w, const float* x, std::int64_t n, float* y, ThreadPool& pool) {
    pool.parallel_for(w.rows, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t r = b; r < e; ++r) {
            const float* wr = reinterpret_cast<const float*>(w.data + r * w.row_bytes);
            for (std::int64_t t = 0; t < n; ++t) {
                float s = 0;
                for (std::int64_t c = 0; c < w.cols; ++c) s += wr[c] * x[t * w.cols + c];
                y[t * w.rows + r] = s;
            }
        }
    });
}

inline void rms_norm(const float* x, const float* w, float* y, std::int64_t dim, float eps) {
    float ss = 0;
    for (std::int64_t i = 0; i < dim; ++i) ss += x[i] * x[i];
    const float s = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    for (std::int64_t i = 0; i < dim; ++i) y[i] = x[i] * s * w[i];
}

inline void rope_inplace(float* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t rope_dims,
                         std::int64_t pos, float base, float scale, RopeLayout) {
    for (std::int64_t h = 0; h < n_heads; ++h) {
        float* v = x + h * head_dim;
        for (std::int64_t i = 0; i < rope_dims; i += 2) {
            const float theta = scale * static_cast<float>(pos) * std::pow(base, -static_cast<float>(i) / static_cast<float>(rope_dims));
            const float c = std::cos(theta), s = std::sin(theta);
            const float a = v[i], b = v[i + 1];
            v[i] = a * c - b * s;
            v[i + 1] = a * s + b * c;
        }
    }
}

}  // namespace tandem
