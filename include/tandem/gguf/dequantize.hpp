// Reference dequantizers: GGUF tensor rows -> F32, exactly as the format defines them.
//
// Each function reads `n` elements (a multiple of the type's block size) from
// `src`, which may have any alignment (blocks are copied out with memcpy, so a
// tensor inside a memory-mapped file or a fuzzer's buffer is fine), and writes
// n floats to `dst`.
//
// Bit-exactness: the float operations are ggml's reference dequantizers'
// (ggml-quants.c), in the same order. Every product of an F16 scale with the
// small integer scales and quants is exact in F32 (at most 11 + 6 + 5 = 22
// significant bits), so `d * sc * q - dmin * m` rounds only in the final
// subtraction: an FMA gives the same bits, and SIMD kernels may use one. Q6_K's
// (d * sc) * q can round, in this order.
//
// Element positions inside the 256-element K-quant super-blocks (e = 0..255):
//   Q2_K  quant: bits 2*((e%128)/32) of qs[32*(e/128) + e%32]; scale/min nibbles: scales[e/16]
//   Q3_K  low 2 bits as Q2_K; high bit: bit e/32 of hmask[e%32] (set means +0, clear means -4);
//         6-bit scale j = e/16: low 4 bits in scales[j%8] (j<8: low nibble, else high),
//         high 2 bits at bit 2*(j/4) of scales[8 + j%4]; the scale is that value - 32
//   Q4_K  nibble (e%64)/32 (0 low, 1 high) of qs[32*(e/64) + e%32]; sub-block e/32
//   Q5_K  as Q4_K, plus bit e/32 of qh[e%32] worth 16
//   Q6_K  low 4 bits: nibble (e%128)/64 of ql[64*(e/128) + e%64];
//         high 2 bits: bits 2*((e%128)/32) of qh[32*(e/128) + e%32]; scales[e/16]; q - 32
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "tandem/core/error.hpp"
#include "tandem/core/half.hpp"
#include "tandem/gguf/types.hpp"

namespace tandem {

namespace detail {

/// Number of blocks in n elements; throws ConfigError unless n is a
/// non-negative multiple of the block size.
inline std::int64_t count_blocks(std::int64_t n, std::uint32_t block, const char* type) {
    if (n < 0 || n % block != 0)
        throw ConfigError(std::string(type) + ": " + std::to_string(n) +
                          " elements is not a multiple of the block size " + std::to_string(block));
    return n / block;
}

/// Block i of a packed array at any alignment.
template <typename Block>
inline Block load_block(const void* src, std::int64_t i) noexcept {
    Block b;
    std::memcpy(&b, static_cast<const std::byte*>(src) + static_cast<std::size_t>(i) * sizeof(Block), sizeof(Block));
    return b;
}

/// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block.
inline void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& sc, std::uint8_t& m) noexcept {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

}  // namespace detail

inline void dequantize_row_f32(const void* src, float* y, std::int64_t n) {
    detail::count_blocks(n, 1, "F32");
    if (n > 0) std::memcpy(y, src, static_cast<std::size_t>(n) * sizeof(float));
}

inline void dequantize_row_f16(const void* src, float* y, std::int64_t n) {
    detail::count_blocks(n, 1, "F16");
    const auto* p = static_cast<const std::byte*>(src);
    for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        y[i] = fp16_to_fp32(h);
    }
}

inline void dequantize_row_bf16(const void* src, float* y, std::int64_t n) {
    detail::count_blocks(n, 1, "BF16");
    const auto* p = static_cast<const std::byte*>(src);
    for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        y[i] = bf16_to_fp32(h);
    }
}

/// Q4_0: y = (q - 8) * d.
inline void dequantize_row_q4_0(const void* src, float* y, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK4_0, "Q4_0");
    for (std::int64_t i = 0; i < nb; ++i, y += kQK4_0) {
        const auto b = detail::load_block<BlockQ4_0>(src, i);
        const float d = fp16_to_fp32(b.d);
        for (std::uint32_t j = 0; j < kQK4_0 / 2; ++j) {
            const int x0 = (b.qs[j] & 0x0F) - 8;
            const int x1 = (b.qs[j] >> 4) - 8;
            y[j] = static_cast<float>(x0) * d;
            y[j + kQK4_0 / 2] = static_cast<float>(x1) * d;
        }
    }
}

