// Quantized matmul: y (n, rows) = x (n, cols) @ W^T for W in Q8_0, Q4_0,
// Q4_1, Q5_0 or Q5_1, with x already quantized to 8 bits (QuantizedActs).
//
// Work is cut into tiles of R weight rows x T tokens that keep R*T vector
// accumulators in registers and walk the blocks once: a weight block is
// unpacked once and meets T tokens, an activation block meets R rows.
//
// One token (decode) is bound by memory bandwidth: 4 rows stream from memory
// side by side (decode_tile4, vpmaddubsw).
//
// A batch (prefill) is bound by the integer multipliers and the loads that
// feed them. On AVX2, Q4_0 and Q8_0 batches go through Packed8: each group of
// 8 rows is copied once per call into a row-interleaved layout (vector k of a
// block holds 4 bytes of each of the 8 rows), and every token meets it with
// broadcast activations, so one vector of products covers 8 rows and the
// per-block float work (convert, scale, FMA) is paid once per 8 rows instead
// of once per row. Measured on this Zen 3 machine (one 5632x2048 matmul, 64
// tokens, 1 thread, medians of alternating runs): Q4_0 34.6 -> 56.5 GMAC/s,
// Q8_0 27.6 -> 31.8.
//
// The other formats (Q4_1, Q5_0, Q5_1) take row-major batch tiles: rows in
// chunks of ~kChunkBytes (kept in L2) and, for each tile of 4 tokens (kept in
// L1), every 2-row tile of the chunk passes by (batch_tile8, vpmaddubsw; see
// block_dot.hpp). The tile first writes d_w * d_a for its 2*T pairs and every
// block (one vector multiply per block) and the loop broadcasts them from L1.
// The decode tile gathers the 4 rows' F16 scales of a block in a GPR and
// converts them at once, times d_a, splat per row with an in-lane shuffle.
// Zero points (Q4_0, Q5_0) and minimums (Q4_1, Q5_1) add
// sum_b c_b * s_b (c = -zero * d_w or m; s = d_a * sum(q_a)) in F32 (decode:
// a running F32 vector of d_w * d_a * -zero * sum(q_a)).
//
// Each output's arithmetic does not depend on the tile it lands in, so the
// result is bit-identical for any thread count. NEON and scalar builds use one
// generic tile (quant_tile) for both cases.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "tandem/core/thread_pool.hpp"
#include "tandem/kernels/block_dot.hpp"
#include "tandem/kernels/quantize.hpp"
#include "tandem/kernels/simd.hpp"
#include "tandem/kernels/vec_dot.hpp"
#include "tandem/kernels/weight.hpp"

TANDEM_KERNELS_BEGIN

