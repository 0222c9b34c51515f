// matmul against matmul_slow (a double-precision loop over the dequantized
// weights) for every supported type, odd shapes, one token and batches, any
// thread count, and the scalar build.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_util.hpp"
#include "scalar_path.hpp"
#include "support/paths.hpp"
#include "tandem/core/error.hpp"
#include "tandem/gguf/reader.hpp"
#include "tandem/kernels/matmul.hpp"

using namespace tandem;

namespace {

constexpr GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0,
                               GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q2_K, GgmlType::Q3_K,
                               GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

struct Case {
    std::int64_t rows, cols, n;
};

/// Checks y against the slow reference. When matmul quantizes the activations
/// (to `act`), y must match W . act(x) to rounding, and W . x within the
/// activation quantization bound sum_j |w_j| * d_block(j) / 2.
void check_against_slow(const WeightView& w, const std::vector<float>& x, std::int64_t n, const std::vector<float>& y,
                        GgmlType act) {
    const auto wf = test::dequantize_matrix(w);
    std::vector<double> ref, mag;
    const bool q8 = act != GgmlType::F32;
    const auto xq = test::act_roundtrip(x, w.cols, act);
    test::matmul_slow(wf, w.rows, w.cols, xq.data(), n, ref, mag);
    for (std::int64_t t = 0; t < n; ++t)
        for (std::int64_t r = 0; r < w.rows; ++r) {
            const auto i = static_cast<std::size_t>(t * w.rows + r);
            CAPTURE(t);
            CAPTURE(r);
            CHECK(std::fabs(y[i] - ref[i]) <= 2e-5 * mag[i] + 1e-6);
        }
    if (!q8) return;
    std::vector<double> exact, mag2;
    test::matmul_slow(wf, w.rows, w.cols, x.data(), n, exact, mag2);
    for (std::int64_t t = 0; t < n; ++t)
        for (std::int64_t r = 0; r < w.rows; ++r) {
            double bound = 0.0;
            const std::int64_t bs = type_traits(act).block_size;
            for (std::int64_t b = 0; b < w.cols / bs; ++b) {
                float amax = 0.0f;
                double wsum = 0.0;
                for (std::int64_t j = 0; j < bs; ++j) {
                    amax = std::max(amax, std::fabs(x[static_cast<std::size_t>(t * w.cols + bs * b + j)]));
                    wsum += std::fabs(wf[static_cast<std::size_t>(r * w.cols + bs * b + j)]);
                }
                bound += wsum * (amax / 127.0) * 0.51;  // half a step, plus the F16 rounding of d
            }
            const auto i = static_cast<std::size_t>(t * w.rows + r);
            CHECK(std::fabs(y[i] - exact[i]) <= bound + 2e-5 * mag2[i] + 1e-6);
        }
}

}  // namespace

TEST_CASE("kernels: matmul matches matmul_slow for every type, shape and batch size") {
    ThreadPool pool(2);
    const Case cases[] = {{1, 256, 1}, {3, 256, 1}, {7, 512, 2}, {13, 256, 5}, {67, 768, 64}, {4, 256, 9}};
    for (const auto t : kTypes) {
        for (const auto& c : cases) {
            CAPTURE(type_name(t));
            CAPTURE(c.rows);
            CAPTURE(c.cols);
            CAPTURE(c.n);
            const auto data = test::random_weight(t, c.rows, c.cols, 100 + static_cast<std::uint32_t>(c.rows));
            const auto w = weight_view(t, c.rows, c.cols, data.data());
            const auto x = test::random_floats(static_cast<std::size_t>(c.n * c.cols), 200);
            std::vector<float> y(static_cast<std::size_t>(c.n * c.rows), -1.0f);
            matmul(w, x.data(), c.n, y.data(), pool);
            check_against_slow(w, x, c.n, y, matmul_activation_type(t));
        }
    }
}

TEST_CASE("kernels: matmul gives bit-identical results on 1 and 3 threads") {
    ThreadPool one(1), three(3);
    for (const auto t : kTypes) {
        for (const std::int64_t n : {1, 64}) {
            CAPTURE(type_name(t));
            CAPTURE(n);
            const std::int64_t rows = 150, cols = 512;  // > 2 chunks of 64 rows (the batch float path)
            const auto data = test::random_weight(t, rows, cols, 300);
            const auto w = weight_view(t, rows, cols, data.data());
            const auto x = test::random_floats(static_cast<std::size_t>(n * cols), 301);
            std::vector<float> y1(static_cast<std::size_t>(n * rows)), y3(y1.size());
            matmul(w, x.data(), n, y1.data(), one);
            matmul(w, x.data(), n, y3.data(), three);
            CHECK(std::memcmp(y1.data(), y3.data(), y1.size() * sizeof(float)) == 0);
        }
    }
}

