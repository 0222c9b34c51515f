// Float matmul: y (n, rows) = x (n, cols) @ W^T for W in F32, F16 or BF16,
// and for the K-quants (Q2_K..Q6_K) through a per-thread F32 copy of a few
// rows at a time (never of the whole weight).
//
// Few tokens (n < kEigenTokens, decode): tiles of R rows x T tokens keep R*T
// F32 vector accumulators; each step loads 8 (AVX2) or 4 (NEON) weights per
// row, converts them once (F16C, NEON fcvt, BF16 shift) and meets them with T
// tokens, streaming the weights at memory speed.
// A batch: chunks of kEigenRows rows are converted to F32 (F32 weights are used
// in place) and multiplied by Eigen's cache-blocked GEMM, ~1.5x the tiles' rate
// at n = 64 on AVX2 (29 vs 19-23 GMAC/s per core measured).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <Eigen/Core>

#include "tandem/core/half.hpp"
#include "tandem/core/thread_pool.hpp"
#include "tandem/gguf/quant.hpp"
#include "tandem/kernels/quantize.hpp"
#include "tandem/kernels/simd.hpp"
#include "tandem/kernels/weight.hpp"

TANDEM_KERNELS_BEGIN

namespace kernels_detail {

struct FloatTile {
    static constexpr int kRowsDecode = 4;
    static constexpr int kRows = 4;
    static constexpr int kTokens = 3;
    static constexpr std::int64_t kChunk = 512;  // columns per pass for a small batch (multiple of 256)
    static constexpr std::int64_t kEigenTokens = 48;  // batches at least this large go to Eigen's GEMM (measured crossover)
    static constexpr std::int64_t kEigenRows = 64;   // rows converted to F32 per GEMM call
};

using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// y[:, r0:r0+nr] (row stride ldy) = x (n, cols) @ W_f32 (nr, cols)^T with Eigen's GEMM.
inline void gemm_rows(const float* wf, std::int64_t nr, const float* x, std::int64_t n, std::int64_t cols, float* y,
                      std::int64_t ldy) {
    const Eigen::Map<const RowMajorF> W(wf, nr, cols);
    const Eigen::Map<const RowMajorF> X(x, n, cols);
    Eigen::Map<RowMajorF, 0, Eigen::OuterStride<>> Y(y, n, nr, Eigen::OuterStride<>(ldy));
    Y.noalias() = X * W.transpose();
}

/// One row of `type` to F32: F16/BF16 with vector conversions, anything else
/// through the format's dequantizer.
inline void row_to_f32(GgmlType type, const std::byte* src, float* dst, std::int64_t n) {
    std::int64_t i = 0;
    if (type == GgmlType::F16 || type == GgmlType::BF16) {
        const auto* h = reinterpret_cast<const std::uint16_t*>(src);
        const bool f16 = type == GgmlType::F16;
#if defined(TANDEM_KERNELS_AVX2)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, f16 ? simd::load_f16x8(h + i) : simd::load_bf16x8(h + i));
#elif defined(TANDEM_KERNELS_NEON)
        for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, f16 ? simd::load_f16x4(h + i) : simd::load_bf16x4(h + i));
#endif
        for (; i < n; ++i) dst[i] = f16 ? fp16_to_fp32(h[i]) : bf16_to_fp32(h[i]);
        return;
    }
    dequantize_row(type, src, dst, n);
}

/// Rows [rb, re) of any weight type dequantize_row knows, for a batch: chunks of
/// kEigenRows rows in F32 (in place for F32 weights) times x through Eigen.
/// rb is a multiple of kEigenRows, so every chunk has the same rows (and Eigen
/// the same blocking, hence the same rounding) however the rows are split.
inline void eigen_row_range(const WeightView& w, const float* x, std::int64_t n, float* y, std::int64_t rb,
                            std::int64_t re) {
    thread_local AlignedBuffer<float> buf;
    const std::int64_t rc = FloatTile::kEigenRows;
    float* f = w.type == GgmlType::F32 ? nullptr : buf.reserve(static_cast<std::size_t>(rc * w.cols));
    for (std::int64_t r = rb; r < re; r += rc) {
        const std::int64_t nr = std::min(rc, re - r);
        const float* wf = reinterpret_cast<const float*>(w.row(r));
        if (f != nullptr) {
            for (std::int64_t i = 0; i < nr; ++i) row_to_f32(w.type, w.row(r + i), f + i * w.cols, w.cols);
            wf = f;
        }
        gemm_rows(wf, nr, x, n, w.cols, y + r, w.rows);
    }
}