namespace kernels_detail {

struct QuantTile {
    static constexpr int kRowsDecode = 4;
#if defined(TANDEM_KERNELS_AVX2)
    static constexpr int kRows = 2;  // the batch tile is fixed at 2 rows
    static constexpr int kTokens = 4;
#else
    static constexpr int kRows = 4;
    static constexpr int kTokens = 4;
#endif
    static constexpr std::size_t kChunkBytes = 256 * 1024;  // weights per row chunk of a batch (L2: 512 KiB+)
    // Decode prefetches each row this far ahead (measured on Zen 3 from DRAM, one
    // core: Q8_0 20 -> 22-24 GB/s, Q4_0 11.5 -> 15 GB/s).
    static constexpr int kPrefetchBytes = 512;
};

/// The minimum term of row r for token t: sum_b m[b] * s_t[b].
template <GgmlType Ty>
inline float min_term(const float* cw, const QuantizedActs& a, std::int64_t t) noexcept {
    if constexpr (QFormat<Ty>::kMin)
        return vec_dot_f32_f32(cw, a.s(t), a.nb);
    else
        return 0.0f;
}

#if defined(TANDEM_KERNELS_AVX2)

/// Decode: y[rows[k]] = row rows[k] . token 0 for the k < 4 with bit k of
/// `valid` set (the other lanes repeat a valid row and are not written),
/// vpmaddubsw on int8 activations. Each row's arithmetic is independent of its
/// lane, so results do not depend on the tiling. cw: room for 4 * nb floats.
template <GgmlType Ty>
inline void decode_tile4(const WeightView& w, const std::int64_t rows[4], unsigned valid, const QuantizedActs& a,
                         float* cw, float* y) {
    using F = QFormat<Ty>;
    using Block = typename F::Block;
    constexpr int R = 4;
    const std::int64_t nb = a.nb;
    const Block* wr[R];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const Block*>(w.row(rows[r]));
    if constexpr (F::kMin)
        for (int r = 0; r < R; ++r)
            for (std::int64_t b = 0; b < nb; ++b) cw[r * nb + b] = F::m(wr[r][b]);
    const float* da = a.d(0);
    const std::int8_t* aq = a.q(0);
    const float* qsum = a.qsum();
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    // Zero point: sum_b d_w d_a * (-zero * sum(q_a)), for the 4 rows in lanes 0..3.
    __m256 zacc = _mm256_setzero_ps();
    const __m256 neg_zero = _mm256_set1_ps(-static_cast<float>(F::kZero));
    for (std::int64_t b = 0; b < nb; ++b) {
        for (int r = 0; r < R; ++r)
            _mm_prefetch(reinterpret_cast<const char*>(wr[r] + b) + QuantTile::kPrefetchBytes, _MM_HINT_T0);
        const __m256i av = _mm256_load_si256(reinterpret_cast<const __m256i*>(aq + 32 * b));
        // The 4 rows' F16 scales gathered in a GPR, converted at once, times d_a:
        // [s0 s1 s2 s3] in both halves, splat per row with an in-lane shuffle.
        const std::uint64_t h = static_cast<std::uint64_t>(wr[0][b].d) | static_cast<std::uint64_t>(wr[1][b].d) << 16 |
                                static_cast<std::uint64_t>(wr[2][b].d) << 32 |
                                static_cast<std::uint64_t>(wr[3][b].d) << 48;
        const __m128 f = _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<long long>(h)));
        const __m256 sc = _mm256_mul_ps(_mm256_set_m128(f, f), _mm256_broadcast_ss(da + b));
        if constexpr (F::kZero != 0)
            zacc = _mm256_fmadd_ps(sc, _mm256_mul_ps(neg_zero, _mm256_broadcast_ss(qsum + b)), zacc);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
            const W8 p = F::prep8(wr[r][b]);
            __m256i m;
            if constexpr (Ty == GgmlType::Q8_0)
                m = _mm256_madd_epi16(_mm256_maddubs_epi16(p.u, _mm256_sign_epi8(av, p.sign)), ones);
            else
                m = _mm256_madd_epi16(_mm256_maddubs_epi16(p.u, av), ones);
            const __m256 s = r == 0 ? _mm256_permute_ps(sc, 0x00)
                           : r == 1 ? _mm256_permute_ps(sc, 0x55)
                           : r == 2 ? _mm256_permute_ps(sc, 0xaa)
                                    : _mm256_permute_ps(sc, 0xff);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), s, acc[r]);
        }
    }
    alignas(32) float z[8];
    _mm256_store_ps(z, zacc);
    for (int r = 0; r < R; ++r)
        if (valid & (1u << r)) y[rows[r]] = simd::hsum(acc[r]) + z[r] + min_term<Ty>(cw + r * nb, a, 0);
}

