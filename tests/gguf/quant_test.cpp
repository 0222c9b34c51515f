// GGUF quant formats: dequantization against blocks packed by hand in this test
// (byte offsets and bit positions written from the format description, not
// through tandem's block structs), quantize -> dequantize error bounds, exact
// round trips of representable values, hand-worked rounding cases, and the
// F16/BF16 conversions over every 16-bit pattern.
#include <doctest/doctest.h>

#include <tandem/gguf/quant.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#if defined(__F16C__)
#include <immintrin.h>
#endif

using namespace tandem;

namespace {

// Two roundings on purpose: the format's `a * b - c` is not an FMA.
float mul_sub(float a, float b, float c) {
    volatile float p = a * b;
    return p - c;
}
float mul_add(float a, float b, float c) {
    volatile float p = a * b;
    return p + c;
}
float mul(float a, float b) {
    volatile float p = a * b;
    return p;
}

// Little-endian byte writer with bit-level placement.
struct Bytes {
    std::vector<std::uint8_t> b;
    explicit Bytes(std::size_t n) : b(n, 0) {}
    void u16(std::size_t at, std::uint16_t v) {
        b[at] = static_cast<std::uint8_t>(v & 0xff);
        b[at + 1] = static_cast<std::uint8_t>(v >> 8);
    }
    void f32(std::size_t at, float f) {
        const auto v = std::bit_cast<std::uint32_t>(f);
        for (int k = 0; k < 4; ++k) b[at + k] = static_cast<std::uint8_t>(v >> (8 * k));
    }
    // Writes the `nbits` low bits of v at bit position `bit` of byte `at`.
    void bits(std::size_t at, int bit, int nbits, unsigned v) {
        for (int k = 0; k < nbits; ++k)
            if ((v >> k) & 1u) b[at] = static_cast<std::uint8_t>(b[at] | (1u << (bit + k)));
    }
};

std::mt19937& rng() {
    static std::mt19937 g(12345);
    return g;
}
int rand_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng()); }
float rand_float(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng()); }
// A random F16 scale of either sign with a moderate exponent.
std::uint16_t rand_scale() { return fp32_to_fp16(rand_float(0.001f, 2.0f) * (rand_int(0, 1) ? 1.0f : -1.0f)); }

void check_same_floats(const std::vector<float>& got, const std::vector<float>& want) {
    REQUIRE(got.size() == want.size());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
        if (std::bit_cast<std::uint32_t>(got[i]) != std::bit_cast<std::uint32_t>(want[i])) {
            if (bad++ < 5) FAIL_CHECK("element " << i << ": got " << got[i] << ", want " << want[i]);
        }
    CHECK(bad == 0);
}

// Dequantizes through the dispatcher, from an odd (misaligned) address too.
std::vector<float> dequant(GgmlType type, const std::vector<std::uint8_t>& bytes, std::int64_t n) {
    std::vector<float> out(static_cast<std::size_t>(n));
    dequantize_row(type, bytes.data(), out.data(), n);
    std::vector<std::uint8_t> shifted(bytes.size() + 1);
    std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
    std::vector<float> out2(static_cast<std::size_t>(n));
    dequantize_row(type, shifted.data() + 1, out2.data(), n);
    CHECK(std::memcmp(out.data(), out2.data(), out.size() * sizeof(float)) == 0);
    return out;
}

constexpr int kBlocks = 3;  // every hand-built case packs several blocks

}  // namespace

TEST_CASE("gguf quant: Q4_0 and Q4_1 dequantize by the format's formula") {
    for (int rep = 0; rep < 20; ++rep) {
        Bytes q40(kBlocks * 18), q41(kBlocks * 20);
        std::vector<float> w40, w41;
        for (int blk = 0; blk < kBlocks; ++blk) {
            const auto d = rand_scale(), m = rand_scale();
            q40.u16(blk * 18, d);
            q41.u16(blk * 20, d);
            q41.u16(blk * 20 + 2, m);
            for (int e = 0; e < 32; ++e) {
                const int q = rand_int(0, 15);
                // element e < 16: low nibble of byte e; e >= 16: high nibble of byte e - 16
                q40.bits(blk * 18 + 2 + e % 16, e < 16 ? 0 : 4, 4, static_cast<unsigned>(q));
                q41.bits(blk * 20 + 4 + e % 16, e < 16 ? 0 : 4, 4, static_cast<unsigned>(q));
                w40.push_back(mul(static_cast<float>(q - 8), fp16_to_fp32(d)));
                w41.push_back(mul_add(static_cast<float>(q), fp16_to_fp32(d), fp16_to_fp32(m)));
            }
        }
        check_same_floats(dequant(GgmlType::Q4_0, q40.b, kBlocks * 32), w40);
        check_same_floats(dequant(GgmlType::Q4_1, q41.b, kBlocks * 32), w41);
    }
}

