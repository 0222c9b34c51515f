// Activation quantizers: the fast Q8_0/Q8_1 quantizers against the format's
// reference quantizer and a naive one written here, and the round-trip error
// bounds of Q8_0 and Q4_0.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernel_util.hpp"
#include "scalar_path.hpp"
#include "tandem/core/half.hpp"
#include "tandem/gguf/quant.hpp"
#include "tandem/kernels/kquant_dot.hpp"
#include "tandem/kernels/quantize.hpp"

using namespace tandem;

namespace {

// The definition of the format, spelled out: d = amax / 127, q = roundf(x / d).
std::vector<BlockQ8_0> naive_q8_0(const std::vector<float>& x) {
    std::vector<BlockQ8_0> out(x.size() / 32);
    for (std::size_t b = 0; b < out.size(); ++b) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        out[b].d = fp32_to_fp16(d);
        for (int j = 0; j < 32; ++j) out[b].qs[j] = static_cast<std::int8_t>(std::round(x[b * 32 + j] * id));
    }
    return out;
}

// Inputs that stress rounding: normal values, exact halves (ties), zeros,
// subnormals, huge values, and a block where one value dominates.
std::vector<std::vector<float>> hard_inputs() {
    std::vector<std::vector<float>> cases;
    cases.push_back(test::random_floats(32 * 64, 1));
    cases.push_back(test::random_floats(32 * 8, 2, 1e-3f));
    cases.push_back(test::random_floats(32 * 8, 3, 1e4f));
    std::vector<float> ties(32 * 4);
    for (int j = 0; j < 32; ++j) {
        ties[static_cast<std::size_t>(j)] = (j == 0) ? 127.0f : static_cast<float>(j % 7) - 3.5f;  // d = 1: q = x
        ties[static_cast<std::size_t>(32 + j)] = (j == 0) ? -127.0f : 0.5f * static_cast<float>(j - 16);
        ties[static_cast<std::size_t>(64 + j)] = 0.0f;                                               // all zero
        ties[static_cast<std::size_t>(96 + j)] = std::numeric_limits<float>::denorm_min() * static_cast<float>(j);
    }
    cases.push_back(ties);
    auto spike = test::random_floats(32 * 4, 4, 1e-2f);
    spike[5] = 1e6f;
    spike[40] = -3e5f;
    cases.push_back(spike);
    return cases;
}

}  // namespace

TEST_CASE("kernels: quantize_row_q8_0_fast matches the reference quantizer bit for bit") {
    for (const auto& x : hard_inputs()) {
        const auto n = static_cast<std::int64_t>(x.size());
        std::vector<BlockQ8_0> fast(x.size() / 32), ref(x.size() / 32), scal(x.size() / 32);
        quantize_row_q8_0_fast(x.data(), fast.data(), n);
        quantize_row(GgmlType::Q8_0, x.data(), ref.data(), n);
        test::scalar::quantize_q8_0(x.data(), scal.data(), n);
        const auto naive = naive_q8_0(x);
        CHECK(std::memcmp(fast.data(), ref.data(), fast.size() * sizeof(BlockQ8_0)) == 0);
        CHECK(std::memcmp(fast.data(), naive.data(), fast.size() * sizeof(BlockQ8_0)) == 0);
        CHECK(std::memcmp(fast.data(), scal.data(), fast.size() * sizeof(BlockQ8_0)) == 0);
    }
}

TEST_CASE("kernels: quantize_row_q8_1_fast matches the reference quantizer bit for bit") {
    for (const auto& x : hard_inputs()) {
        const auto n = static_cast<std::int64_t>(x.size());
        std::vector<BlockQ8_1> fast(x.size() / 32), ref(x.size() / 32), scal(x.size() / 32);
        quantize_row_q8_1_fast(x.data(), fast.data(), n);
        quantize_row(GgmlType::Q8_1, x.data(), ref.data(), n);
        test::scalar::quantize_q8_1(x.data(), scal.data(), n);
        CHECK(std::memcmp(fast.data(), ref.data(), fast.size() * sizeof(BlockQ8_1)) == 0);
        CHECK(std::memcmp(fast.data(), scal.data(), fast.size() * sizeof(BlockQ8_1)) == 0);
    }
}