/// Batch: 2 rows (r0, r1; equal for a last odd row) x T tokens from t0 (even),
/// vpmaddubsw on int8 activations, for the unsigned 4/5-bit formats other than
/// Q4_0 (which takes Packed8). dw2 (nb, 4) = [dw0 dw1 dw0 dw1] per block; cw0,
/// cw1: per-block correction coefficients of the two rows, -zero * d_w (Q5_0) or
/// m (Q4_1, Q5_1). Writes y[(t0+t)*ldy + r*(r1-r0)] for r < nr.
template <GgmlType Ty, int T>
inline void batch_tile8(const WeightView& w, std::int64_t r0, std::int64_t r1, int nr, const float* dw2,
                        const float* cw0, const float* cw1, const QuantizedActs& a, std::int64_t t0, float* y,
                        std::int64_t ldy) {
    using F = QFormat<Ty>;
    using Block = typename F::Block;
    constexpr int G = (T + 1) / 2;
    const std::int64_t nb = a.nb;
    const Block* w0 = reinterpret_cast<const Block*>(w.row(r0));
    const Block* w1 = reinterpret_cast<const Block*>(w.row(r1));
    const std::int8_t* aq[T];
    for (int t = 0; t < T; ++t) aq[t] = a.q(t0 + t);
    const float* d2[G];
    for (int g = 0; g < G; ++g) d2[g] = a.d2(t0 + 2 * g);
    thread_local AlignedBuffer<float> scales;
    float* sc = scales.reserve(static_cast<std::size_t>(nb * 2 * T));
    for (std::int64_t b = 0; b < nb; ++b) {
        const __m128 sw = _mm_loadu_ps(dw2 + 4 * b);
        for (int g = 0; g < G; ++g) {
            const __m128 sg = _mm_mul_ps(sw, _mm_loadu_ps(d2[g] + 4 * b));
            if (2 * g + 1 < T)
                _mm_storeu_ps(sc + b * 2 * T + 4 * g, sg);
            else
                _mm_storel_pi(reinterpret_cast<__m64*>(sc + b * 2 * T + 4 * g), sg);
        }
    }
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[2][T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    for (std::int64_t b = 0; b < nb; ++b) {
        const W8 p0 = F::prep8(w0[b]), p1 = F::prep8(w1[b]);
        const float* sb = sc + b * 2 * T;
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            const __m256i av = _mm256_load_si256(reinterpret_cast<const __m256i*>(aq[t] + 32 * b));
            __m256i m0, m1;
            if constexpr (Ty == GgmlType::Q8_0) {
                m0 = _mm256_madd_epi16(_mm256_maddubs_epi16(p0.u, _mm256_sign_epi8(av, p0.sign)), ones);
                m1 = _mm256_madd_epi16(_mm256_maddubs_epi16(p1.u, _mm256_sign_epi8(av, p1.sign)), ones);
            } else {
                m0 = _mm256_madd_epi16(_mm256_maddubs_epi16(p0.u, av), ones);
                m1 = _mm256_madd_epi16(_mm256_maddubs_epi16(p1.u, av), ones);
            }
            acc[0][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m0), _mm256_broadcast_ss(sb + 2 * t), acc[0][t]);
            acc[1][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m1), _mm256_broadcast_ss(sb + 2 * t + 1), acc[1][t]);
        }
    }
    for (int t = 0; t < T; ++t) {
        float* yt = y + (t0 + t) * ldy;
        yt[0] = simd::hsum(acc[0][t]) + vec_dot_f32_f32(cw0, a.s(t0 + t), nb);
        if (nr == 2) yt[r1 - r0] = simd::hsum(acc[1][t]) + vec_dot_f32_f32(cw1, a.s(t0 + t), nb);
    }
}

/// A batch tile of exactly `count` (<= T) tokens.
template <GgmlType Ty, int T>
inline void batch_tokens(const WeightView& w, std::int64_t r0, std::int64_t r1, int nr, const float* dw2,
                         const float* cw0, const float* cw1, const QuantizedActs& a, std::int64_t t0,
                         std::int64_t count, float* y, std::int64_t ldy) {
    if constexpr (T >= 1) {
        if (count != T)
            batch_tokens<Ty, T - 1>(w, r0, r1, nr, dw2, cw0, cw1, a, t0, count, y, ldy);
        else
            batch_tile8<Ty, T>(w, r0, r1, nr, dw2, cw0, cw1, a, t0, y, ldy);
    }
}