TEST_CASE("gguf quant: Q5_0 and Q5_1 dequantize by the format's formula") {
    for (int rep = 0; rep < 20; ++rep) {
        Bytes q50(kBlocks * 22), q51(kBlocks * 24);
        std::vector<float> w50, w51;
        for (int blk = 0; blk < kBlocks; ++blk) {
            const auto d = rand_scale(), m = rand_scale();
            q50.u16(blk * 22, d);
            q51.u16(blk * 24, d);
            q51.u16(blk * 24 + 2, m);
            for (int e = 0; e < 32; ++e) {
                const int q = rand_int(0, 31);
                // low 4 bits as Q4; bit 4 of element e is bit e of the u32 qh
                q50.bits(blk * 22 + 6 + e % 16, e < 16 ? 0 : 4, 4, static_cast<unsigned>(q & 15));
                q50.bits(blk * 22 + 2 + e / 8, e % 8, 1, static_cast<unsigned>(q >> 4));
                q51.bits(blk * 24 + 8 + e % 16, e < 16 ? 0 : 4, 4, static_cast<unsigned>(q & 15));
                q51.bits(blk * 24 + 4 + e / 8, e % 8, 1, static_cast<unsigned>(q >> 4));
                w50.push_back(mul(static_cast<float>(q - 16), fp16_to_fp32(d)));
                w51.push_back(mul_add(static_cast<float>(q), fp16_to_fp32(d), fp16_to_fp32(m)));
            }
        }
        check_same_floats(dequant(GgmlType::Q5_0, q50.b, kBlocks * 32), w50);
        check_same_floats(dequant(GgmlType::Q5_1, q51.b, kBlocks * 32), w51);
    }
}

TEST_CASE("gguf quant: Q8_0, Q8_1 and Q8_K dequantize by the format's formula") {
    for (int rep = 0; rep < 20; ++rep) {
        Bytes q80(kBlocks * 34), q81(kBlocks * 36), q8k(kBlocks * 292);
        std::vector<float> w80, w81, w8k;
        for (int blk = 0; blk < kBlocks; ++blk) {
            const auto d = rand_scale();
            const float dk = rand_float(-3.0f, 3.0f);
            q80.u16(blk * 34, d);
            q81.u16(blk * 36, d);
            q81.u16(blk * 36 + 2, rand_scale());  // s: not used to dequantize
            q8k.f32(blk * 292, dk);
            for (int e = 0; e < 32; ++e) {
                const int q = rand_int(-128, 127);
                q80.b[blk * 34 + 2 + e] = static_cast<std::uint8_t>(q);
                q81.b[blk * 36 + 4 + e] = static_cast<std::uint8_t>(q);
                w80.push_back(mul(static_cast<float>(q), fp16_to_fp32(d)));
                w81.push_back(mul(static_cast<float>(q), fp16_to_fp32(d)));
            }
            for (int e = 0; e < 256; ++e) {
                const int q = rand_int(-128, 127);
                q8k.b[blk * 292 + 4 + e] = static_cast<std::uint8_t>(q);
                w8k.push_back(mul(dk, static_cast<float>(q)));
            }
            for (int k = 0; k < 16; ++k) q8k.u16(blk * 292 + 260 + 2 * k, static_cast<std::uint16_t>(rand_int(0, 65535)));
        }
        check_same_floats(dequant(GgmlType::Q8_0, q80.b, kBlocks * 32), w80);
        check_same_floats(dequant(GgmlType::Q8_1, q81.b, kBlocks * 32), w81);
        check_same_floats(dequant(GgmlType::Q8_K, q8k.b, kBlocks * 256), w8k);
    }
}

