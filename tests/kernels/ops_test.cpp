// RMSNorm, RoPE, softmax, SiLU/SwiGLU and the residual add against naive
// loops written here.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "kernel_util.hpp"
#include "tandem/core/error.hpp"
#include "tandem/kernels/activation.hpp"
#include "tandem/kernels/norm.hpp"
#include "tandem/kernels/rope.hpp"

using namespace tandem;

TEST_CASE("kernels: rms_norm matches the definition") {
    for (const std::int64_t dim : {1, 7, 64, 2048, 4099}) {
        CAPTURE(dim);
        const auto x = test::random_floats(static_cast<std::size_t>(dim), 1, 3.0f);
        const auto w = test::random_floats(static_cast<std::size_t>(dim), 2);
        std::vector<float> y(x.size());
        const float eps = 1e-5f;
        rms_norm(x.data(), w.data(), y.data(), dim, eps);
        double ss = 0;
        for (float v : x) ss += static_cast<double>(v) * v;
        const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
        for (std::size_t i = 0; i < x.size(); ++i) CHECK(y[i] == doctest::Approx(x[i] * inv * w[i]).epsilon(1e-5));
    }
    // In place, and several rows.
    auto x = test::random_floats(3 * 32, 3);
    const auto w = test::random_floats(32, 4);
    std::vector<float> y(x.size());
    rms_norm_rows(x.data(), w.data(), y.data(), 3, 32, 1e-6f);
    rms_norm_rows(x.data(), w.data(), x.data(), 3, 32, 1e-6f);
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(x[i] == y[i]);
    // A zero row stays finite thanks to eps.
    std::vector<float> z(16, 0.0f), zo(16, 1.0f), ones(16, 1.0f);
    rms_norm(z.data(), ones.data(), zo.data(), 16, 1e-5f);
    for (float v : zo) CHECK(v == 0.0f);
}

namespace {
// theta_i = pos * scale * base^(-2i/n_dims); pairs (2i, 2i+1) or (i, i + n_dims/2).
std::vector<float> naive_rope(std::vector<float> x, std::int64_t n_heads, std::int64_t hd, std::int64_t n_dims,
                              std::int64_t pos, double base, double scale, bool neox) {
    for (std::int64_t h = 0; h < n_heads; ++h)
        for (std::int64_t i = 0; i < n_dims / 2; ++i) {
            const double theta = static_cast<double>(pos) * scale * std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(n_dims));
            const std::size_t a = static_cast<std::size_t>(h * hd + (neox ? i : 2 * i));
            const std::size_t b = static_cast<std::size_t>(h * hd + (neox ? i + n_dims / 2 : 2 * i + 1));
            const double xa = x[a], xb = x[b];
            x[a] = static_cast<float>(xa * std::cos(theta) - xb * std::sin(theta));
            x[b] = static_cast<float>(xa * std::sin(theta) + xb * std::cos(theta));
        }
    return x;
}
}  // namespace

TEST_CASE("kernels: RoPE rotates pairs in the normal and NeoX layouts, fully or partially") {
    struct Case {
        std::int64_t n_heads, hd, n_dims, pos;
        float base, scale;
    };
    const Case cases[] = {{4, 64, 64, 0, 10000.f, 1.f},    {4, 64, 64, 1, 10000.f, 1.f},
                          {2, 64, 64, 2047, 10000.f, 1.f}, {3, 128, 64, 300, 1e6f, 0.25f},
                          {1, 80, 32, 17, 10000.f, 1.f},    {8, 16, 16, 100000, 500000.f, 1.f}};
    for (const auto& c : cases)
        for (const auto layout : {RopeLayout::Normal, RopeLayout::NeoX}) {
            CAPTURE(c.pos);
            CAPTURE(c.n_dims);
            CAPTURE(static_cast<int>(layout));
            const auto x = test::random_floats(static_cast<std::size_t>(c.n_heads * c.hd), 7);
            auto y = x;
            rope_inplace(y.data(), c.n_heads, c.hd, c.n_dims, c.pos, c.base, c.scale, layout);
            const auto ref = naive_rope(x, c.n_heads, c.hd, c.n_dims, c.pos, c.base, c.scale, layout == RopeLayout::NeoX);
            for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == doctest::Approx(ref[i]).epsilon(1e-5).scale(1.0));
            // A rotation keeps each head's norm, and dims past n_dims are untouched.
            for (std::int64_t h = 0; h < c.n_heads; ++h) {
                double n0 = 0, n1 = 0;
                for (std::int64_t d = 0; d < c.hd; ++d) {
                    const auto i = static_cast<std::size_t>(h * c.hd + d);
                    n0 += static_cast<double>(x[i]) * x[i];
                    n1 += static_cast<double>(y[i]) * y[i];
                    if (d >= c.n_dims) CHECK(y[i] == x[i]);
                }
                CHECK(n1 == doctest::Approx(n0).epsilon(1e-5));
            }
            if (c.pos == 0)
                for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == x[i]);
        }
}