/// Element type of a row the float tile reads: F32, F16 or BF16.
template <GgmlType Ty>
struct FloatElem;
template <>
struct FloatElem<GgmlType::F32> {
    using T = float;
    static float scalar(const T* p, std::int64_t k) noexcept { return p[k]; }
#if defined(TANDEM_KERNELS_AVX2)
    static __m256 load8(const T* p, std::int64_t k) noexcept { return _mm256_loadu_ps(p + k); }
#elif defined(TANDEM_KERNELS_NEON)
    static float32x4_t load4(const T* p, std::int64_t k) noexcept { return vld1q_f32(p + k); }
#endif
};
template <>
struct FloatElem<GgmlType::F16> {
    using T = std::uint16_t;
    static float scalar(const T* p, std::int64_t k) noexcept { return fp16_to_fp32(p[k]); }
#if defined(TANDEM_KERNELS_AVX2)
    static __m256 load8(const T* p, std::int64_t k) noexcept { return simd::load_f16x8(p + k); }
#elif defined(TANDEM_KERNELS_NEON)
    static float32x4_t load4(const T* p, std::int64_t k) noexcept { return simd::load_f16x4(p + k); }
#endif
};
template <>
struct FloatElem<GgmlType::BF16> {
    using T = std::uint16_t;
    static float scalar(const T* p, std::int64_t k) noexcept { return bf16_to_fp32(p[k]); }
#if defined(TANDEM_KERNELS_AVX2)
    static __m256 load8(const T* p, std::int64_t k) noexcept { return simd::load_bf16x8(p + k); }
#elif defined(TANDEM_KERNELS_NEON)
    static float32x4_t load4(const T* p, std::int64_t k) noexcept { return simd::load_bf16x4(p + k); }
#endif
};

/// y[(t0+t)*ldy + r] (+)= sum_{k0 <= k < k1} w_r[k] * x[(t0+t)*ldx + k], r < R, t < T.
/// rows[r] points at element 0 of row r; `add` accumulates into y instead of storing.
template <GgmlType Ty, int R, int T>
inline void float_tile(const void* const* rows, const float* x, std::int64_t ldx, std::int64_t t0, std::int64_t k0,
                       std::int64_t k1, float* y, std::int64_t ldy, bool add) {
    using E = FloatElem<Ty>;
    using W = typename E::T;
    const W* wr[R];
    for (int r = 0; r < R; ++r) wr[r] = static_cast<const W*>(rows[r]);
    const float* xt[T];
    for (int t = 0; t < T; ++t) xt[t] = x + (t0 + t) * ldx;
    float out[R][T];
    std::int64_t k = k0;
#if defined(TANDEM_KERNELS_AVX2)
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    for (; k + 8 <= k1; k += 8) {
        if constexpr (T == 1)  // one token streams weights from memory: prefetch ahead (see matmul_quant.hpp)
            if ((k & 31) == 0)
                for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(wr[r] + k) + 512, _MM_HINT_T0);
        __m256 wv[R];
        for (int r = 0; r < R; ++r) wv[r] = E::load8(wr[r], k);
        for (int t = 0; t < T; ++t) {
            const __m256 xv = _mm256_loadu_ps(xt[t] + k);
            for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) out[r][t] = simd::hsum(acc[r][t]);
#elif defined(TANDEM_KERNELS_NEON)
    float32x4_t acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0.0f);
    for (; k + 4 <= k1; k += 4) {
        float32x4_t wv[R];
        for (int r = 0; r < R; ++r) wv[r] = E::load4(wr[r], k);
        for (int t = 0; t < T; ++t) {
            const float32x4_t xv = vld1q_f32(xt[t] + k);
            for (int r = 0; r < R; ++r) acc[r][t] = vfmaq_f32(acc[r][t], wv[r], xv);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) out[r][t] = simd::hsum(acc[r][t]);
#else
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) out[r][t] = 0.0f;
#endif
    for (; k < k1; ++k)
        for (int r = 0; r < R; ++r) {
            const float wk = E::scalar(wr[r], k);
            for (int t = 0; t < T; ++t) out[r][t] += wk * xt[t][k];
        }
    for (int t = 0; t < T; ++t)
        for (int r = 0; r < R; ++r) {
            float& dst = y[(t0 + t) * ldy + r];
            dst = add ? dst + out[r][t] : out[r][t];
        }
}

template <GgmlType Ty, int R, int T>
inline void float_rest(const void* const* rows, const float* x, std::int64_t ldx, std::int64_t t0, std::int64_t rest,
                       std::int64_t k0, std::int64_t k1, float* y, std::int64_t ldy, bool add) {
    if constexpr (T >= 1) {
        if (rest == T)
            float_tile<Ty, R, T>(rows, x, ldx, t0, k0, k1, y, ldy, add);
        else
            float_rest<Ty, R, T - 1>(rows, x, ldx, t0, rest, k0, k1, y, ldy, add);
    }
}

