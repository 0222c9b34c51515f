// y (n, rows) = x (n, cols) @ W^T, W read in place from a GGUF tensor.
//
// The entry point of the engine's hot path (> 95% of the time of a forward
// pass). Dispatch by weight type:
//   Q8_0, Q4_0, Q4_1, Q5_0, Q5_1  x is quantized to 8 bits once per call, then
//                                 integer dot products (matmul_quant.hpp)
//   F32, F16, BF16                F32 arithmetic on converted weights (matmul_float.hpp)
//   Q4_K, Q5_K, Q6_K (AVX2)       x is quantized to Q8_K once per call, then the
//                                 integer super-block dots of kquant_dot.hpp
//   other K-quants (and all of them on NEON/scalar builds)
//                                 a few rows at a time dequantized to F32 per thread
// The pool's threads split the output rows; n = 1 is a matrix-vector product
// bound by memory bandwidth, n > 1 reuses each tile of weights across all
// tokens while it sits in cache (for F32/F16/BF16 and the dequantized K-quants,
// batches of >= 48 tokens go through Eigen's GEMM on F32 chunks of 64 rows).
// Several weights that read the same input can go in one call: one
// quantization of x and one pool job for all of them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>

#include "tandem/core/error.hpp"
#include "tandem/core/thread_pool.hpp"
#include "tandem/kernels/kquant_dot.hpp"
#include "tandem/kernels/matmul_float.hpp"
#include "tandem/kernels/matmul_quant.hpp"
#include "tandem/kernels/quantize.hpp"
#include "tandem/kernels/simd.hpp"
#include "tandem/kernels/weight.hpp"

TANDEM_KERNELS_BEGIN

/// Below this much work (weight bytes x min(tokens, 16)) a matmul runs on the
/// calling thread alone: waking the pool costs more than it saves.
inline constexpr std::uint64_t kSerialWorkBytes = 256u << 10;

/// Whether matmul accepts weights of this type.
inline constexpr bool matmul_supports(GgmlType type) noexcept {
    switch (type) {
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::BF16:
        case GgmlType::Q8_0:
        case GgmlType::Q4_0:
        case GgmlType::Q4_1:
        case GgmlType::Q5_0:
        case GgmlType::Q5_1:
        case GgmlType::Q2_K:
        case GgmlType::Q3_K:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
        case GgmlType::Q6_K: return true;
        default: return false;
    }
}

/// The format matmul quantizes the activations to for weights of `type`:
/// Q8_0 or Q8_K, or F32 when they stay as they are. (Tests build their
/// reference from it; it bounds the rounding of the result.)
inline constexpr GgmlType matmul_activation_type(GgmlType type) noexcept {
    switch (type) {
        case GgmlType::Q8_0:
        case GgmlType::Q4_0:
        case GgmlType::Q4_1:
        case GgmlType::Q5_0:
        case GgmlType::Q5_1: return GgmlType::Q8_0;
#if defined(TANDEM_KERNELS_AVX2)
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
        case GgmlType::Q6_K: return GgmlType::Q8_K;
#endif
        default: return GgmlType::F32;
    }
}

