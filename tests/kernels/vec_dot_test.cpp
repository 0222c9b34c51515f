// Single-row dot products: the per-block integer dots are exact (checked
// against quants decoded here from the block bytes), the row dots match the
// dequantized F32 dot, and the scalar build agrees with the SIMD build.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernel_util.hpp"
#include "scalar_path.hpp"
#include "tandem/core/half.hpp"
#include "tandem/gguf/quant.hpp"
#include "tandem/kernels/block_dot.hpp"
#include "tandem/kernels/kquant_dot.hpp"
#include "tandem/kernels/vec_dot.hpp"

using namespace tandem;

namespace {

constexpr GgmlType kQuantTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1};

// Quant j of a block and the format's zero point, decoded from the bytes as the
// GGUF format describes them (independently of the kernels' unpacking).
int quant_of(GgmlType t, const std::uint8_t* blk, int j, int& zero) {
    auto nib = [&](std::size_t qs_off) {
        const std::uint8_t b = blk[qs_off + static_cast<std::size_t>(j % 16)];
        return j < 16 ? (b & 0x0f) : (b >> 4);
    };
    auto bit5 = [&](std::size_t qh_off) {
        std::uint32_t qh;
        std::memcpy(&qh, blk + qh_off, 4);
        return static_cast<int>((qh >> j) & 1u) << 4;
    };
    switch (t) {
        case GgmlType::Q8_0: zero = 0; return static_cast<std::int8_t>(blk[2 + j]);
        case GgmlType::Q4_0: zero = 8; return nib(2);
        case GgmlType::Q4_1: zero = 0; return nib(4);
        case GgmlType::Q5_0: zero = 16; return nib(6) | bit5(2);
        case GgmlType::Q5_1: zero = 0; return nib(8) | bit5(4);
        default: zero = 0; return 0;
    }
}

std::int32_t simd_block_dot(GgmlType t, const void* b, const std::int8_t* a) {
    namespace kd = kernels_detail;
    switch (t) {
        case GgmlType::Q8_0: return kd::block_dot_i32<GgmlType::Q8_0>(*static_cast<const BlockQ8_0*>(b), a);
        case GgmlType::Q4_0: return kd::block_dot_i32<GgmlType::Q4_0>(*static_cast<const BlockQ4_0*>(b), a);
        case GgmlType::Q4_1: return kd::block_dot_i32<GgmlType::Q4_1>(*static_cast<const BlockQ4_1*>(b), a);
        case GgmlType::Q5_0: return kd::block_dot_i32<GgmlType::Q5_0>(*static_cast<const BlockQ5_0*>(b), a);
        case GgmlType::Q5_1: return kd::block_dot_i32<GgmlType::Q5_1>(*static_cast<const BlockQ5_1*>(b), a);
        default: return 0;
    }
}

float simd_vec_dot(GgmlType type, const void* w, const void* a, std::int64_t n) {
    const auto* a0 = static_cast<const BlockQ8_0*>(a);
    const auto* a1 = static_cast<const BlockQ8_1*>(a);
    switch (type) {
        case GgmlType::Q8_0: return vec_dot_q8_0_q8_0(static_cast<const BlockQ8_0*>(w), a0, n);
        case GgmlType::Q4_0: return vec_dot_q4_0_q8_0(static_cast<const BlockQ4_0*>(w), a0, n);
        case GgmlType::Q5_0: return vec_dot_q5_0_q8_0(static_cast<const BlockQ5_0*>(w), a0, n);
        case GgmlType::Q4_1: return vec_dot_q4_1_q8_1(static_cast<const BlockQ4_1*>(w), a1, n);
        case GgmlType::Q5_1: return vec_dot_q5_1_q8_1(static_cast<const BlockQ5_1*>(w), a1, n);
        default: return 0.0f;
    }
}

GgmlType act_type(GgmlType w) { return (w == GgmlType::Q4_1 || w == GgmlType::Q5_1) ? GgmlType::Q8_1 : GgmlType::Q8_0; }

}  // namespace

TEST_CASE("kernels: block integer dots are exact in every format and on both paths") {
    std::mt19937 rng(7);
    for (const auto t : kQuantTypes) {
        CAPTURE(type_name(t));
        const std::size_t bs = type_traits(t).type_size;
        for (int trial = 0; trial < 200; ++trial) {
            std::vector<std::uint8_t> blk(bs);
            for (auto& b : blk) b = static_cast<std::uint8_t>(rng());
            const std::uint16_t d = fp32_to_fp16(0.01f);
            std::memcpy(blk.data(), &d, 2);  // any scale: the integer dot ignores it
            if (t == GgmlType::Q8_0 && trial % 2 == 0)
                for (std::size_t j = 2; j < bs; ++j) blk[j] = (j & 1) ? 0x81 : 0x7f;  // -127 and 127 only
            std::int8_t a[32];
            for (auto& v : a) v = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
            if (trial % 3 == 0)
                for (auto& v : a) v = (trial & 1) ? 127 : -127;  // extreme activations
            std::int32_t expect = 0;
            for (int j = 0; j < 32; ++j) {
                int zero = 0;
                const int q = quant_of(t, blk.data(), j, zero);
                expect += (q - zero) * a[j];
            }
            CHECK(simd_block_dot(t, blk.data(), a) == expect);
            CHECK(test::scalar::block_dot(t, blk.data(), a) == expect);
        }
    }
}