TEST_CASE("kernels: batched Q4_0 and Q8_0 at the extremes of their quants match matmul_slow") {
    // The packed batch path sums 8 vpmaddubsw results in int16 for Q4_0: the
    // largest |sum| is 8 * 2 * 15 * 127 = 30480 (all quants 15, all activations
    // at +-127), which must not saturate. Q8_0 quants of -128 (a file may hold
    // them; ggml's quantizer never writes them) go through int16 products.
    ThreadPool pool(2);
    const std::int64_t rows = 21, cols = 512;  // two full groups of 8 and a partial one
    for (const auto t : {GgmlType::Q4_0, GgmlType::Q8_0}) {
        for (const float sign : {1.0f, -1.0f}) {
            CAPTURE(type_name(t));
            CAPTURE(sign);
            std::vector<std::uint8_t> data(static_cast<std::size_t>(rows) * row_bytes(t, cols));
            const std::size_t block = t == GgmlType::Q4_0 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
            for (std::size_t off = 0; off < data.size(); off += block) {
                const std::uint16_t d = fp32_to_fp16(0.01f);
                std::memcpy(&data[off], &d, 2);
                std::memset(&data[off + 2], t == GgmlType::Q4_0 ? 0xff : 0x80, block - 2);  // 15 | -128
            }
            const auto w = weight_view(t, rows, cols, data.data());
            for (const std::int64_t n : {2, 5, 64}) {
                CAPTURE(n);
                std::vector<float> x(static_cast<std::size_t>(n * cols), sign * 3.0f);
                std::vector<float> y(static_cast<std::size_t>(n * rows), 0.0f);
                matmul(w, x.data(), n, y.data(), pool);
                check_against_slow(w, x, n, y, matmul_activation_type(t));
                // And the exact value: every product is d * q * x with x = +-3
                // quantized exactly (amax / 127 * 127).
                const double q = t == GgmlType::Q4_0 ? 15 - 8 : -128;
                const double expect = static_cast<double>(fp16_to_fp32(fp32_to_fp16(0.01f))) * q * sign * 3.0 * cols;
                CHECK(y[0] == doctest::Approx(expect).epsilon(1e-3));
                CHECK(y.back() == doctest::Approx(expect).epsilon(1e-3));
            }
        }
    }
}

TEST_CASE("kernels: one token and the same token inside a batch agree") {
    ThreadPool pool(2);
    for (const auto t : kTypes) {
        CAPTURE(type_name(t));
        const std::int64_t rows = 19, cols = 1024, n = 64;
        const auto data = test::random_weight(t, rows, cols, 400);
        const auto w = weight_view(t, rows, cols, data.data());
        const auto x = test::random_floats(static_cast<std::size_t>(n * cols), 401);
        std::vector<float> yb(static_cast<std::size_t>(n * rows)), y1(static_cast<std::size_t>(rows));
        matmul(w, x.data(), n, yb.data(), pool);
        for (const std::int64_t tok : {0, 33, 63}) {
            matmul(w, x.data() + tok * cols, 1, y1.data(), pool);
            for (std::int64_t r = 0; r < rows; ++r) {
                double mag = 0.0;
                for (std::int64_t c = 0; c < cols; ++c) mag += std::fabs(x[static_cast<std::size_t>(tok * cols + c)]);
                CHECK(std::fabs(y1[static_cast<std::size_t>(r)] - yb[static_cast<std::size_t>(tok * rows + r)]) <=
                      1e-5 * mag + 1e-6);
            }
        }
    }
}

TEST_CASE("kernels: the scalar path computes the same matmul as the SIMD path") {
    ThreadPool pool(2);
    CHECK(std::string(test::scalar::isa()) == "scalar");
    for (const auto t : kTypes) {
        for (const std::int64_t n : {1, 6}) {
            CAPTURE(type_name(t));
            CAPTURE(n);
            const std::int64_t rows = 11, cols = 512;
            const auto data = test::random_weight(t, rows, cols, 500);
            const auto w = weight_view(t, rows, cols, data.data());
            const auto x = test::random_floats(static_cast<std::size_t>(n * cols), 501);
            std::vector<float> ys(static_cast<std::size_t>(n * rows)), yv(ys.size());
            test::scalar::matmul(w, x.data(), n, ys.data(), pool);
            matmul(w, x.data(), n, yv.data(), pool);
            // Each path against the exact product of what it computes (the paths may
            // quantize the activations differently: K-quants use Q8_K on AVX2 only).
            check_against_slow(w, x, n, ys, test::scalar::activation_type(t));
            check_against_slow(w, x, n, yv, matmul_activation_type(t));
            if (test::scalar::activation_type(t) == matmul_activation_type(t)) {
                const auto wf = test::dequantize_matrix(w);
                const auto xq = test::act_roundtrip(x, cols, matmul_activation_type(t));
                std::vector<double> ref, mag;
                test::matmul_slow(wf, rows, cols, xq.data(), n, ref, mag);
                for (std::size_t i = 0; i < ys.size(); ++i) CHECK(std::fabs(ys[i] - yv[i]) <= 2e-5 * mag[i] + 1e-6);
            }
        }
    }
}