namespace kernels_detail {

/// x, quantized once per call in each format some weight of the call needs.
struct PreparedInput {
    const float* x = nullptr;       // (n, cols)
    std::int64_t n = 0;
    const QuantizedActs* q8 = nullptr;  // Q8_0 family
    const BlockQ8_K* q8k = nullptr;     // (n, cols/256), K-quants on AVX2
};

/// Rows of each weight go to threads in multiples of this (whole tiles).
inline std::int64_t split_unit(GgmlType type, std::int64_t n) noexcept {
    switch (matmul_activation_type(type)) {
        case GgmlType::Q8_0:
#if defined(TANDEM_KERNELS_AVX2)
            // Batches of Q4_0 and Q8_0 take packed groups of 8 rows (any split
            // gives the same results; this one leaves no group half empty).
            if (n > 1 && (type == GgmlType::Q4_0 || type == GgmlType::Q8_0)) return 8;
#endif
            return std::max(QuantTile::kRows, QuantTile::kRowsDecode);
        case GgmlType::Q8_K: return 4;
        default: return n >= FloatTile::kEigenTokens ? FloatTile::kEigenRows : FloatTile::kRows;
    }
}

/// K-quants by super-block integer dots, rows [rb, re) for every token (the
/// row, ~1 KiB, stays in L1 while the tokens pass).
template <GgmlType Ty>
inline void k_row_range(const WeightView& w, const BlockQ8_K* acts, std::int64_t n, float* y, std::int64_t rb,
                        std::int64_t re) {
    const std::int64_t nb = w.cols / 256;
    for (std::int64_t r = rb; r < re; ++r) {
        const std::byte* row = w.row(r);
        for (std::int64_t t = 0; t < n; ++t) {
            const BlockQ8_K* a = acts + t * nb;
            float v;
            if constexpr (Ty == GgmlType::Q4_K)
                v = vec_dot_q4_K_q8_K(reinterpret_cast<const BlockQ4_K*>(row), a, w.cols);
            else if constexpr (Ty == GgmlType::Q5_K)
                v = vec_dot_q5_K_q8_K(reinterpret_cast<const BlockQ5_K*>(row), a, w.cols);
            else
                v = vec_dot_q6_K_q8_K(reinterpret_cast<const BlockQ6_K*>(row), a, w.cols);
            y[t * w.rows + r] = v;
        }
    }
}

/// Rows [rb, re) of y = x @ W^T on the calling thread.
inline void run_rows(const WeightView& w, const PreparedInput& in, float* y, std::int64_t rb, std::int64_t re) {
    const std::int64_t n = in.n;
    const bool batch = n >= FloatTile::kEigenTokens;
    switch (w.type) {
        case GgmlType::Q8_0: return quant_row_range<GgmlType::Q8_0>(w, *in.q8, y, rb, re);
        case GgmlType::Q4_0: return quant_row_range<GgmlType::Q4_0>(w, *in.q8, y, rb, re);
        case GgmlType::Q4_1: return quant_row_range<GgmlType::Q4_1>(w, *in.q8, y, rb, re);
        case GgmlType::Q5_0: return quant_row_range<GgmlType::Q5_0>(w, *in.q8, y, rb, re);
        case GgmlType::Q5_1: return quant_row_range<GgmlType::Q5_1>(w, *in.q8, y, rb, re);
        case GgmlType::F32:
            return batch ? eigen_row_range(w, in.x, n, y, rb, re) : float_row_range<GgmlType::F32>(w, in.x, n, y, rb, re);
        case GgmlType::F16:
            return batch ? eigen_row_range(w, in.x, n, y, rb, re) : float_row_range<GgmlType::F16>(w, in.x, n, y, rb, re);
        case GgmlType::BF16:
            return batch ? eigen_row_range(w, in.x, n, y, rb, re) : float_row_range<GgmlType::BF16>(w, in.x, n, y, rb, re);
#if defined(TANDEM_KERNELS_AVX2)
        case GgmlType::Q4_K: return k_row_range<GgmlType::Q4_K>(w, in.q8k, n, y, rb, re);
        case GgmlType::Q5_K: return k_row_range<GgmlType::Q5_K>(w, in.q8k, n, y, rb, re);
        case GgmlType::Q6_K: return k_row_range<GgmlType::Q6_K>(w, in.q8k, n, y, rb, re);
#endif
        default: return batch ? eigen_row_range(w, in.x, n, y, rb, re) : dequant_row_range(w, in.x, n, y, rb, re);
    }
}

}  // namespace kernels_detail