/// Transposes an 8x8 matrix of 32-bit units: out[k] lane r = in[r] lane k.
inline void transpose8x8_u32(const __m256i in[8], __m256i out[8]) noexcept {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; ++i) {
        const __m256 a = _mm256_castsi256_ps(in[2 * i]), b = _mm256_castsi256_ps(in[2 * i + 1]);
        t[2 * i] = _mm256_unpacklo_ps(a, b);      // a0 b0 a1 b1 | a4 b4 a5 b5
        t[2 * i + 1] = _mm256_unpackhi_ps(a, b);  // a2 b2 a3 b3 | a6 b6 a7 b7
    }
    for (int h = 0; h < 2; ++h) {  // rows 0..3 (h = 0) and 4..7 (h = 1)
        const __m256 *p = t + 4 * h;
        u[4 * h + 0] = _mm256_shuffle_ps(p[0], p[2], 0x44);  // units 0 (and 4)
        u[4 * h + 1] = _mm256_shuffle_ps(p[0], p[2], 0xee);  // 1 (5)
        u[4 * h + 2] = _mm256_shuffle_ps(p[1], p[3], 0x44);  // 2 (6)
        u[4 * h + 3] = _mm256_shuffle_ps(p[1], p[3], 0xee);  // 3 (7)
    }
    for (int k = 0; k < 4; ++k) {
        out[k] = _mm256_castps_si256(_mm256_permute2f128_ps(u[k], u[4 + k], 0x20));
        out[k + 4] = _mm256_castps_si256(_mm256_permute2f128_ps(u[k], u[4 + k], 0x31));
    }
}

/// Batches of Q4_0 and Q8_0 on AVX2 go through a row-interleaved copy of 8 rows
/// at a time ("packed group"), made per call in a small scratch buffer and met
/// by every token while it sits in cache. A block of the group is K vectors;
/// vector k holds 4 bytes of each of the 8 rows (row r in 32-bit lane r):
///  - Q4_0 (K = 8): elements 4k..4k+3 as unsigned quants 0..15. A token's
///    4 activations 4k..4k+3 are broadcast to all lanes and vpmaddubsw gives,
///    per row, two int16 pair sums; the 8 vectors' sums stay in int16 (|sum| <=
///    8 * 2 * 15 * 127 = 30480), one vpmaddwd by 1 makes them the 8 rows' int32
///    dots. The zero point is a float term -8 * d_w * d_a * sum(q_a).
///  - Q8_0 (K = 16): elements 2k, 2k+1 widened to int16, met by vpmaddwd with the
///    token's int16 activations 2k, 2k+1; int32 sums.
/// Per 8 rows x 1 token x 32 weights this is one cvt and one or two FMAs, where
/// the row-major tiles need eight; the multiplies are the same. Each output lane
/// does the same arithmetic whatever rows share its group, so results do not
/// depend on the thread count.
template <GgmlType Ty>
struct Packed8 {
    static_assert(Ty == GgmlType::Q4_0 || Ty == GgmlType::Q8_0);
    static constexpr int K = Ty == GgmlType::Q4_0 ? 8 : 16;
    static constexpr int kTokens = 4;
    /// Floats of scratch per block of a group: K vectors, the 8 scales and (Q4_0) the 8 zero terms.
    static constexpr std::int64_t kFloatsPerBlock = K * 8 + 16;

    /// Packs rows rows[0..7] (repeats allowed) into p: per block b, K vectors at
    /// p + b * kFloatsPerBlock, then d_w (8 floats), then -8 * d_w (8 floats).
    static void pack(const WeightView& w, const std::int64_t rows[8], std::int64_t nb, float* p) noexcept {
        using Block = typename QFormat<Ty>::Block;
        const Block* wr[8];
        for (int r = 0; r < 8; ++r) wr[r] = reinterpret_cast<const Block*>(w.row(rows[r]));
        for (std::int64_t b = 0; b < nb; ++b) {
            float* pb = p + b * kFloatsPerBlock;
            __m256i* v = reinterpret_cast<__m256i*>(pb);
            __m256i in[8];
            if constexpr (Ty == GgmlType::Q4_0) {
                for (int r = 0; r < 8; ++r) in[r] = nibbles_u8(wr[r][b].qs);
                transpose8x8_u32(in, v);
            } else {
                for (int half = 0; half < 2; ++half) {
                    for (int r = 0; r < 8; ++r)
                        in[r] = _mm256_cvtepi8_epi16(
                            _mm_loadu_si128(reinterpret_cast<const __m128i*>(wr[r][b].qs + 16 * half)));
                    transpose8x8_u32(in, v + 8 * half);
                }
            }
            float* d = pb + K * 8;
            for (int r = 0; r < 8; ++r) d[r] = simd::f16_to_f32(wr[r][b].d);
            _mm256_store_ps(d + 8, _mm256_mul_ps(_mm256_load_ps(d), _mm256_set1_ps(-8.0f)));
        }
    }