/// R rows (pointers to element 0) against all n tokens over columns [k0, k1).
template <GgmlType Ty, int R, int T>
inline void float_rows(const void* const* rows, const float* x, std::int64_t n, std::int64_t ldx, std::int64_t k0,
                       std::int64_t k1, float* y, std::int64_t ldy, bool add) {
    std::int64_t t0 = 0;
    for (; t0 + T <= n; t0 += T) float_tile<Ty, R, T>(rows, x, ldx, t0, k0, k1, y, ldy, add);
    float_rest<Ty, R, T - 1>(rows, x, ldx, t0, n - t0, k0, k1, y, ldy, add);
}

/// Rows [rb, re) of a F32/F16/BF16 weight, all tokens, on the calling thread.
template <GgmlType Ty>
inline void float_row_range(const WeightView& w, const float* x, std::int64_t n, float* y, std::int64_t rb,
                            std::int64_t re) {
    using W = typename FloatElem<Ty>::T;
    constexpr int RD = FloatTile::kRowsDecode, RP = FloatTile::kRows, TP = FloatTile::kTokens;
    const std::int64_t cols = w.cols, ldy = w.rows;
    const std::int64_t chunk = n == 1 ? cols : FloatTile::kChunk;
    for (std::int64_t k0 = 0; k0 < cols; k0 += chunk) {
        const std::int64_t k1 = std::min(cols, k0 + chunk);
        const bool add = k0 > 0;
        std::int64_t r = rb;
        const void* rows[std::max(RD, RP)];
        if (n == 1) {
            // 4 rows from 4 quarters of the range: 4 long sequential streams for
            // the prefetchers (see quant_row_range). Each row's sum is independent
            // of its lane, so the tiling does not change results.
            const std::int64_t q = (re - rb + RD - 1) / RD;
            for (std::int64_t i = 0; i < q; ++i) {
                std::int64_t idx[RD];
                for (int k = 0; k < RD; ++k) {
                    idx[k] = rb + k * q + i;
                    rows[k] = reinterpret_cast<const W*>(w.row(idx[k] < re ? idx[k] : rb + i));
                }
                float out[RD];
                float_tile<Ty, RD, 1>(rows, x, cols, 0, k0, k1, out, 1, false);
                for (int k = 0; k < RD; ++k)
                    if (idx[k] < re) y[idx[k]] = out[k];
            }
            continue;
        } else {
            for (; r + RP <= re; r += RP) {
                for (int i = 0; i < RP; ++i) rows[i] = reinterpret_cast<const W*>(w.row(r + i));
                float_rows<Ty, RP, TP>(rows, x, n, cols, k0, k1, y + r, ldy, add);
            }
        }
        for (; r < re; ++r) {
            rows[0] = reinterpret_cast<const W*>(w.row(r));
            float_rows<Ty, 1, TP>(rows, x, n, cols, k0, k1, y + r, ldy, add);
        }
    }
}

/// Rows [rb, re) of a weight in any type dequantize_row knows (the K-quants):
/// chunks of R rows are expanded into a per-thread F32 buffer, then multiplied.
inline void dequant_row_range(const WeightView& w, const float* x, std::int64_t n, float* y, std::int64_t rb,
                              std::int64_t re) {
    constexpr int RP = FloatTile::kRows, TP = FloatTile::kTokens;
    const std::int64_t cols = w.cols, ldy = w.rows;
    const std::int64_t chunk = n == 1 ? cols : FloatTile::kChunk;
    const auto block = static_cast<std::int64_t>(type_traits(w.type).block_size);
    const auto block_bytes = static_cast<std::int64_t>(type_traits(w.type).type_size);
    thread_local AlignedBuffer<float> buf;
    float* f = buf.reserve(static_cast<std::size_t>(RP * std::min(cols, chunk)));
    for (std::int64_t k0 = 0; k0 < cols; k0 += chunk) {
        const std::int64_t len = std::min(cols, k0 + chunk) - k0;
        const bool add = k0 > 0;
        const void* rows[RP];
        for (std::int64_t r = rb; r < re;) {
            const int nr = static_cast<int>(std::min<std::int64_t>(RP, re - r));
            for (int i = 0; i < nr; ++i) {
                dequantize_row(w.type, w.row(r + i) + k0 / block * block_bytes, f + i * len, len);
                rows[i] = f + i * len;
            }
            // The buffer holds columns [k0, k1): shift x to match.
            if (nr == RP)
                float_rows<GgmlType::F32, RP, TP>(rows, x + k0, n, cols, 0, len, y + r, ldy, add);
            else
                for (int i = 0; i < nr; ++i)
                    float_rows<GgmlType::F32, 1, TP>(rows + i, x + k0, n, cols, 0, len, y + r + i, ldy, add);
            r += nr;
        }
    }
}

}  // namespace kernels_detail

TANDEM_KERNELS_END