TEST_CASE("gguf quant: Q2_K and Q3_K dequantize by the format's formula") {
    for (int rep = 0; rep < 10; ++rep) {
        Bytes q2(kBlocks * 84), q3(kBlocks * 110);
        std::vector<float> w2, w3;
        for (int blk = 0; blk < kBlocks; ++blk) {
            const std::size_t b2 = blk * 84, b3 = blk * 110;
            const auto d2 = rand_scale(), dmin = rand_scale(), d3 = rand_scale();
            q2.u16(b2 + 80, d2);
            q2.u16(b2 + 82, dmin);
            q3.u16(b3 + 108, d3);
            int sc2[16], mn2[16], sc3[16];
            for (int j = 0; j < 16; ++j) {
                sc2[j] = rand_int(0, 15);
                mn2[j] = rand_int(0, 15);
                q2.b[b2 + j] = static_cast<std::uint8_t>(sc2[j] | (mn2[j] << 4));
                // Q3_K 6-bit scale j: low 4 bits in byte j%8 (low nibble for j<8), high 2 bits
                // at bit 2*(j/4) of byte 8 + j%4; the scale means (value - 32).
                sc3[j] = rand_int(0, 63);
                q3.bits(b3 + 96 + j % 8, j < 8 ? 0 : 4, 4, static_cast<unsigned>(sc3[j] & 15));
                q3.bits(b3 + 96 + 8 + j % 4, 2 * (j / 4), 2, static_cast<unsigned>(sc3[j] >> 4));
            }
            for (int e = 0; e < 256; ++e) {
                // 2-bit field: byte 32*(e/128) + e%32, bits 2*((e%128)/32)
                const std::size_t byte = 32 * (e / 128) + e % 32;
                const int shift = 2 * ((e % 128) / 32);
                const int q = rand_int(0, 3);
                q2.bits(b2 + 16 + byte, shift, 2, static_cast<unsigned>(q));
                w2.push_back(mul_sub(mul(fp16_to_fp32(d2), static_cast<float>(sc2[e / 16])), static_cast<float>(q),
                                     mul(fp16_to_fp32(dmin), static_cast<float>(mn2[e / 16]))));
                const int v = rand_int(-4, 3);  // stored as v + 4: low 2 bits in qs, bit 2 in hmask
                const unsigned u = static_cast<unsigned>(v + 4);
                q3.bits(b3 + 32 + byte, shift, 2, u & 3u);
                q3.bits(b3 + e % 32, e / 32, 1, u >> 2);
                w3.push_back(mul(mul(fp16_to_fp32(d3), static_cast<float>(sc3[e / 16] - 32)), static_cast<float>(v)));
            }
        }
        check_same_floats(dequant(GgmlType::Q2_K, q2.b, kBlocks * 256), w2);
        check_same_floats(dequant(GgmlType::Q3_K, q3.b, kBlocks * 256), w3);
    }
}

namespace {
// Q4_K/Q5_K 12-byte scale area: 8 six-bit scales and 8 six-bit mins.
// j < 4: scale in bits 0-5 of byte j, min in bits 0-5 of byte j+4.
// j >= 4: low 4 bits of scale and min in the nibbles of byte j+4; their top
// 2 bits in bits 6-7 of bytes j-4 (scale) and j (min).
void pack_k4_scales(Bytes& out, std::size_t at, const int* sc, const int* mn) {
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            out.bits(at + j, 0, 6, static_cast<unsigned>(sc[j]));
            out.bits(at + j + 4, 0, 6, static_cast<unsigned>(mn[j]));
        } else {
            out.bits(at + j + 4, 0, 4, static_cast<unsigned>(sc[j] & 15));
            out.bits(at + j + 4, 4, 4, static_cast<unsigned>(mn[j] & 15));
            out.bits(at + j - 4, 6, 2, static_cast<unsigned>(sc[j] >> 4));
            out.bits(at + j, 6, 2, static_cast<unsigned>(mn[j] >> 4));
        }
    }
}
}  // namespace

TEST_CASE("gguf quant: Q4_K, Q5_K and Q6_K dequantize by the format's formula") {
    for (int rep = 0; rep < 10; ++rep) {
        Bytes q4(kBlocks * 144), q5(kBlocks * 176), q6(kBlocks * 210);
        std::vector<float> w4, w5, w6;
        for (int blk = 0; blk < kBlocks; ++blk) {
            const std::size_t b4 = blk * 144, b5 = blk * 176, b6 = blk * 210;
            const auto d = rand_scale(), dmin = rand_scale(), d6 = rand_scale();
            q4.u16(b4, d);
            q4.u16(b4 + 2, dmin);
            q5.u16(b5, d);
            q5.u16(b5 + 2, dmin);
            q6.u16(b6 + 208, d6);
            int sc[8], mn[8], sc6[16];
            for (int j = 0; j < 8; ++j) {
                sc[j] = rand_int(0, 63);
                mn[j] = rand_int(0, 63);
            }
            pack_k4_scales(q4, b4 + 4, sc, mn);
            pack_k4_scales(q5, b5 + 4, sc, mn);
            for (int j = 0; j < 16; ++j) {
                sc6[j] = rand_int(-128, 127);
                q6.b[b6 + 192 + j] = static_cast<std::uint8_t>(sc6[j]);
            }
            for (int e = 0; e < 256; ++e) {
                const float dl = mul(fp16_to_fp32(d), static_cast<float>(sc[e / 32]));
                const float ml = mul(fp16_to_fp32(dmin), static_cast<float>(mn[e / 32]));
                // 4-bit field: nibble (e%64)/32 of byte 32*(e/64) + e%32
                const std::size_t byte = 32 * (e / 64) + e % 32;
                const int nib = 4 * ((e % 64) / 32);
                const int qa = rand_int(0, 15);
                q4.bits(b4 + 16 + byte, nib, 4, static_cast<unsigned>(qa));
                w4.push_back(mul_sub(dl, static_cast<float>(qa), ml));
                const int qb = rand_int(0, 31);  // plus bit e/32 of qh[e%32] worth 16
                q5.bits(b5 + 48 + byte, nib, 4, static_cast<unsigned>(qb & 15));
                q5.bits(b5 + 16 + e % 32, e / 32, 1, static_cast<unsigned>(qb >> 4));
                w5.push_back(mul_sub(dl, static_cast<float>(qb), ml));
                // Q6_K: low 4 bits in nibble (e%128)/64 of ql[64*(e/128) + e%64],
                // high 2 bits at bits 2*((e%128)/32) of qh[32*(e/128) + e%32]
                const int q = rand_int(0, 63);
                q6.bits(b6 + 64 * (e / 128) + e % 64, 4 * ((e % 128) / 64), 4, static_cast<unsigned>(q & 15));
                q6.bits(b6 + 128 + 32 * (e / 128) + e % 32, 2 * ((e % 128) / 32), 2, static_cast<unsigned>(q >> 4));
                w6.push_back(mul(mul(fp16_to_fp32(d6), static_cast<float>(sc6[e / 16])), static_cast<float>(q - 32)));
            }
        }
        check_same_floats(dequant(GgmlType::Q4_K, q4.b, kBlocks * 256), w4);
        check_same_floats(dequant(GgmlType::Q5_K, q5.b, kBlocks * 256), w5);
        check_same_floats(dequant(GgmlType::Q6_K, q6.b, kBlocks * 256), w6);
    }
}