    /// The activations of 4 tokens, interleaved per block so that a tile reads
    /// them from one pointer at fixed offsets: per block, the tokens' quants
    /// (32 * K / 8 bytes each: int8 for Q4_0, int16 for Q8_0), then their 4
    /// scales d_a and 4 terms s = d_a * sum(q_a). Missing tokens are zeros.
    static constexpr std::int64_t kActBytes = kTokens * 32 * (K / 8);
    static constexpr std::int64_t kActFloatsPerBlock = kActBytes / 4 + 2 * kTokens;

    static void pack_acts(const QuantizedActs& a, std::int64_t t0, std::int64_t count, float* p) noexcept {
        const std::int64_t nb = a.nb;
        constexpr std::size_t kTokenBytes = 32 * (K / 8);
        for (std::int64_t b = 0; b < nb; ++b) {
            float* pb = p + b * kActFloatsPerBlock;
            auto* q = reinterpret_cast<std::byte*>(pb);
            for (std::int64_t t = 0; t < kTokens; ++t) {
                std::byte* dst = q + t * kTokenBytes;
                float* d = pb + kActBytes / 4;
                if (t < count) {
                    const void* src = Ty == GgmlType::Q4_0 ? static_cast<const void*>(a.q(t0 + t) + 32 * b)
                                                           : static_cast<const void*>(a.q16(t0 + t) + 32 * b);
                    std::memcpy(dst, src, kTokenBytes);
                    d[t] = a.d(t0 + t)[b];
                    d[kTokens + t] = a.s(t0 + t)[b];
                } else {
                    std::memset(dst, 0, kTokenBytes);
                    d[t] = d[kTokens + t] = 0.0f;
                }
            }
        }
    }