/// y_i (n, w_i.rows) = x (n, cols) @ W_i^T for several weights that read the
/// same x (Wq, Wk, Wv; Wgate, Wup): x is quantized once and the pool runs one
/// job, each thread taking its share of every weight's rows.
/// Throws UnsupportedError for a weight type matmul does not handle, and
/// ConfigError if the weights' row lengths differ or the spans' sizes do.
inline void matmul(std::span<const WeightView* const> ws, const float* x, std::int64_t n, std::span<float* const> ys,
                   ThreadPool& pool) {
    namespace kd = kernels_detail;
    if (ws.size() != ys.size()) throw ConfigError("matmul: as many outputs as weights are needed");
    if (ws.empty() || n <= 0) return;
    const std::int64_t cols = ws[0]->cols;
    bool q8 = false, q16 = false, q8k = false;
    for (const WeightView* w : ws) {
        if (!matmul_supports(w->type))
            throw UnsupportedError("matmul: weights of type " + std::string(type_name(w->type)) + " are not supported");
        if (w->cols != cols)
            throw ConfigError("matmul: weights sharing an input need equal row lengths (" + std::to_string(w->cols) +
                              " vs " + std::to_string(cols) + ")");
        const GgmlType act = matmul_activation_type(w->type);
        q8 = q8 || act == GgmlType::Q8_0;
        q16 = q16 || w->type == GgmlType::Q8_0;
        q8k = q8k || act == GgmlType::Q8_K;
    }
    // One buffer per calling thread (each device drives its own pool from its own
    // thread). The workers must see the caller's buffers: a lambda naming a
    // thread_local reads its own thread's instance, so take pointers first.
    thread_local QuantizedActs caller_q8;
    thread_local AlignedBuffer<BlockQ8_K> caller_q8k;
    kd::PreparedInput in;
    in.x = x;
    in.n = n;
    if (q8) {
        quantize_acts(x, n, cols, caller_q8, &pool, q16);
        in.q8 = &caller_q8;
    }
    if (q8k) {
        const std::int64_t nb = cols / 256;
        BlockQ8_K* acts = caller_q8k.reserve(static_cast<std::size_t>(n * nb));
        auto rows = [&](std::int64_t t0, std::int64_t t1) {
            for (std::int64_t t = t0; t < t1; ++t) quantize_row_q8_K_fast(x + t * cols, acts + t * nb, cols);
        };
        if (n > 1 && pool.size() > 1)
            pool.parallel_for(n, rows);
        else
            rows(0, n);
        in.q8k = acts;
    }
    auto share = [&](unsigned t, unsigned nt) {
        for (std::size_t i = 0; i < ws.size(); ++i) {
            const WeightView& w = *ws[i];
            const std::int64_t unit = kd::split_unit(w.type, n);
            const std::int64_t units = (w.rows + unit - 1) / unit;
            const std::int64_t b = std::min(w.rows, units * t / nt * unit);
            const std::int64_t e = std::min(w.rows, units * (t + 1) / nt * unit);
            if (b < e) kd::run_rows(w, in, ys[i], b, e);
        }
    };
    // Small products (a few hundred KiB of weights x tokens) finish faster on
    // the calling thread than the pool can hand them out; the split never
    // changes results, so this only saves time.
    std::uint64_t work = 0;
    for (const WeightView* w : ws) work += w->n_bytes();
    work *= static_cast<std::uint64_t>(std::min<std::int64_t>(n, 16));
    if (pool.size() == 1 || work < kSerialWorkBytes)
        share(0, 1);
    else
        pool.run(share);
}

/// y (n, w.rows) = x (n, w.cols) @ W^T, on every thread of `pool`.
/// Throws UnsupportedError for a weight type matmul does not handle.
inline void matmul(const WeightView& w, const float* x, std::int64_t n, float* y, ThreadPool& pool) {
    const WeightView* ws[1] = {&w};
    float* ys[1] = {y};
    matmul(std::span<const WeightView* const>(ws), x, n, std::span<float* const>(ys), pool);
}

TANDEM_KERNELS_END
