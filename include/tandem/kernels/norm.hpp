// RMSNorm: y = x / sqrt(mean(x^2) + eps) * w.
//
// The sum of squares is accumulated in double, as ggml does, so a 2048- or
// 8192-wide row loses no precision; the scaling runs in F32 (Eigen, vectorized).
#pragma once

#include <cmath>
#include <cstdint>

#include <Eigen/Core>

namespace tandem {

/// y (dim,) = x (dim,) / sqrt(mean(x^2) + eps) * w (dim,). y may alias x.
inline void rms_norm(const float* x, const float* w, float* y, std::int64_t dim, float eps) {
    using Vec = Eigen::Array<float, Eigen::Dynamic, 1>;
    const Eigen::Map<const Vec> xv(x, dim);
    const double ss = xv.cast<double>().square().sum();
    const float scale = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(dim)) + eps);
    Eigen::Map<Vec>(y, dim) = xv * scale * Eigen::Map<const Vec>(w, dim);
}

/// Row by row over x (n, dim) -> y (n, dim).
inline void rms_norm_rows(const float* x, const float* w, float* y, std::int64_t n, std::int64_t dim, float eps) {
    for (std::int64_t t = 0; t < n; ++t) rms_norm(x + t * dim, w, y + t * dim, dim, eps);
}

}  // namespace tandem