    /// out[t][r] = row r . token t for t < C, from a packed group p and packed
    /// activations pa (pack_acts).
    template <int C>
    static void tile(const float* p, const float* pa, std::int64_t nb, float out[][8]) noexcept {
        __m256 acc[C];
#pragma GCC unroll 8
        for (int t = 0; t < C; ++t) acc[t] = _mm256_setzero_ps();
        const __m256i ones = _mm256_set1_epi16(1);
        for (std::int64_t b = 0; b < nb; ++b) {
            const float* pb = p + b * kFloatsPerBlock;
            const float* ab = pa + b * kActFloatsPerBlock;
            const __m256i* v = reinterpret_cast<const __m256i*>(pb);
            const __m256 dw = _mm256_load_ps(pb + K * 8);
#pragma GCC unroll 8
            for (int t = 0; t < C; ++t) {
                // Token by token, the block's K vectors come again from L1 (as
                // memory operands): keeping them in registers for two or more
                // tokens measured no faster (Q4_0) or slower (Q8_0; the
                // compiler spills partial sums). Unit k of the token's
                // activations is broadcast with vbroadcastss from memory (a
                // load, no ALU work).
                const float* at = ab + t * 8 * (K / 8);
                __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 16
                for (int k = 0; k < K; ++k) {
                    const __m256i x = _mm256_castps_si256(_mm256_broadcast_ss(at + k));
                    if constexpr (Ty == GgmlType::Q4_0)
                        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(_mm256_load_si256(v + k), x));
                    else
                        s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_load_si256(v + k), x));
                }
                const __m256i dot = Ty == GgmlType::Q4_0 ? _mm256_madd_epi16(s, ones) : s;
                const float* d = ab + kActBytes / 4;
                const __m256 sc = _mm256_mul_ps(dw, _mm256_broadcast_ss(d + t));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), sc, acc[t]);
                if constexpr (Ty == GgmlType::Q4_0)
                    acc[t] = _mm256_fmadd_ps(_mm256_load_ps(pb + K * 8 + 8), _mm256_broadcast_ss(d + kTokens + t),
                                             acc[t]);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < C; ++t) _mm256_storeu_ps(out[t], acc[t]);
    }

    template <int C>
    static void tokens(const float* p, const float* pa, std::int64_t nb, std::int64_t count, float out[][8]) noexcept {
        if constexpr (C >= 1) {
            if (count == C)
                tile<C>(p, pa, nb, out);
            else
                tokens<C - 1>(p, pa, nb, count, out);
        }
    }

    /// Rows [rb, re) of y for every token.
    static void row_range(const WeightView& w, const QuantizedActs& a, float* y, std::int64_t rb, std::int64_t re) {
        const std::int64_t nb = a.nb, n = a.n, ldy = w.rows;
        const std::int64_t tiles = (n + kTokens - 1) / kTokens;
        thread_local AlignedBuffer<float> scratch;
        float* p = scratch.reserve(static_cast<std::size_t>(nb * (kFloatsPerBlock + tiles * kActFloatsPerBlock)));
        float* pa = p + nb * kFloatsPerBlock;
        for (std::int64_t i = 0; i < tiles; ++i)
            pack_acts(a, i * kTokens, std::min<std::int64_t>(kTokens, n - i * kTokens), pa + i * nb * kActFloatsPerBlock);
        alignas(32) float out[kTokens][8];
        for (std::int64_t r0 = rb; r0 < re; r0 += 8) {
            const int nr = static_cast<int>(std::min<std::int64_t>(8, re - r0));
            std::int64_t rows[8];
            for (int r = 0; r < 8; ++r) rows[r] = r0 + std::min(r, nr - 1);
            pack(w, rows, nb, p);
            for (std::int64_t i = 0; i < tiles; ++i) {
                const std::int64_t t0 = i * kTokens, count = std::min<std::int64_t>(kTokens, n - t0);
                tokens<kTokens>(p, pa + i * nb * kActFloatsPerBlock, nb, count, out);
                for (std::int64_t t = 0; t < count; ++t) std::copy(out[t], out[t] + nr, y + (t0 + t) * ldy + r0);
            }
        }
    }
};

