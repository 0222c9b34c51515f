// Scaled dot-product attention over a KV cache, with grouped-query heads.
//
// Shapes (row-major F32):
//   q    (n_heads, head_dim)           one token; (n, n_heads*head_dim) for a batch
//   K, V (n_kv, kv_stride)             position p's keys at k + p*kv_stride, kv head g at +g*head_dim
//   out  (n_heads, head_dim)           (n, n_heads*head_dim) for a batch
// Query head h reads kv head g = h / (n_heads / n_kv_heads) (GQA; MQA when
// n_kv_heads = 1, plain multi-head when equal).
//
//   out_h = softmax(scale * K_g q_h) V_g
//
// Per head the two products are matrix-vector (one token) or matrix-matrix
// (a batch: all its queries at once) products on Eigen maps of the cache, so
// nothing is copied. Heads are independent and split over a pool.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include <Eigen/Core>

#include "tandem/core/error.hpp"
#include "tandem/core/thread_pool.hpp"

namespace tandem {

struct AttentionDims {
    std::int64_t n_heads = 0;
    std::int64_t n_kv_heads = 0;
    std::int64_t head_dim = 0;
    std::int64_t kv_stride = 0;  // floats between consecutive positions; 0 means n_kv_heads * head_dim

    std::int64_t stride() const noexcept { return kv_stride > 0 ? kv_stride : n_kv_heads * head_dim; }
    std::int64_t q_dim() const noexcept { return n_heads * head_dim; }
    /// Throws ConfigError unless the heads divide into groups.
    void check() const {
        if (n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads != 0 ||
            stride() < n_kv_heads * head_dim)
            throw ConfigError("attention: " + std::to_string(n_heads) + " heads over " + std::to_string(n_kv_heads) +
                              " kv heads of " + std::to_string(head_dim) + " (kv stride " +
                              std::to_string(stride()) + ") is not a valid shape");
    }
};

namespace kernels_attention {
using MatR = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CMapR = Eigen::Map<const MatR, 0, Eigen::OuterStride<>>;
using MapR = Eigen::Map<MatR, 0, Eigen::OuterStride<>>;
using VecF = Eigen::Matrix<float, Eigen::Dynamic, 1>;

/// Row-wise stable softmax of s (rows, cols) keeping only columns [0, limit(row)).
template <typename Limit>
inline void masked_softmax(MapR s, Limit limit) {
    for (Eigen::Index i = 0; i < s.rows(); ++i) {
        const Eigen::Index m = limit(i);
        auto row = s.row(i);
        auto live = row.head(m).array();
        const float mx = live.maxCoeff();
        live = (live - mx).exp();
        live *= 1.0f / live.sum();
        row.tail(s.cols() - m).setZero();
    }
}

/// One query head over positions [0, n_kv): out = softmax(scale * K q) V. scores: n_kv floats.
inline void head(const float* q, const float* k, const float* v, std::int64_t n_kv, std::int64_t head_dim,
                 std::int64_t stride, float scale, float* out, float* scores) {
    const CMapR K(k, n_kv, head_dim, Eigen::OuterStride<>(stride));
    const CMapR V(v, n_kv, head_dim, Eigen::OuterStride<>(stride));
    Eigen::Map<VecF> s(scores, n_kv);
    s.noalias() = scale * (K * Eigen::Map<const VecF>(q, head_dim));
    auto a = s.array();
    a = (a - a.maxCoeff()).exp();
    a *= 1.0f / a.sum();
    Eigen::Map<VecF>(out, head_dim).noalias() = V.transpose() * s;
}
}  // namespace kernels_attention

/// One token: out (n_heads, head_dim) from q (n_heads, head_dim) over the n_kv >= 1
/// cached positions. scratch: n_heads * n_kv floats. Heads run on `pool` if given.
inline void attention(const float* q, const float* k, const float* v, std::int64_t n_kv, const AttentionDims& d,
                      float scale, float* out, float* scratch, ThreadPool* pool = nullptr) {
    d.check();
    if (n_kv <= 0) throw ConfigError("attention: the cache holds no position to attend to");
    const std::int64_t group = d.n_heads / d.n_kv_heads, hd = d.head_dim, stride = d.stride();
    auto heads = [&](std::int64_t h0, std::int64_t h1) {
        for (std::int64_t h = h0; h < h1; ++h) {
            const std::int64_t g = h / group;
            kernels_attention::head(q + h * hd, k + g * hd, v + g * hd, n_kv, hd, stride, scale, out + h * hd,
                                    scratch + h * n_kv);
        }
    };
    if (pool != nullptr && pool->size() > 1 && n_kv * d.n_heads * hd >= (1 << 15))
        pool->parallel_for(d.n_heads, heads);
    else
        heads(0, d.n_heads);
}

/// A batch of n consecutive tokens of one sequence, token i at position pos0 + i,
/// whose keys and values are already in the cache: token i attends to positions
/// [0, pos0 + i] (causal). q, out: (n, n_heads * head_dim). Heads run on `pool`.
inline void attention_causal(const float* q, std::int64_t n, std::int64_t pos0, const float* k, const float* v,
                             const AttentionDims& d, float scale, float* out, ThreadPool& pool) {
    using namespace kernels_attention;
    d.check();
    if (n <= 0) return;
    if (pos0 < 0) throw ConfigError("attention_causal: negative start position");
    const std::int64_t group = d.n_heads / d.n_kv_heads, hd = d.head_dim, stride = d.stride(), qd = d.q_dim();
    const std::int64_t n_kv = pos0 + n;
    auto heads = [&](std::int64_t h0, std::int64_t h1) {
        thread_local MatR scores;  // (n, n_kv) per thread
        scores.resize(n, n_kv);
        for (std::int64_t h = h0; h < h1; ++h) {
            const std::int64_t g = h / group;
            const CMapR Q(q + h * hd, n, hd, Eigen::OuterStride<>(qd));
            const CMapR K(k + g * hd, n_kv, hd, Eigen::OuterStride<>(stride));
            const CMapR V(v + g * hd, n_kv, hd, Eigen::OuterStride<>(stride));
            MapR S(scores.data(), n, n_kv, Eigen::OuterStride<>(n_kv));
            S.noalias() = scale * (Q * K.transpose());
            masked_softmax(S, [&](Eigen::Index i) { return static_cast<Eigen::Index>(pos0 + i + 1); });
            MapR(out + h * hd, n, hd, Eigen::OuterStride<>(qd)).noalias() = S * V;
        }
    };
    // A small product (stories260K's prompts: ~10 us) is done before the pool
    // would have woken up; the heads are independent, so this changes nothing
    // but the time.
    if (pool.size() > 1 && n * n_kv * d.n_heads * hd >= (1 << 16))
        pool.parallel_for(d.n_heads, heads);
    else
        heads(0, d.n_heads);
}

}  // namespace tandem