TEST_CASE("kernels: quantized row dots match the F32 dot of the dequantized rows") {
    for (const auto t : kQuantTypes) {
        CAPTURE(type_name(t));
        for (const std::int64_t n : {32, 96, 2048}) {
            const auto w = test::random_weight(t, 1, n, 31);
            const auto x = test::random_floats(static_cast<std::size_t>(n), 32);
            const GgmlType at = act_type(t);
            std::vector<std::byte> a(row_bytes(at, static_cast<std::uint64_t>(n)));
            quantize_row(at, x.data(), a.data(), n);
            std::vector<float> wf(static_cast<std::size_t>(n)), af(static_cast<std::size_t>(n));
            dequantize_row(t, w.data(), wf.data(), n);
            dequantize_row(at, a.data(), af.data(), n);
            double ref = 0.0, mag = 0.0;
            for (std::int64_t i = 0; i < n; ++i) {
                ref += static_cast<double>(wf[static_cast<std::size_t>(i)]) * af[static_cast<std::size_t>(i)];
                mag += std::fabs(static_cast<double>(wf[static_cast<std::size_t>(i)]) * af[static_cast<std::size_t>(i)]);
            }
            // Q8_1 stores s = d*sum(q) in F16: its rounding is part of the format (|m| * |s| * 2^-11 per block).
            const double tol = 1e-5 * mag + (at == GgmlType::Q8_1 ? 2e-3 * mag : 0.0) + 1e-6;
            const float simd = simd_vec_dot(t, w.data(), a.data(), n);
            const float scal = test::scalar::vec_dot_quant(t, w.data(), a.data(), n);
            CHECK(std::fabs(simd - ref) <= tol);
            CHECK(std::fabs(scal - ref) <= tol);
            CHECK(std::fabs(simd - scal) <= 1e-5 * mag + 1e-6);
        }
    }
}

TEST_CASE("kernels: F32, F16 and BF16 row dots match a double-precision dot for any length") {
    for (const std::int64_t n : {1, 7, 8, 15, 16, 33, 1000, 4099}) {
        CAPTURE(n);
        const auto w = test::random_floats(static_cast<std::size_t>(n), 41);
        const auto x = test::random_floats(static_cast<std::size_t>(n), 42);
        std::vector<std::uint16_t> h(static_cast<std::size_t>(n)), bf(static_cast<std::size_t>(n));
        for (std::size_t i = 0; i < h.size(); ++i) {
            h[i] = fp32_to_fp16(w[i]);
            bf[i] = fp32_to_bf16(w[i]);
        }
        double r32 = 0, r16 = 0, rbf = 0, mag = 0;
        for (std::size_t i = 0; i < h.size(); ++i) {
            r32 += static_cast<double>(w[i]) * x[i];
            r16 += static_cast<double>(fp16_to_fp32(h[i])) * x[i];
            rbf += static_cast<double>(bf16_to_fp32(bf[i])) * x[i];
            mag += std::fabs(static_cast<double>(w[i]) * x[i]);
        }
        const double tol = 2e-6 * mag + 1e-6;
        CHECK(std::fabs(vec_dot_f32_f32(w.data(), x.data(), n) - r32) <= tol);
        CHECK(std::fabs(vec_dot_f16_f32(h.data(), x.data(), n) - r16) <= tol);
        CHECK(std::fabs(vec_dot_bf16_f32(bf.data(), x.data(), n) - rbf) <= tol);
        CHECK(std::fabs(test::scalar::vec_dot_f16(h.data(), x.data(), n) - r16) <= tol);
        CHECK(std::fabs(test::scalar::vec_dot_bf16(bf.data(), x.data(), n) - rbf) <= tol);
    }
}

TEST_CASE("kernels: K-quant super-block dots match the F32 dot of the dequantized rows") {
    for (const auto t : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
        CAPTURE(type_name(t));
        for (const std::int64_t n : {256, 2048}) {
            for (std::uint32_t seed = 0; seed < 4; ++seed) {
                const auto w = test::random_weight(t, 1, n, 51 + seed);
                const auto x = test::random_floats(static_cast<std::size_t>(n), 52 + seed);
                std::vector<BlockQ8_K> a(static_cast<std::size_t>(n / 256));
                quantize_row(GgmlType::Q8_K, x.data(), a.data(), n);
                std::vector<float> wf(static_cast<std::size_t>(n)), af(static_cast<std::size_t>(n));
                dequantize_row(t, w.data(), wf.data(), n);
                dequantize_row(GgmlType::Q8_K, a.data(), af.data(), n);
                double ref = 0.0, mag = 0.0;
                for (std::size_t i = 0; i < wf.size(); ++i) {
                    ref += static_cast<double>(wf[i]) * af[i];
                    mag += std::fabs(static_cast<double>(wf[i]) * af[i]);
                }
                float simd = 0.0f;
                if (t == GgmlType::Q4_K) simd = vec_dot_q4_K_q8_K(reinterpret_cast<const BlockQ4_K*>(w.data()), a.data(), n);
                if (t == GgmlType::Q5_K) simd = vec_dot_q5_K_q8_K(reinterpret_cast<const BlockQ5_K*>(w.data()), a.data(), n);
                if (t == GgmlType::Q6_K) simd = vec_dot_q6_K_q8_K(reinterpret_cast<const BlockQ6_K*>(w.data()), a.data(), n);
                const float scal = test::scalar::vec_dot_k(t, w.data(), a.data(), n);
                CHECK(std::fabs(simd - ref) <= 1e-5 * mag + 1e-6);
                CHECK(std::fabs(scal - ref) <= 1e-5 * mag + 1e-6);
            }
        }
    }
}