/// Rows [rb, re) of y for every token, on the calling thread.
template <GgmlType Ty>
inline void quant_row_range(const WeightView& w, const QuantizedActs& a, float* y, std::int64_t rb, std::int64_t re) {
    using F = QFormat<Ty>;
    using Block = typename F::Block;
    constexpr int RD = QuantTile::kRowsDecode, TP = QuantTile::kTokens;
    const std::int64_t nb = a.nb, ldy = w.rows, n = a.n;
    thread_local AlignedBuffer<float> scratch;
    if (n == 1) {
        // The 4 rows of a tile come from 4 quarters of the range, so the tile
        // reads 4 long sequential streams: 4 adjacent rows (~1 KiB each) read
        // side by side defeat the hardware prefetchers and halve the bandwidth
        // (measured: 6.5 vs 13 GB/s on one Zen 3 core for Q4_0).
        static_assert(RD == 4);
        float* cw = scratch.reserve(static_cast<std::size_t>(RD * nb));
        const std::int64_t q = (re - rb + RD - 1) / RD;
        for (std::int64_t i = 0; i < q; ++i) {
            std::int64_t rows[RD];
            unsigned valid = 0;
            for (int k = 0; k < RD; ++k) {
                const std::int64_t r = rb + k * q + i;
                valid |= (r < re ? 1u : 0u) << k;
                rows[k] = r < re ? r : rb + i;  // stream 0 always has row rb + i
            }
            decode_tile4<Ty>(w, rows, valid, a, cw, y);
        }
        return;
    }
    if constexpr (Ty == GgmlType::Q4_0 || Ty == GgmlType::Q8_0) {
        Packed8<Ty>::row_range(w, a, y, rb, re);
        return;
    }
    // The other formats: the vpmaddubsw tile, whose zero point is a correction
    // term like the minimum of Q4_1/Q5_1.
    const std::int64_t chunk =
        std::max<std::int64_t>(2, static_cast<std::int64_t>(QuantTile::kChunkBytes / w.row_bytes) / 2 * 2);
    float* dw2 = scratch.reserve(static_cast<std::size_t>(chunk * nb * 2 + chunk * nb));  // (chunk/2, nb, 4) + cw
    float* cw = dw2 + chunk * nb * 2;                                                    // (chunk, nb)
    for (std::int64_t rc = rb; rc < re; rc += chunk) {
        const std::int64_t rce = std::min(re, rc + chunk);
        for (std::int64_t r = rc; r < rce; r += 2) {
            const std::int64_t r1 = std::min(r + 1, rce - 1);
            const Block* b0 = reinterpret_cast<const Block*>(w.row(r));
            const Block* b1 = reinterpret_cast<const Block*>(w.row(r1));
            float* d = dw2 + (r - rc) * nb * 2;
            for (std::int64_t b = 0; b < nb; ++b) {
                d[4 * b] = d[4 * b + 2] = F::d(b0[b]);
                d[4 * b + 1] = d[4 * b + 3] = F::d(b1[b]);
                if constexpr (F::kMin) {
                    cw[(r - rc) * nb + b] = F::m(b0[b]);
                    cw[(r1 - rc) * nb + b] = F::m(b1[b]);
                } else if constexpr (F::kZero != 0) {
                    cw[(r - rc) * nb + b] = -static_cast<float>(F::kZero) * F::d(b0[b]);
                    cw[(r1 - rc) * nb + b] = -static_cast<float>(F::kZero) * F::d(b1[b]);
                }
            }
        }
        for (std::int64_t t0 = 0; t0 < n; t0 += TP) {
            const std::int64_t count = std::min<std::int64_t>(TP, n - t0);
            for (std::int64_t r = rc; r < rce; r += 2) {
                const std::int64_t r1 = std::min(r + 1, rce - 1);
                batch_tokens<Ty, TP>(w, r, r1, static_cast<int>(r1 - r + 1), dw2 + (r - rc) * nb * 2,
                                             cw + (r - rc) * nb, cw + (r1 - rc) * nb, a, t0, count, y + r, ldy);
            }
        }
    }
}

#else  // NEON and scalar: one generic tile

/// dw[r*nb + b] = scale of block b of row r; cw likewise for the minimum.
template <GgmlType Ty>
inline void load_row_scales(const WeightView& w, std::int64_t r0, int nr, std::int64_t nb, float* dw, float* cw) {
    using F = QFormat<Ty>;
    for (int r = 0; r < nr; ++r) {
        const auto* blk = reinterpret_cast<const typename F::Block*>(w.row(r0 + r));
        for (std::int64_t b = 0; b < nb; ++b) {
            dw[r * nb + b] = F::d(blk[b]);
            if constexpr (F::kMin) cw[r * nb + b] = F::m(blk[b]);
        }
    }
}