TEST_CASE("gguf quant: F32, F16 and BF16 rows convert element by element") {
    std::vector<float> x(64);
    for (auto& v : x) v = rand_float(-100.0f, 100.0f);
    Bytes f16(128), bf16(128);
    std::vector<float> w16, wbf;
    for (int i = 0; i < 64; ++i) {
        f16.u16(2 * i, fp32_to_fp16(x[i]));
        bf16.u16(2 * i, fp32_to_bf16(x[i]));
        w16.push_back(fp16_to_fp32(fp32_to_fp16(x[i])));
        wbf.push_back(bf16_to_fp32(fp32_to_bf16(x[i])));
    }
    check_same_floats(dequant(GgmlType::F16, f16.b, 64), w16);
    check_same_floats(dequant(GgmlType::BF16, bf16.b, 64), wbf);
    std::vector<std::uint8_t> f32(256);
    std::memcpy(f32.data(), x.data(), 256);
    check_same_floats(dequant(GgmlType::F32, f32, 64), x);
    // quantize_row writes the same bytes the hand packing did
    std::vector<std::uint8_t> out(128);
    quantize_row(GgmlType::F16, x.data(), out.data(), 64);
    CHECK(out == f16.b);
    quantize_row(GgmlType::BF16, x.data(), out.data(), 64);
    CHECK(out == bf16.b);
}

namespace {
// Quantizes x (n floats) as `type` and dequantizes it back.
std::vector<float> round_trip(GgmlType type, const std::vector<float>& x, std::vector<std::uint8_t>* bytes = nullptr) {
    const auto n = static_cast<std::int64_t>(x.size());
    std::vector<std::uint8_t> q(row_bytes(type, x.size()) + 1);
    quantize_row(type, x.data(), q.data() + 1, n);  // misaligned on purpose
    q.erase(q.begin());
    std::vector<float> y(x.size());
    dequantize_row(type, q.data(), y.data(), n);
    if (bytes) *bytes = q;
    return y;
}

std::vector<float> random_row(std::size_t n, float scale) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> x(n);
    for (auto& v : x) v = dist(rng());
    return x;
}
}  // namespace

