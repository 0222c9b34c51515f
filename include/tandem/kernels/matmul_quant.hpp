// Quantized matmul: y (n, rows) = x (n, cols) @ W^T for W in Q8_0, Q4_0,
// Q4_1, Q5_0 or Q5_1, with x already quantized to 8 bits (QuantizedActs).
//
// Work is cut into tiles of R weight rows x T tokens that keep R*T vector
// accumulators in registers and walk the blocks once: a weight block is
// unpacked once and meets T tokens, an activation block meets R rows.
//
// One token (decode) is bound by memory bandwidth: 4 rows stream from memory
// side by side (decode_tile4, vpmaddubsw). A batch (prefill) is bound by the
// integer multipliers: rows are taken in chunks of ~kChunkBytes (kept in L2)
// and, for each tile of 4 tokens (kept in L1), every 2-row tile of the chunk
// passes by, so a weight byte comes from memory once per call, not once per
// token. Batch tiles: batch_tile (int16 vpmaddwd) for Q8_0, batch_tile8
// (vpmaddubsw) for the unsigned 4/5-bit formats; see block_dot.hpp.
//
// Per-block float work is what limits AVX2 (Zen 3 measured: 2 integer
// multiplies and ~2 vector loads per cycle), so the loops avoid an extra
// multiply per (row, token, block) for the scale d_w * d_a:
//  - decode: the 4 rows' F16 scales of a block are gathered in a GPR and
//    converted at once, times d_a, and splat per row with an in-lane shuffle;
//  - batch: a tile first writes d_w * d_a for its 2*T pairs and every block
//    (one vector multiply per block), the loop broadcasts them from L1.
// Zero points (Q4_0, Q5_0) and minimums (Q4_1, Q5_1) add
// sum_b c_b * s_b (c = -zero * d_w or m; s = d_a * sum(q_a)) in F32 after a
// tile, except Q8_0 batch (zero point removed in int16) and decode (a running
// F32 vector of d_w * d_a * -zero * sum(q_a)).
//
// Each output's arithmetic does not depend on the tile it lands in, so the
// result is bit-identical for any thread count. NEON and scalar builds use one
// generic tile (quant_tile) for both cases.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

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
/// vpmaddwd on int16 activations (Q8_0). dw2 (nb, 4) = [dw0 dw1 dw0 dw1] per
/// block; cw0, cw1: minimums of the two rows (unused for Q8_0). Writes
/// y[(t0+t)*ldy + r*(r1-r0)] for r < nr.
template <GgmlType Ty, int T>
inline void batch_tile(const WeightView& w, std::int64_t r0, std::int64_t r1, int nr, const float* dw2,
                       const float* cw0, const float* cw1, const QuantizedActs& a, std::int64_t t0, float* y,
                       std::int64_t ldy) {
    using F = QFormat<Ty>;
    using Block = typename F::Block;
    constexpr int G = (T + 1) / 2;  // token pairs
    const std::int64_t nb = a.nb;
    const Block* w0 = reinterpret_cast<const Block*>(w.row(r0));
    const Block* w1 = reinterpret_cast<const Block*>(w.row(r1));
    const std::int16_t* aq[T];
    for (int t = 0; t < T; ++t) aq[t] = a.q16(t0 + t);
    const float* d2[G];
    for (int g = 0; g < G; ++g) d2[g] = a.d2(t0 + 2 * g);
    // The scales of the tile's 2*T (row, token) pairs for every block, in one
    // pass: sc[b][2*t + r] = d_w(r, b) * d_a(t, b). The inner loop then takes
    // each with a broadcast load, which costs a load port, not an ALU slot.
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
    __m256 acc[2][T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    for (std::int64_t b = 0; b < nb; ++b) {
        const W16 p[2] = {F::prep(w0[b]), F::prep(w1[b])};
        const float* sb = sc + b * 2 * T;
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            const __m256i al = _mm256_load_si256(reinterpret_cast<const __m256i*>(aq[t] + 32 * b));
            const __m256i ah = _mm256_load_si256(reinterpret_cast<const __m256i*>(aq[t] + 32 * b + 16));
            const __m256i q0 = _mm256_add_epi32(_mm256_madd_epi16(p[0].lo, al), _mm256_madd_epi16(p[0].hi, ah));
            const __m256i q1 = _mm256_add_epi32(_mm256_madd_epi16(p[1].lo, al), _mm256_madd_epi16(p[1].hi, ah));
            acc[0][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q0), _mm256_broadcast_ss(sb + 2 * t), acc[0][t]);
            acc[1][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q1), _mm256_broadcast_ss(sb + 2 * t + 1), acc[1][t]);
        }
    }
    for (int t = 0; t < T; ++t) {
        float* yt = y + (t0 + t) * ldy;
        yt[0] = simd::hsum(acc[0][t]) + min_term<Ty>(cw0, a, t0 + t);
        if (nr == 2) yt[r1 - r0] = simd::hsum(acc[1][t]) + min_term<Ty>(cw1, a, t0 + t);
    }
}

/// Batch with vpmaddubsw on int8 activations (same contract as batch_tile), for
/// the unsigned 4/5-bit formats. cw0, cw1: per-block correction coefficients of
/// the two rows, -zero * d_w (Q4_0, Q5_0) or m (Q4_1, Q5_1).
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

/// A batch tile of exactly `count` (<= T) tokens; kBytes picks batch_tile8.
template <GgmlType Ty, int T, bool kBytes>
inline void batch_tokens(const WeightView& w, std::int64_t r0, std::int64_t r1, int nr, const float* dw2,
                         const float* cw0, const float* cw1, const QuantizedActs& a, std::int64_t t0,
                         std::int64_t count, float* y, std::int64_t ldy) {
    if constexpr (T >= 1) {
        if (count != T)
            batch_tokens<Ty, T - 1, kBytes>(w, r0, r1, nr, dw2, cw0, cw1, a, t0, count, y, ldy);
        else if constexpr (kBytes)
            batch_tile8<Ty, T>(w, r0, r1, nr, dw2, cw0, cw1, a, t0, y, ldy);
        else
            batch_tile<Ty, T>(w, r0, r1, nr, dw2, cw0, cw1, a, t0, y, ldy);
    }
}

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
    // Q8_0 takes the int16 tile; the unsigned 4/5-bit formats the vpmaddubsw tile,
    // whose zero point is a correction term like the minimum of Q4_1/Q5_1.
    constexpr bool kBytes = Ty != GgmlType::Q8_0;
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
                } else if constexpr (F::kZero != 0 && kBytes) {
                    cw[(r - rc) * nb + b] = -static_cast<float>(F::kZero) * F::d(b0[b]);
                    cw[(r1 - rc) * nb + b] = -static_cast<float>(F::kZero) * F::d(b1[b]);
                }
            }
        }
        for (std::int64_t t0 = 0; t0 < n; t0 += TP) {
            const std::int64_t count = std::min<std::int64_t>(TP, n - t0);
            for (std::int64_t r = rc; r < rce; r += 2) {
                const std::int64_t r1 = std::min(r + 1, rce - 1);
                batch_tokens<Ty, TP, kBytes>(w, r, r1, static_cast<int>(r1 - r + 1), dw2 + (r - rc) * nb * 2,
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