/// y[(t0 + t) * ldy + r] = row (r0 + r) . token (t0 + t) for r < R, t < T.
/// dw, cw: (R, nb) scales and minimums of the rows; sc: room for R*T*nb floats.
template <GgmlType Ty, int R, int T>
inline void quant_tile(const WeightView& w, std::int64_t r0, const float* dw, const float* cw,
                       const QuantizedActs& a, std::int64_t t0, float* sc, float* y, std::int64_t ldy) {
    using F = QFormat<Ty>;
    using Block = typename F::Block;
    const std::int64_t nb = a.nb;
    const Block* wr[R];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const Block*>(w.row(r0 + r));
    const std::int8_t* aq[T];
    for (int t = 0; t < T; ++t) aq[t] = a.q(t0 + t);
    // sc[(r*T + t)*nb + b] = dw[r][b] * da[t][b]: one float per (row, token, block).
    const float* s[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) {
            float* p = sc + (r * T + t) * nb;
            const float* da = a.d(t0 + t);
            for (std::int64_t b = 0; b < nb; ++b) p[b] = dw[r * nb + b] * da[b];
            s[r][t] = p;
        }
    float out[R][T];
#if defined(TANDEM_KERNELS_NEON)
    float32x4_t acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0.0f);
    for (std::int64_t b = 0; b < nb; ++b) {
        W8 p[R];
        for (int r = 0; r < R; ++r) p[r] = F::prep(wr[r][b]);
        for (int t = 0; t < T; ++t) {
            const std::int8_t* q = aq[t] + 32 * b;
            for (int r = 0; r < R; ++r)
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(dot_w8(p[r], q)), s[r][t][b]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) out[r][t] = simd::hsum(acc[r][t]);
#else
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) out[r][t] = 0.0f;
    for (std::int64_t b = 0; b < nb; ++b)
        for (int t = 0; t < T; ++t)
            for (int r = 0; r < R; ++r)
                out[r][t] += static_cast<float>(block_dot_i32<Ty>(wr[r][b], aq[t] + 32 * b)) * s[r][t][b];
#endif
    for (int t = 0; t < T; ++t)
        for (int r = 0; r < R; ++r) y[(t0 + t) * ldy + r] = out[r][t] + min_term<Ty>(cw + r * nb, a, t0 + t);
}

template <GgmlType Ty, int R, int T>
inline void quant_tokens(const WeightView& w, std::int64_t r0, const float* dw, const float* cw,
                         const QuantizedActs& a, std::int64_t t0, std::int64_t count, float* sc, float* y,
                         std::int64_t ldy) {
    if constexpr (T >= 1) {
        if (count == T)
            quant_tile<Ty, R, T>(w, r0, dw, cw, a, t0, sc, y, ldy);
        else
            quant_tokens<Ty, R, T - 1>(w, r0, dw, cw, a, t0, count, sc, y, ldy);
    }
}

/// Rows [rb, re) of y for every token, on the calling thread.
template <GgmlType Ty>
inline void quant_row_range(const WeightView& w, const QuantizedActs& a, float* y, std::int64_t rb, std::int64_t re) {
    constexpr int RD = QuantTile::kRowsDecode, RP = QuantTile::kRows, TP = QuantTile::kTokens;
    const std::int64_t nb = a.nb, ldy = w.rows, n = a.n;
    const int R = n == 1 ? RD : RP;
    const int T = n == 1 ? 1 : TP;
    thread_local AlignedBuffer<float> scratch;
    float* dw = scratch.reserve(static_cast<std::size_t>((2 + T) * R * nb));
    float* cw = dw + R * nb;
    float* sc = cw + R * nb;
    std::int64_t r = rb;
    for (; r + R <= re; r += R) {
        load_row_scales<Ty>(w, r, R, nb, dw, cw);
        for (std::int64_t t0 = 0; t0 < n; t0 += T) {
            const std::int64_t count = std::min<std::int64_t>(T, n - t0);
            if (n == 1)
                quant_tile<Ty, RD, 1>(w, r, dw, cw, a, 0, sc, y + r, ldy);
            else
                quant_tokens<Ty, RP, TP>(w, r, dw, cw, a, t0, count, sc, y + r, ldy);
        }
    }
    for (; r < re; ++r) {
        load_row_scales<Ty>(w, r, 1, nb, dw, cw);
        for (std::int64_t t0 = 0; t0 < n; t0 += TP)
            quant_tokens<Ty, 1, TP>(w, r, dw, cw, a, t0, std::min<std::int64_t>(TP, n - t0), sc, y + r, ldy);
    }
}

#endif

}  // namespace kernels_detail

TANDEM_KERNELS_END