/// Q4_1: y = q * d + m (two roundings).
inline void dequantize_row_q4_1(const void* src, float* y, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK4_1, "Q4_1");
    for (std::int64_t i = 0; i < nb; ++i, y += kQK4_1) {
        const auto b = detail::load_block<BlockQ4_1>(src, i);
        const float d = fp16_to_fp32(b.d);
        const float m = fp16_to_fp32(b.m);
        for (std::uint32_t j = 0; j < kQK4_1 / 2; ++j) {
            const int x0 = b.qs[j] & 0x0F;
            const int x1 = b.qs[j] >> 4;
            y[j] = static_cast<float>(x0) * d + m;
            y[j + kQK4_1 / 2] = static_cast<float>(x1) * d + m;
        }
    }
}

/// Q5_0: y = (q - 16) * d; bit 4 of element j is bit j of qh (little-endian u32).
inline void dequantize_row_q5_0(const void* src, float* y, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK5_0, "Q5_0");
    for (std::int64_t i = 0; i < nb; ++i, y += kQK5_0) {
        const auto b = detail::load_block<BlockQ5_0>(src, i);
        const float d = fp16_to_fp32(b.d);
        std::uint32_t qh;
        std::memcpy(&qh, b.qh, sizeof qh);
        for (std::uint32_t j = 0; j < kQK5_0 / 2; ++j) {
            const std::uint32_t h0 = ((qh >> j) << 4) & 0x10;
            const std::uint32_t h1 = (qh >> (j + 12)) & 0x10;
            const int x0 = static_cast<int>((b.qs[j] & 0x0Fu) | h0) - 16;
            const int x1 = static_cast<int>((b.qs[j] >> 4) | h1) - 16;
            y[j] = static_cast<float>(x0) * d;
            y[j + kQK5_0 / 2] = static_cast<float>(x1) * d;
        }
    }
}

/// Q5_1: y = q * d + m (two roundings).
inline void dequantize_row_q5_1(const void* src, float* y, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK5_1, "Q5_1");
    for (std::int64_t i = 0; i < nb; ++i, y += kQK5_1) {
        const auto b = detail::load_block<BlockQ5_1>(src, i);
        const float d = fp16_to_fp32(b.d);
        const float m = fp16_to_fp32(b.m);
        std::uint32_t qh;
        std::memcpy(&qh, b.qh, sizeof qh);
        for (std::uint32_t j = 0; j < kQK5_1 / 2; ++j) {
            const std::uint32_t h0 = ((qh >> j) << 4) & 0x10;
            const std::uint32_t h1 = (qh >> (j + 12)) & 0x10;
            const int x0 = static_cast<int>((b.qs[j] & 0x0Fu) | h0);
            const int x1 = static_cast<int>((b.qs[j] >> 4) | h1);
            y[j] = static_cast<float>(x0) * d + m;
            y[j + kQK5_1 / 2] = static_cast<float>(x1) * d + m;
        }
    }
}

/// Q8_0: y = q * d.
inline void dequantize_row_q8_0(const void* src, float* y, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK8_0, "Q8_0");
    for (std::int64_t i = 0; i < nb; ++i, y += kQK8_0) {
        const auto b = detail::load_block<BlockQ8_0>(src, i);
        const float d = fp16_to_fp32(b.d);
        for (std::uint32_t j = 0; j < kQK8_0; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
    }
}

/// Q8_1: y = q * d (the stored sum s is for dot products and is not needed).
inline void dequantize_row_q8_1(const void* src, float* y, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK8_1, "Q8_1");
    for (std::int64_t i = 0; i < nb; ++i, y += kQK8_1) {
        const auto b = detail::load_block<BlockQ8_1>(src, i);
        const float d = fp16_to_fp32(b.d);
        for (std::uint32_t j = 0; j < kQK8_1; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
    }
}