TEST_CASE("gguf quant: symmetric formats stay within half a step of the input") {
    for (int rep = 0; rep < 50; ++rep) {
        const auto x = random_row(256, rep % 2 ? 0.02f : 3.0f);
        for (const auto& [type, levels, offset] : {std::tuple{GgmlType::Q4_0, -8.0f, 8}, std::tuple{GgmlType::Q5_0, -16.0f, 16}}) {
            const auto y = round_trip(type, x);
            for (std::size_t b = 0; b < 256; b += 32) {
                float amax = 0, max = 0;
                for (std::size_t j = b; j < b + 32; ++j)
                    if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
                const float d = max / levels;  // the spec's step; stored as F16
                const float d16 = fp16_to_fp32(fp32_to_fp16(d));
                const float top = static_cast<float>(offset - 1);  // largest level on the far side
                for (std::size_t j = b; j < b + 32; ++j) {
                    const float steps = x[j] / d;
                    const float slack = std::fabs(d - d16) * static_cast<float>(offset) + 1e-6f * amax;
                    if (steps <= top + 0.5f) {
                        CHECK(std::fabs(y[j] - x[j]) <= 0.5f * std::fabs(d) + slack);
                    } else {  // beyond the last level on the far side: clamped to it
                        CHECK(std::fabs(y[j] - top * d16) <= 1e-6f * amax);
                    }
                }
            }
        }
        {
            const auto y = round_trip(GgmlType::Q8_0, x);
            for (std::size_t b = 0; b < 256; b += 32) {
                float amax = 0;
                for (std::size_t j = b; j < b + 32; ++j) amax = std::max(amax, std::fabs(x[j]));
                const float d = amax / 127, d16 = fp16_to_fp32(fp32_to_fp16(d));
                for (std::size_t j = b; j < b + 32; ++j)
                    CHECK(std::fabs(y[j] - x[j]) <= 0.5f * d + 127 * std::fabs(d - d16) + 1e-6f * amax);
            }
        }
        {
            const auto y = round_trip(GgmlType::Q8_K, x);
            float amax = 0;
            for (float v : x) amax = std::max(amax, std::fabs(v));
            const float d = amax / 127;  // F32 scale: no rounding slack beyond float noise
            for (std::size_t j = 0; j < 256; ++j) CHECK(std::fabs(y[j] - x[j]) <= 0.5f * d * (1 + 1e-4f));
        }
    }
}

TEST_CASE("gguf quant: affine formats stay within half a step of the input") {
    for (int rep = 0; rep < 50; ++rep) {
        auto x = random_row(256, 1.0f);
        for (auto& v : x) v += rep % 3 == 0 ? 5.0f : 0.0f;  // all-positive blocks too
        for (const auto& [type, levels] : {std::pair{GgmlType::Q4_1, 15.0f}, std::pair{GgmlType::Q5_1, 31.0f}}) {
            const auto y = round_trip(type, x);
            for (std::size_t b = 0; b < 256; b += 32) {
                float mn = x[b], mx = x[b];
                for (std::size_t j = b; j < b + 32; ++j) mn = std::min(mn, x[j]), mx = std::max(mx, x[j]);
                const float d = (mx - mn) / levels;
                const float d16 = fp16_to_fp32(fp32_to_fp16(d)), m16 = fp16_to_fp32(fp32_to_fp16(mn));
                const float slack = levels * std::fabs(d - d16) + std::fabs(mn - m16) + 1e-5f * (std::fabs(mx) + std::fabs(mn));
                for (std::size_t j = b; j < b + 32; ++j) CHECK(std::fabs(y[j] - x[j]) <= 0.5f * d + slack);
            }
        }
    }
}

TEST_CASE("gguf quant: representable values round-trip exactly") {
    for (int rep = 0; rep < 30; ++rep) {
        const float s = std::ldexp(1.0f, rand_int(-12, 3));  // power of two: exact in F16 and as a reciprocal
        std::vector<float> x8(64), x4(64), x5(64), x41(64), x51(64), xk(256);
        for (int blk = 0; blk < 2; ++blk) {
            for (int j = 0; j < 32; ++j) {
                const int e = 32 * blk + j;
                x8[e] = static_cast<float>(rand_int(-126, 126)) * s;
                x4[e] = static_cast<float>(rand_int(0, 15) - 8) * s;
                x5[e] = static_cast<float>(rand_int(0, 31) - 16) * s;
                x41[e] = static_cast<float>(rand_int(0, 15)) * s - 3 * s;
                x51[e] = static_cast<float>(rand_int(0, 31)) * s - 5 * s;
            }
            // the extremes that fix each block's scale
            x8[32 * blk + rand_int(0, 31)] = (rand_int(0, 1) ? 127.0f : -127.0f) * s;
            x4[32 * blk + rand_int(0, 31)] = -8 * s;
            x5[32 * blk + rand_int(0, 31)] = -16 * s;
            const int lo = rand_int(0, 15), hi = (lo + 1 + rand_int(0, 30)) % 32;
            x41[32 * blk + lo] = -3 * s;
            x41[32 * blk + hi] = 12 * s;
            x51[32 * blk + lo] = -5 * s;
            x51[32 * blk + hi] = 26 * s;
        }
        for (int e = 0; e < 256; ++e) xk[e] = static_cast<float>(rand_int(-127, 127)) * s;
        xk[rand_int(0, 255)] = 127 * s;
        CHECK(round_trip(GgmlType::Q8_0, x8) == x8);
        CHECK(round_trip(GgmlType::Q8_1, x8) == x8);
        CHECK(round_trip(GgmlType::Q4_0, x4) == x4);
        CHECK(round_trip(GgmlType::Q5_0, x5) == x5);
        CHECK(round_trip(GgmlType::Q4_1, x41) == x41);
        CHECK(round_trip(GgmlType::Q5_1, x51) == x51);
        CHECK(round_trip(GgmlType::Q8_K, xk) == xk);
        CHECK(round_trip(GgmlType::F32, xk) == xk);
        CHECK(round_trip(GgmlType::F16, x8) == x8);
        CHECK(round_trip(GgmlType::BF16, x4) == x4);
    }
}

