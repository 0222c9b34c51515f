// Attention over a KV cache (one token, and a causal batch) against a naive
// triple loop, for multi-head, grouped-query and multi-query shapes.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "kernel_util.hpp"
#include "tandem/core/error.hpp"
#include "tandem/kernels/attention.hpp"

using namespace tandem;

namespace {

// out_h = sum_p softmax_p(scale * q_h . k_{p, h/group}) v_{p, h/group}, p < n_kv.
std::vector<double> naive_attention(const float* q, const float* k, const float* v, std::int64_t n_kv,
                                    const AttentionDims& d, float scale) {
    const std::int64_t group = d.n_heads / d.n_kv_heads, hd = d.head_dim, st = d.stride();
    std::vector<double> out(static_cast<std::size_t>(d.n_heads * hd), 0.0);
    for (std::int64_t h = 0; h < d.n_heads; ++h) {
        const std::int64_t g = h / group;
        std::vector<double> s(static_cast<std::size_t>(n_kv));
        double mx = -1e300;
        for (std::int64_t p = 0; p < n_kv; ++p) {
            double dot = 0;
            for (std::int64_t i = 0; i < hd; ++i) dot += static_cast<double>(q[h * hd + i]) * k[p * st + g * hd + i];
            s[static_cast<std::size_t>(p)] = dot * scale;
            mx = std::max(mx, s[static_cast<std::size_t>(p)]);
        }
        double z = 0;
        for (auto& e : s) z += (e = std::exp(e - mx));
        for (std::int64_t p = 0; p < n_kv; ++p)
            for (std::int64_t i = 0; i < hd; ++i)
                out[static_cast<std::size_t>(h * hd + i)] += s[static_cast<std::size_t>(p)] / z * v[p * st + g * hd + i];
    }
    return out;
}

const AttentionDims kShapes[] = {
    {4, 4, 16, 0},   // multi-head
    {8, 2, 16, 0},   // grouped-query, 4 heads per kv head
    {6, 1, 32, 0},   // multi-query
    {4, 2, 8, 24},   // cache rows wider than the kv heads (kv_stride > n_kv_heads * head_dim)
};

}  // namespace

TEST_CASE("kernels: attention for one token matches the naive loops") {
    ThreadPool pool(3);
    for (const auto& d : kShapes)
        for (const std::int64_t n_kv : {1, 2, 37, 300}) {
            CAPTURE(d.n_heads);
            CAPTURE(d.n_kv_heads);
            CAPTURE(n_kv);
            const auto q = test::random_floats(static_cast<std::size_t>(d.q_dim()), 1);
            const auto k = test::random_floats(static_cast<std::size_t>(n_kv * d.stride()), 2);
            const auto v = test::random_floats(static_cast<std::size_t>(n_kv * d.stride()), 3);
            const float scale = 1.0f / std::sqrt(static_cast<float>(d.head_dim));
            const auto ref = naive_attention(q.data(), k.data(), v.data(), n_kv, d, scale);
            std::vector<float> out(ref.size()), out_pool(ref.size()), scratch(static_cast<std::size_t>(d.n_heads * n_kv));
            attention(q.data(), k.data(), v.data(), n_kv, d, scale, out.data(), scratch.data());
            attention(q.data(), k.data(), v.data(), n_kv, d, scale, out_pool.data(), scratch.data(), &pool);
            for (std::size_t i = 0; i < ref.size(); ++i) {
                CHECK(out[i] == doctest::Approx(ref[i]).epsilon(1e-4).scale(1.0));
                CHECK(out_pool[i] == out[i]);
            }
        }
}

TEST_CASE("kernels: causal batch attention equals one-token attention at each position") {
    ThreadPool pool(2);
    for (const auto& d : kShapes)
        for (const std::int64_t pos0 : {0, 5}) {
            CAPTURE(d.n_heads);
            CAPTURE(pos0);
            const std::int64_t n = 9, n_kv = pos0 + n;
            const auto q = test::random_floats(static_cast<std::size_t>(n * d.q_dim()), 4);
            const auto k = test::random_floats(static_cast<std::size_t>(n_kv * d.stride()), 5);
            const auto v = test::random_floats(static_cast<std::size_t>(n_kv * d.stride()), 6);
            const float scale = 0.3f;
            std::vector<float> out(static_cast<std::size_t>(n * d.q_dim()));
            attention_causal(q.data(), n, pos0, k.data(), v.data(), d, scale, out.data(), pool);
            for (std::int64_t i = 0; i < n; ++i) {
                // Token i sees exactly positions [0, pos0 + i].
                const auto ref = naive_attention(q.data() + i * d.q_dim(), k.data(), v.data(), pos0 + i + 1, d, scale);
                for (std::size_t j = 0; j < ref.size(); ++j)
                    CHECK(out[static_cast<std::size_t>(i * d.q_dim()) + j] == doctest::Approx(ref[j]).epsilon(1e-4).scale(1.0));
            }
        }
}

TEST_CASE("kernels: attention rejects head counts that do not group") {
    float dummy[64] = {};
    ThreadPool pool(1);
    const AttentionDims bad{6, 4, 8, 0};
    CHECK_THROWS_AS(attention(dummy, dummy, dummy, 1, bad, 1.0f, dummy, dummy), ConfigError);
    CHECK_THROWS_AS(attention_causal(dummy, 1, 0, dummy, dummy, bad, 1.0f, dummy, pool), ConfigError);
    const AttentionDims ok{2, 1, 8, 0};
    CHECK_THROWS_AS(attention(dummy, dummy, dummy, 0, ok, 1.0f, dummy, dummy), ConfigError);
}
