// Sampling: each filter against a hand-computed expectation, and draws that
// follow the distribution they sample from.
#include <doctest/doctest.h>

#include <cmath>
#include <map>

#include <tandem/model/sampler.hpp>

using namespace tandem;

TEST_CASE("sampler: greedy takes the first maximum") {
    Sampler s;
    const std::vector<float> l = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f};
    CHECK(s.pick(l) == 1);
}

TEST_CASE("sampler: the RNG is xoshiro256** with a splitmix64 seed, the same everywhere") {
    Rng a(42), b(42), c(43);
    const auto x = a.next();
    CHECK(x == b.next());
    CHECK(x != c.next());
    for (int i = 0; i < 1000; ++i) {
        const double u = a.uniform();
        CHECK(u >= 0.0);
        CHECK(u < 1.0);
    }
}

TEST_CASE("sampler: top-k 1 is greedy; seeded draws repeat") {
    const std::vector<float> l = {0.5f, 1.5f, 1.0f, -2.0f};
    Sampler k1({.temperature = 1.0f, .top_k = 1, .seed = 7});
    for (int i = 0; i < 20; ++i) CHECK(k1.pick(l) == 1);
    Sampler a({.temperature = 0.8f, .seed = 99}), b({.temperature = 0.8f, .seed = 99});
    for (int i = 0; i < 50; ++i) CHECK(a.pick(l) == b.pick(l));
}

TEST_CASE("sampler: draws follow softmax(logits / T)") {
    const std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
    for (const float t : {1.0f, 0.5f}) {
        Sampler s({.temperature = t, .seed = 1234});
        std::vector<double> want(3);
        double z = 0;
        for (int i = 0; i < 3; ++i) z += (want[static_cast<std::size_t>(i)] = std::exp(l[static_cast<std::size_t>(i)] / t));
        std::map<int, int> count;
        const int n = 20000;
        for (int i = 0; i < n; ++i) ++count[s.pick(l)];
        for (int i = 0; i < 3; ++i) {
            const double p = want[static_cast<std::size_t>(i)] / z;
            const double sd = std::sqrt(p * (1 - p) / n);
            CAPTURE(t);
            CAPTURE(i);
            CHECK(std::abs(count[i] / double(n) - p) < 5 * sd);
        }
    }
}

TEST_CASE("sampler: top-p and min-p cut the tail") {
    // p = 0.5, 0.3, 0.15, 0.05
    const std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
    Sampler top_p({.temperature = 1.0f, .top_p = 0.75f, .seed = 3});  // keeps 0.5 + 0.3
    Sampler min_p({.temperature = 1.0f, .min_p = 0.5f, .seed = 3});    // keeps p >= 0.25: ids 0, 1
    std::map<int, int> a, b;
    for (int i = 0; i < 5000; ++i) {
        ++a[top_p.pick(l)];
        ++b[min_p.pick(l)];
    }
    CHECK(a.count(2) == 0);
    CHECK(a.count(3) == 0);
    CHECK(a[0] > 0);
    CHECK(a[1] > 0);
    CHECK(b.count(2) == 0);
    CHECK(b.count(3) == 0);
    CHECK(b[1] > 0);
}

TEST_CASE("sampler: repetition penalty divides positive and multiplies negative logits") {
    // Token 0 leads by a little; once it is in the history, a penalty of 2 halves it.
    const std::vector<float> l = {2.0f, 1.5f, -0.5f};
    Sampler s({.repeat_penalty = 2.0f});
    CHECK(s.pick(l) == 0);
    s.accept(0);
    CHECK(s.pick(l) == 1);  // 2.0 / 2 = 1.0 < 1.5
    s.accept(1);
    CHECK(s.pick(l) == 0);  // 1.0 vs 0.75
    // Window: after repeat_last_n newer tokens, the old one no longer counts.
    Sampler w({.repeat_penalty = 2.0f, .repeat_last_n = 1});
    w.accept(0);
    w.accept(2);
    CHECK(w.pick(l) == 0);
}

TEST_CASE("sampler: invalid settings are refused") {
    CHECK_THROWS_AS(Sampler({.top_p = 0.0f}), ConfigError);
    CHECK_THROWS_AS(Sampler({.repeat_penalty = -1.0f}), ConfigError);
    Sampler s;
    CHECK_THROWS_AS(s.pick(std::span<const float>{}), ConfigError);
}