TEST_CASE("gguf quant: hand-worked blocks show each format's rounding rule") {
    SUBCASE("Q8_0: d = amax/127, roundf rounds halves away from zero") {
        std::vector<float> x(32, 0.0f);
        x[0] = 127.0f;  // d = 1
        x[1] = -63.5f;
        x[2] = 0.5f;
        x[3] = 2.5f;
        std::vector<std::uint8_t> q;
        const auto y = round_trip(GgmlType::Q8_0, x, &q);
        CHECK(q[0] == 0x00);
        CHECK(q[1] == 0x3c);  // F16 1.0
        CHECK(static_cast<std::int8_t>(q[2]) == 127);
        CHECK(static_cast<std::int8_t>(q[3]) == -64);
        CHECK(static_cast<std::int8_t>(q[4]) == 1);
        CHECK(static_cast<std::int8_t>(q[5]) == 3);
        CHECK(y[1] == -64.0f);
    }
    SUBCASE("Q8_1: s is sum(q) * d") {
        std::vector<float> x(32, 0.0f);
        x[0] = 127.0f;
        x[1] = -27.0f;
        x[2] = 3.0f;
        std::vector<std::uint8_t> q;
        round_trip(GgmlType::Q8_1, x, &q);
        std::uint16_t s;
        std::memcpy(&s, q.data() + 2, 2);
        CHECK(fp16_to_fp32(s) == 103.0f);
    }
    SUBCASE("Q4_0: d = max/-8, q = trunc(x/d + 8.5) clamped to 15") {
        std::vector<float> x(32, 0.0f);
        x[0] = -8.0f;  // max magnitude, negative: d = 1
        x[1] = 0.5f;   // 9.0 -> 9 -> +1: halves round up
        x[2] = -0.5f;  // 8.0 -> 8 -> 0
        x[3] = 7.6f;   // 16.1 -> 16 -> clamped 15 -> 7
        x[16] = 3.4f;  // 11.9 -> 11 -> 3
        std::vector<std::uint8_t> q;
        const auto y = round_trip(GgmlType::Q4_0, x, &q);
        CHECK(q[2] == (0x0 | (11 << 4)));  // elements 0 and 16 share byte 0
        CHECK(y[0] == -8.0f);
        CHECK(y[1] == 1.0f);
        CHECK(y[2] == 0.0f);
        CHECK(y[3] == 7.0f);
        CHECK(y[16] == 3.0f);
        CHECK(y[5] == 0.0f);
    }
    SUBCASE("Q8_K: d = 1/(-127/max), round half to even, bsums") {
        std::vector<float> x(256, 0.0f);
        x[0] = 127.0f;  // iscale = -1, d = -1: quants are -x
        x[1] = 2.5f;    // -2.5 -> -2 (even)
        x[2] = 3.5f;    // -3.5 -> -4 (even)
        x[17] = -1.0f;
        std::vector<std::uint8_t> q;
        const auto y = round_trip(GgmlType::Q8_K, x, &q);
        float d;
        std::memcpy(&d, q.data(), 4);
        CHECK(d == -1.0f);
        CHECK(static_cast<std::int8_t>(q[4]) == -127);
        CHECK(static_cast<std::int8_t>(q[5]) == -2);
        CHECK(static_cast<std::int8_t>(q[6]) == -4);
        std::int16_t bsum0, bsum1;
        std::memcpy(&bsum0, q.data() + 260, 2);
        std::memcpy(&bsum1, q.data() + 262, 2);
        CHECK(bsum0 == -133);
        CHECK(bsum1 == 1);
        CHECK(y[1] == 2.0f);
        CHECK(y[2] == 4.0f);
    }
    SUBCASE("an all-zero block quantizes to zeros and back") {
        const std::vector<float> x(256, 0.0f);
        for (auto t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                       GgmlType::Q8_1, GgmlType::Q8_K})
            CHECK(round_trip(t, x) == x);
    }
    SUBCASE("non-finite input gives defined bytes, no undefined behaviour") {
        std::vector<float> x(256, 1.0f);
        x[3] = std::numeric_limits<float>::quiet_NaN();
        x[40] = std::numeric_limits<float>::infinity();
        x[100] = -std::numeric_limits<float>::infinity();
        for (auto t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                       GgmlType::Q8_1, GgmlType::Q8_K}) {
            std::vector<std::uint8_t> a, b;
            round_trip(t, x, &a);
            round_trip(t, x, &b);
            CHECK(a == b);
        }
    }
}