TEST_CASE("kernels: Q8_0 and Q4_0 round trips stay within the format's error bound") {
    // Q8_0: |x - d16*q| <= d/2 + 127*|d - d16| (q rounds x/d; the stored scale is d rounded to F16).
    // Q4_0: d = max/-8 (max: the value of largest magnitude), q = min(15, round(x/d) + 8): the
    // same bound with 8 for 127, except that x/d in (7.5, 8] is clamped to 7, an error up to d.
    const auto x = test::random_floats(32 * 256, 11);
    const auto n = static_cast<std::int64_t>(x.size());
    std::vector<BlockQ8_0> q8(x.size() / 32);
    quantize_row_q8_0_fast(x.data(), q8.data(), n);
    std::vector<float> back8(x.size());
    dequantize_row(GgmlType::Q8_0, q8.data(), back8.data(), n);
    std::vector<BlockQ4_0> q4(x.size() / 32);
    quantize_row(GgmlType::Q4_0, x.data(), q4.data(), n);
    std::vector<float> back4(x.size());
    dequantize_row(GgmlType::Q4_0, q4.data(), back4.data(), n);
    double worst8 = 0.0, worst4 = 0.0;
    for (std::size_t b = 0; b < x.size() / 32; ++b) {
        float amax = 0.0f, mx = 0.0f;
        for (int j = 0; j < 32; ++j)
            if (std::fabs(x[b * 32 + j]) > amax) {
                amax = std::fabs(x[b * 32 + j]);
                mx = x[b * 32 + j];
            }
        const double d8 = amax / 127.0, d4 = amax / 8.0, d4s = mx / -8.0;
        const double bound8 = d8 / 2 + 127 * std::fabs(d8 - fp16_to_fp32(q8[b].d)) + 1e-7;
        for (int j = 0; j < 32; ++j) {
            const double e8 = std::fabs(x[b * 32 + j] - back8[b * 32 + j]);
            const double e4 = std::fabs(x[b * 32 + j] - back4[b * 32 + j]);
            const double step4 = x[b * 32 + j] / d4s > 7.5 ? d4 : d4 / 2;
            const double bound4 = step4 + 8 * std::fabs(d4 - std::fabs(fp16_to_fp32(q4[b].d))) + 1e-7;
            CHECK(e8 <= bound8);
            CHECK(e4 <= bound4);
            worst8 = std::max(worst8, e8 / d8);
            if (step4 < d4) worst4 = std::max(worst4, e4 / d4);
        }
    }
    // The bounds are tight: the worst error is close to half a step.
    CHECK(worst8 > 0.45);
    CHECK(worst4 > 0.45);
}

TEST_CASE("kernels: quantize_acts holds the Q8_0 quants, F16-rounded scales and scaled sums") {
    const std::int64_t n = 5, cols = 96;
    const auto x = test::random_floats(static_cast<std::size_t>(n * cols), 21);
    QuantizedActs a;
    ThreadPool pool(2);
    quantize_acts(x.data(), n, cols, a, &pool);
    REQUIRE(a.n == n);
    REQUIRE(a.nb == cols / 32);
    for (std::int64_t t = 0; t < n; ++t) {
        std::vector<BlockQ8_0> ref(static_cast<std::size_t>(cols / 32));
        quantize_row(GgmlType::Q8_0, x.data() + t * cols, ref.data(), cols);
        for (std::int64_t b = 0; b < a.nb; ++b) {
            const auto& blk = ref[static_cast<std::size_t>(b)];
            CHECK(std::memcmp(a.q(t) + 32 * b, blk.qs, 32) == 0);
            CHECK(a.d(t)[b] == fp16_to_fp32(blk.d));
            int sum = 0;
            for (int j = 0; j < 32; ++j) sum += blk.qs[j];
            CHECK(a.s(t)[b] == fp16_to_fp32(blk.d) * static_cast<float>(sum));
        }
    }
}

TEST_CASE("kernels: quantize_row_q8_K_fast matches the reference quantizer bit for bit") {
    auto cases = hard_inputs();
    std::vector<float> special(256 * 3, 0.5f);
    special[3] = std::numeric_limits<float>::quiet_NaN();       // NaN is skipped, quantized to 0
    special[256 + 7] = std::numeric_limits<float>::infinity();  // an infinite block is all zero
    for (int j = 0; j < 256; ++j) special[512 + static_cast<std::size_t>(j)] = (j % 2 ? 1.0f : -1.0f) * (j / 2);  // ties
    cases.push_back(special);
    for (auto x : cases) {
        x.resize((x.size() + 255) / 256 * 256, 0.25f);
        const auto n = static_cast<std::int64_t>(x.size());
        std::vector<BlockQ8_K> fast(x.size() / 256), ref(x.size() / 256), scal(x.size() / 256);
        quantize_row_q8_K_fast(x.data(), fast.data(), n);
        quantize_row(GgmlType::Q8_K, x.data(), ref.data(), n);
        test::scalar::quantize_q8_K(x.data(), scal.data(), n);
        CHECK(std::memcmp(fast.data(), ref.data(), fast.size() * sizeof(BlockQ8_K)) == 0);
        CHECK(std::memcmp(scal.data(), ref.data(), scal.size() * sizeof(BlockQ8_K)) == 0);
    }
}