TEST_CASE("kernels: matmul reads a real GGUF tensor in place") {
    const auto file = GgufFile::open(test::stories260k());
    ThreadPool pool(2);
    int checked = 0;
    for (const auto& info : file.tensors()) {
        if (info.shape.size() != 2 || !matmul_supports(info.type)) continue;
        const auto w = weight_view(info, file.name());
        CHECK(w.data == info.data.data());  // no copy
        const auto x = test::random_floats(static_cast<std::size_t>(3 * w.cols), 600);
        std::vector<float> y(static_cast<std::size_t>(3 * w.rows));
        matmul(w, x.data(), 3, y.data(), pool);
        check_against_slow(w, x, 3, y, matmul_activation_type(info.type));
        if (++checked == 4) break;
    }
    CHECK(checked > 0);
}

TEST_CASE("kernels: unsupported weights and bad shapes throw typed errors") {
    ThreadPool pool(1);
    std::vector<std::byte> raw(1024);
    float x[256] = {}, y[4] = {};
    const auto iq = weight_view(GgmlType::IQ2_XXS, 1, 256, raw.data());
    CHECK_THROWS_AS(matmul(iq, x, 1, y, pool), UnsupportedError);
    CHECK_FALSE(matmul_supports(GgmlType::IQ2_XXS));
    CHECK_THROWS_AS(weight_view(GgmlType::Q8_0, 2, 48, raw.data()), ConfigError);  // 48 is not a multiple of 32
    CHECK_THROWS_AS(weight_view(GgmlType::Q4_K, 2, 128, raw.data()), ConfigError);

    GgufTensorInfo t;
    t.name = "blk.0.attn_q.weight";
    t.type = GgmlType::Q8_0;
    t.shape = {64, 4};
    t.offset = 4096;
    t.data = std::span<const std::byte>(raw.data(), 100);  // 4 rows of Q8_0 x 64 need 272 bytes
    CHECK_THROWS_AS(weight_view(t, "model.gguf"), FormatError);
    t.data = std::span<const std::byte>(raw.data(), 272);
    const auto ok = weight_view(t, "model.gguf");
    CHECK(ok.rows == 4);
    CHECK(ok.cols == 64);
    CHECK(ok.row_bytes == 68);
}

TEST_CASE("kernels: several weights sharing one input give the results of separate calls") {
    ThreadPool pool(2);
    const std::int64_t cols = 512;
    const GgmlType types[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16, GgmlType::Q6_K, GgmlType::Q5_1, GgmlType::Q3_K};
    std::vector<std::vector<std::byte>> data;
    std::vector<WeightView> views;
    for (std::size_t i = 0; i < std::size(types); ++i) {
        const std::int64_t rows = 5 + 17 * static_cast<std::int64_t>(i);
        data.push_back(test::random_weight(types[i], rows, cols, 700 + static_cast<std::uint32_t>(i)));
        views.push_back(weight_view(types[i], rows, cols, data.back().data()));
    }
    for (const std::int64_t n : {1, 3, 64}) {
        CAPTURE(n);
        const auto x = test::random_floats(static_cast<std::size_t>(n * cols), 701);
        std::vector<std::vector<float>> together(views.size()), alone(views.size());
        std::vector<const WeightView*> ws;
        std::vector<float*> ys;
        for (std::size_t i = 0; i < views.size(); ++i) {
            together[i].assign(static_cast<std::size_t>(n * views[i].rows), 0.0f);
            alone[i].assign(together[i].size(), 1.0f);
            ws.push_back(&views[i]);
            ys.push_back(together[i].data());
            matmul(views[i], x.data(), n, alone[i].data(), pool);
        }
        matmul(ws, x.data(), n, ys, pool);
        for (std::size_t i = 0; i < views.size(); ++i) {
            CAPTURE(type_name(types[i]));
            CHECK(std::memcmp(together[i].data(), alone[i].data(), together[i].size() * sizeof(float)) == 0);
        }
    }
    // Row lengths must agree, and there must be an output per weight.
    const auto other = test::random_weight(GgmlType::F32, 2, 64, 702);
    const WeightView short_rows = weight_view(GgmlType::F32, 2, 64, other.data());
    std::vector<float> x(cols), y1(64), y2(64);
    const WeightView* bad[] = {&views[0], &short_rows};
    float* outs[] = {y1.data(), y2.data()};
    CHECK_THROWS_AS(matmul(bad, x.data(), 1, outs, pool), ConfigError);
    CHECK_THROWS_AS(matmul(std::span<const WeightView* const>(bad, 1), x.data(), 1, outs, pool), ConfigError);
}