TEST_CASE("kernels: RoPE layouts differ only in which elements pair up") {
    // Permuting a head from (2i, 2i+1) order to (i, i + d/2) order turns one layout into the other.
    const std::int64_t hd = 32;
    const auto x = test::random_floats(static_cast<std::size_t>(hd), 9);
    std::vector<float> perm(x.size());
    for (std::int64_t i = 0; i < hd / 2; ++i) {
        perm[static_cast<std::size_t>(i)] = x[static_cast<std::size_t>(2 * i)];
        perm[static_cast<std::size_t>(i + hd / 2)] = x[static_cast<std::size_t>(2 * i + 1)];
    }
    auto a = x, b = perm;
    rope_inplace(a.data(), 1, hd, hd, 42, 10000.f, 1.f, RopeLayout::Normal);
    rope_inplace(b.data(), 1, hd, hd, 42, 10000.f, 1.f, RopeLayout::NeoX);
    for (std::int64_t i = 0; i < hd / 2; ++i) {
        CHECK(b[static_cast<std::size_t>(i)] == a[static_cast<std::size_t>(2 * i)]);
        CHECK(b[static_cast<std::size_t>(i + hd / 2)] == a[static_cast<std::size_t>(2 * i + 1)]);
    }
}

TEST_CASE("kernels: softmax is normalized, stable and matches the definition") {
    for (const std::int64_t n : {1, 5, 33, 1000}) {
        auto x = test::random_floats(static_cast<std::size_t>(n), 11, 4.0f);
        const auto x0 = x;
        softmax(x.data(), n);
        double mx = -1e300, z = 0;
        for (float v : x0) mx = std::max(mx, static_cast<double>(v));
        for (float v : x0) z += std::exp(v - mx);
        double sum = 0;
        for (std::size_t i = 0; i < x.size(); ++i) {
            CHECK(x[i] == doctest::Approx(std::exp(x0[i] - mx) / z).epsilon(1e-5));
            sum += x[i];
        }
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
    }
    // Huge logits neither overflow nor underflow to NaN.
    std::vector<float> big(16, -1000.0f);
    big[0] = 1000.0f;
    big[1] = 999.0f;
    big[3] = 1000.0f;
    softmax(big.data(), static_cast<std::int64_t>(big.size()));
    CHECK(big[0] == doctest::Approx(1.0 / (2.0 + std::exp(-1.0))).epsilon(1e-5));
    CHECK(big[2] < 1e-30f);  // exp(-2000): 0 or a denormal, depending on the exp implementation
    CHECK(big[3] == big[0]);
}

TEST_CASE("kernels: silu, swiglu and the residual add match the definitions") {
    const std::int64_t n = 1003;
    const auto g = test::random_floats(static_cast<std::size_t>(n), 13, 5.0f);
    const auto u = test::random_floats(static_cast<std::size_t>(n), 14);
    std::vector<float> s(g.size()), o(g.size());
    silu(g.data(), s.data(), n);
    swiglu(g.data(), u.data(), o.data(), n);
    for (std::size_t i = 0; i < g.size(); ++i) {
        const double sl = g[i] / (1.0 + std::exp(-static_cast<double>(g[i])));
        CHECK(s[i] == doctest::Approx(sl).epsilon(1e-5).scale(1e-6));
        CHECK(o[i] == doctest::Approx(sl * u[i]).epsilon(1e-5).scale(1e-6));
    }
    std::vector<float> extreme(16, 1.0f);  // (16 wide: GCC 12 misreads Eigen's vector path on tiny constant sizes)
    extreme[0] = -100.0f;
    extreme[1] = 100.0f;
    extreme[2] = 0.0f;
    silu(extreme.data(), extreme.data(), static_cast<std::int64_t>(extreme.size()));
    CHECK(std::fabs(extreme[0]) < 1e-30f);
    CHECK(extreme[1] == doctest::Approx(100.0f));
    CHECK(extreme[2] == 0.0f);
    auto y = u;
    add_inplace(y.data(), g.data(), n);
    for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == u[i] + g[i]);
}

TEST_CASE("kernels: RoPE rejects rotated dimensions that do not fit the head") {
    std::vector<float> x(64, 1.0f);
    CHECK_THROWS_AS(rope_inplace(x.data(), 1, 32, 33, 1, 1e4f, 1.f, RopeLayout::Normal), ConfigError);
    CHECK_THROWS_AS(rope_inplace(x.data(), 1, 32, 64, 1, 1e4f, 1.f, RopeLayout::NeoX), ConfigError);
    CHECK_NOTHROW(rope_inplace(x.data(), 2, 32, 0, 5, 1e4f, 1.f, RopeLayout::NeoX));
    for (float v : x) CHECK(v == 1.0f);
}