TEST_CASE("gguf quant: K-quant reference quantizers: error by bits, better than the legacy formats") {
    std::mt19937 g(3);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> shifted(-1.0f, 3.0f);
    std::student_t_distribution<float> heavy(3.0f);
    for (int dist = 0; dist < 3; ++dist) {
        std::vector<float> x(256 * 64);
        for (auto& v : x) v = dist == 0 ? normal(g) : dist == 1 ? shifted(g) : heavy(g);
        double energy = 0;
        for (float v : x) energy += static_cast<double>(v) * v;
        auto rel_rmse = [&](GgmlType t) {
            const auto y = round_trip(t, x);
            double e = 0;
            for (std::size_t i = 0; i < x.size(); ++i) e += static_cast<double>(x[i] - y[i]) * (x[i] - y[i]);
            return std::sqrt(e / energy);
        };
        const double q2 = rel_rmse(GgmlType::Q2_K), q3 = rel_rmse(GgmlType::Q3_K), q4 = rel_rmse(GgmlType::Q4_K),
                     q5 = rel_rmse(GgmlType::Q5_K), q6 = rel_rmse(GgmlType::Q6_K);
        INFO("distribution " << dist << ": Q2_K " << q2 << " Q3_K " << q3 << " Q4_K " << q4 << " Q5_K " << q5
                             << " Q6_K " << q6);
        // Each extra bit roughly halves the error; a packing mistake would not.
        CHECK(q2 < 0.40);
        CHECK(q3 < 0.22);
        CHECK(q4 < 0.11);
        CHECK(q5 < 0.055);
        CHECK(q6 < 0.03);
        CHECK(q6 < q5);
        CHECK(q5 < q4);
        CHECK(q4 < q3);
        CHECK(q3 < q2);
        // The searched scales beat the plain ones at the same bit width.
        CHECK(q4 < rel_rmse(GgmlType::Q4_0));
        CHECK(q4 < rel_rmse(GgmlType::Q4_1));
        CHECK(q5 < rel_rmse(GgmlType::Q5_0));
        CHECK(q5 < rel_rmse(GgmlType::Q5_1));
    }
    for (auto t : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
        CAPTURE(type_name(t));
        const std::vector<float> zeros(512, 0.0f);
        CHECK(round_trip(t, zeros) == zeros);
        std::vector<float> odd(256, 0.25f);  // constant: close (scales are rounded to F16 and 4-8 bits)
        for (float v : round_trip(t, odd)) CHECK(std::fabs(v - 0.25f) < 1e-3f);
        odd[7] = std::numeric_limits<float>::quiet_NaN();  // non-finite: defined bytes, no UB
        odd[200] = -std::numeric_limits<float>::infinity();
        std::vector<std::uint8_t> a, b;
        round_trip(t, odd, &a);
        round_trip(t, odd, &b);
        CHECK(a == b);
    }
}

TEST_CASE("gguf quant: F16 conversions over all 65536 half values") {
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const auto bits = static_cast<std::uint16_t>(h);
        const float f = fp16_to_fp32(bits);
        const int sign = (h >> 15) ? -1 : 1;
        const int exp = (h >> 10) & 31;
        const int mant = h & 1023;
        if (exp == 31) {
            if (mant == 0) {
                CHECK(f == sign * std::numeric_limits<float>::infinity());
            } else {
                CHECK(std::isnan(f));
                CHECK(std::isnan(fp16_to_fp32(fp32_to_fp16(f))));
            }
            continue;
        }
        // value = sign * mant * 2^-24 (subnormal) or sign * (1024 + mant) * 2^(exp - 25)
        const double want = exp == 0 ? sign * std::ldexp(static_cast<double>(mant), -24)
                                     : sign * std::ldexp(static_cast<double>(1024 + mant), exp - 25);
        if (static_cast<double>(f) != want || std::signbit(f) != (sign < 0)) FAIL("fp16_to_fp32(" << h << ")");
        if (fp32_to_fp16(f) != bits) FAIL("fp32_to_fp16 does not invert fp16_to_fp32 at " << h);
    }
}