/// Q2_K: y = (d * sc) * q - (dmin * m), sc and m the 4-bit nibbles of scales[e/16].
inline void dequantize_row_q2_k(const void* src, float* y, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK_K, "Q2_K");
    for (std::int64_t i = 0; i < nb; ++i) {
        const auto b = detail::load_block<BlockQ2_K>(src, i);
        const float d = fp16_to_fp32(b.d);
        const float min = fp16_to_fp32(b.dmin);
        const std::uint8_t* q = b.qs;
        int is = 0;
        for (std::uint32_t half = 0; half < kQK_K; half += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; ++part) {
                    const std::uint8_t sc = b.scales[is++];
                    const float dl = d * static_cast<float>(sc & 0xF);
                    const float ml = min * static_cast<float>(sc >> 4);
                    for (int l = 0; l < 16; ++l)
                        *y++ = dl * static_cast<float>((q[l + 16 * part] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/// Q3_K: y = (d * (sc - 32)) * (q - (high bit ? 0 : 4)).
inline void dequantize_row_q3_k(const void* src, float* y, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK_K, "Q3_K");
    for (std::int64_t i = 0; i < nb; ++i) {
        const auto b = detail::load_block<BlockQ3_K>(src, i);
        const float d_all = fp16_to_fp32(b.d);
        int scales[16];
        for (int j = 0; j < 16; ++j) {
            const int low = j < 8 ? (b.scales[j] & 0xF) : (b.scales[j - 8] >> 4);
            const int high = (b.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            scales[j] = (low | (high << 4)) - 32;
        }
        const std::uint8_t* q = b.qs;
        std::uint8_t m = 1;
        int is = 0;
        for (std::uint32_t half = 0; half < kQK_K; half += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m = static_cast<std::uint8_t>(m << 1)) {
                for (int part = 0; part < 2; ++part) {
                    const float dl = d_all * static_cast<float>(scales[is++]);
                    for (int l = 0; l < 16; ++l) {
                        const int k = l + 16 * part;
                        const int v = ((q[k] >> shift) & 3) - ((b.hmask[k] & m) ? 0 : 4);
                        *y++ = dl * static_cast<float>(v);
                    }
                }
            }
        }
    }
}

/// Q4_K: y = (d * sc) * q - (dmin * m) with 6-bit sc, m per 32 elements.
inline void dequantize_row_q4_k(const void* src, float* y, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK_K, "Q4_K");
    for (std::int64_t i = 0; i < nb; ++i) {
        const auto b = detail::load_block<BlockQ4_K>(src, i);
        const float d = fp16_to_fp32(b.d);
        const float min = fp16_to_fp32(b.dmin);
        const std::uint8_t* q = b.qs;
        for (int is = 0; is < 8; is += 2, q += 32) {
            std::uint8_t sc, m;
            detail::scale_min_k4(is, b.scales, sc, m);
            const float d1 = d * static_cast<float>(sc);
            const float m1 = min * static_cast<float>(m);
            detail::scale_min_k4(is + 1, b.scales, sc, m);
            const float d2 = d * static_cast<float>(sc);
            const float m2 = min * static_cast<float>(m);
            for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
        }
    }
}

/// Q5_K: as Q4_K with a fifth bit (worth 16) from qh.
inline void dequantize_row_q5_k(const void* src, float* y, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK_K, "Q5_K");
    for (std::int64_t i = 0; i < nb; ++i) {
        const auto b = detail::load_block<BlockQ5_K>(src, i);
        const float d = fp16_to_fp32(b.d);
        const float min = fp16_to_fp32(b.dmin);
        const std::uint8_t* ql = b.qs;
        std::uint8_t u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2, ql += 32) {
            std::uint8_t sc, m;
            detail::scale_min_k4(is, b.scales, sc, m);
            const float d1 = d * static_cast<float>(sc);
            const float m1 = min * static_cast<float>(m);
            detail::scale_min_k4(is + 1, b.scales, sc, m);
            const float d2 = d * static_cast<float>(sc);
            const float m2 = min * static_cast<float>(m);
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * static_cast<float>((ql[l] & 0xF) + ((b.qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * static_cast<float>((ql[l] >> 4) + ((b.qh[l] & u2) ? 16 : 0)) - m2;
            u1 = static_cast<std::uint8_t>(u1 << 2);
            u2 = static_cast<std::uint8_t>(u2 << 2);
        }
    }
}

/// Q6_K: y = (d * sc) * (q - 32) with 8-bit signed sc per 16 elements.
inline void dequantize_row_q6_k(const void* src, float* y, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK_K, "Q6_K");
    for (std::int64_t i = 0; i < nb; ++i) {
        const auto b = detail::load_block<BlockQ6_K>(src, i);
        const float d = fp16_to_fp32(b.d);
        const std::uint8_t* ql = b.ql;
        const std::uint8_t* qh = b.qh;
        const std::int8_t* sc = b.scales;
        for (std::uint32_t half = 0; half < kQK_K; half += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
                y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
                y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
                y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
            }
        }
    }
}

/// Q8_K: y = d * q with an F32 d.
inline void dequantize_row_q8_k(const void* src, float* y, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK_K, "Q8_K");
    for (std::int64_t i = 0; i < nb; ++i, y += kQK_K) {
        const auto b = detail::load_block<BlockQ8_K>(src, i);
        for (std::uint32_t j = 0; j < kQK_K; ++j) y[j] = b.d * static_cast<float>(b.qs[j]);
    }
}

}  // namespace tandem