TEST_CASE("gguf quant: F32 -> F16 rounds to nearest, ties to even") {
    for (std::uint32_t h = 0; h < 0x7bff; ++h) {  // every pair of adjacent finite positive halves
        const float lo = fp16_to_fp32(static_cast<std::uint16_t>(h));
        const float hi = fp16_to_fp32(static_cast<std::uint16_t>(h + 1));
        const float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);  // exact in F32
        const auto even = static_cast<std::uint16_t>(h % 2 == 0 ? h : h + 1);
        if (fp32_to_fp16(mid) != even) FAIL("tie between " << h << " and " << h + 1);
        if (fp32_to_fp16(std::nextafter(mid, 0.0f)) != h) FAIL("below the midpoint after " << h);
        if (fp32_to_fp16(std::nextafter(mid, 1e9f)) != h + 1) FAIL("above the midpoint after " << h);
        if (fp32_to_fp16(-mid) != (even | 0x8000)) FAIL("negative tie after " << h);
    }
    CHECK(fp32_to_fp16(65504.0f) == 0x7bff);
    CHECK(fp32_to_fp16(65519.99f) == 0x7bff);
    CHECK(fp32_to_fp16(65520.0f) == 0x7c00);  // the tie above the largest half goes to inf
    CHECK(fp32_to_fp16(1e10f) == 0x7c00);
    CHECK(fp32_to_fp16(-1e10f) == 0xfc00);
    CHECK(fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);  // half the smallest subnormal: tie to 0
    CHECK(fp32_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
    CHECK(fp32_to_fp16(std::ldexp(1.0f, -30)) == 0x0000);
    CHECK(fp32_to_fp16(-0.0f) == 0x8000);
#if defined(__F16C__)
    // The CPU's own converter is an independent implementation: compare on random bit patterns.
    std::uniform_int_distribution<std::uint32_t> any;
    for (int i = 0; i < 1000000; ++i) {
        const float f = std::bit_cast<float>(any(rng()));
        if (std::isnan(f)) continue;
        const auto hw = static_cast<std::uint16_t>(
            _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0));
        if (hw != fp32_to_fp16(f)) FAIL("F16C disagrees for bits " << std::bit_cast<std::uint32_t>(f));
    }
#endif
}

TEST_CASE("gguf quant: BF16 conversions over all 65536 values, ties to even") {
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const auto bits = static_cast<std::uint16_t>(h);
        const float f = bf16_to_fp32(bits);
        CHECK_EQ(std::bit_cast<std::uint32_t>(f), h << 16);  // BF16 is the top half of an F32
        if (std::isnan(f)) {
            if (!std::isnan(bf16_to_fp32(fp32_to_bf16(f)))) FAIL("NaN lost at " << h);
            continue;
        }
        if (fp32_to_bf16(f) != bits) FAIL("fp32_to_bf16 does not invert bf16_to_fp32 at " << h);
        if ((h & 0x7fff) >= 0x7f80) continue;  // inf: no midpoint above
        const float mid = std::bit_cast<float>((h << 16) | 0x8000u);
        const auto even = static_cast<std::uint16_t>(h % 2 == 0 ? h : h + 1);
        if (fp32_to_bf16(mid) != even) FAIL("BF16 tie after " << h);
        if (fp32_to_bf16(std::bit_cast<float>((h << 16) | 0x7fffu)) != bits) FAIL("below the BF16 midpoint " << h);
        if (fp32_to_bf16(std::bit_cast<float>((h << 16) | 0x8001u)) != h + 1) FAIL("above the BF16 midpoint " << h);
    }
}

TEST_CASE("gguf quant: other types are refused with their name") {
    for (const auto& t : kGgmlTypes) {
        CHECK_MESSAGE(can_dequantize(t.type) == t.dequantizable, t.name);
        std::vector<std::uint8_t> src(t.type_size * 2, 0);
        std::vector<float> dst(t.block_size * 2);
        if (!can_dequantize(t.type)) {
            try {
                dequantize_row(t.type, src.data(), dst.data(), t.block_size);
                FAIL("no exception for " << t.name);
            } catch (const UnsupportedError& e) {
                CHECK(std::string(e.what()).find(std::string(t.name)) != std::string::npos);
            }
        }
        if (!can_quantize(t.type)) {
            try {
                quantize_row(t.type, dst.data(), src.data(), t.block_size);
                FAIL("no exception for " << t.name);
            } catch (const UnsupportedError& e) {
                CHECK(std::string(e.what()).find(std::string(t.name)) != std::string::npos);
            }
        }
    }
    CHECK_FALSE(can_dequantize(GgmlType::IQ2_XXS));
    CHECK_FALSE(can_quantize(GgmlType::IQ4_NL));
    for (auto t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                   GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K, GgmlType::Q2_K, GgmlType::Q3_K,
                   GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K})
        CHECK(can_quantize(t));
    float f[64] = {};
    std::uint8_t b[512] = {};
    CHECK_THROWS_WITH_AS(dequantize_row(GgmlType::IQ2_XXS, b, f, 256), doctest::Contains("IQ2_XXS"), UnsupportedError);
    CHECK_THROWS_WITH_AS(dequantize_row(static_cast<GgmlType>(99), b, f, 1), doctest::Contains("99"), UnsupportedError);
    CHECK_THROWS_AS(dequantize_row(GgmlType::Q4_0, b, f, 33), ConfigError);  // not a whole block
    CHECK_THROWS_AS(quantize_row(GgmlType::Q8_0, f, b, -32), ConfigError);
    CHECK_NOTHROW(dequantize_row(GgmlType::Q4_K, b, f, 0));  // zero elements is a valid empty row
}
