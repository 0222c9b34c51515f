// Activation quantizers: F32 activations to 8-bit blocks, once per matmul call,
// so that quantized weights meet them in integer dot products.
//
// quantize_row_q8_0_fast and quantize_row_q8_1_fast produce exactly the blocks
// of the reference (scalar) quantizer of the GGUF format: per block of 32,
// d = amax / 127, q = roundf(x * (1/d)) (ties away from zero), d stored as F16;
// Q8_1 adds s = F16(d * sum(q)). The tests check this bit for bit.
//
// QuantizedActs is the matmul's own layout of the same numbers: the quants of
// each token contiguous and aligned (aligned loads per block), the
// F16-rounded scale as F32, and s = d * sum(q) in F32 (for the minimum of
// Q4_1/Q5_1 weights).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

#include "tandem/core/half.hpp"
#include "tandem/core/thread_pool.hpp"
#include "tandem/gguf/types.hpp"
#include "tandem/kernels/simd.hpp"

namespace tandem {

/// A growable, 64-byte aligned array of trivially copyable T (contents are
/// not preserved when it grows).
template <typename T>
class AlignedBuffer {
public:
    T* data() noexcept { return ptr_.get(); }
    const T* data() const noexcept { return ptr_.get(); }
    std::size_t capacity() const noexcept { return cap_; }

    /// Makes room for n elements; returns data().
    T* reserve(std::size_t n) {
        if (n > cap_) {
            ptr_.reset(static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})));
            cap_ = n;
        }
        return ptr_.get();
    }

private:
    struct Free {
        void operator()(T* p) const noexcept { ::operator delete(p, std::align_val_t{64}); }
    };
    std::unique_ptr<T, Free> ptr_;
    std::size_t cap_ = 0;
};

}  // namespace tandem

TANDEM_KERNELS_BEGIN

/// n rows of `cols` activations quantized to 8 bits in blocks of 32, in the
/// layouts the matmul kernels read (see matmul_quant.hpp).
struct QuantizedActs {
    std::int64_t n = 0;     // rows (tokens)
    std::int64_t cols = 0;  // multiple of 32
    std::int64_t nb = 0;    // blocks per row = cols / 32
    AlignedBuffer<std::int8_t> q8_;  // (n, cols) quants
    AlignedBuffer<float> d_;         // (n, nb) F16-rounded scale
    AlignedBuffer<float> s_;         // (n, nb) d * sum(q)
#if defined(TANDEM_KERNELS_AVX2)
    // Batches (n > 1): per pair of tokens (t, t+1) and block, [d_t, d_t, d_t+1, d_t+1],
    // and (if asked) the quants widened to int16, the vpmaddwd operand.
    AlignedBuffer<std::int16_t> q16_;  // (n, cols)
    AlignedBuffer<float> d2_;          // (ceil(n/2), nb, 4)
    // One token (n == 1): per block, sum(q) as F32 (for the zero-point terms).
    AlignedBuffer<float> qsum_;  // (nb,)

    const std::int16_t* q16(std::int64_t t) const noexcept { return q16_.data() + t * cols; }
    const float* d2(std::int64_t t) const noexcept { return d2_.data() + t / 2 * nb * 4; }
    const float* qsum() const noexcept { return qsum_.data(); }
#endif

    const std::int8_t* q(std::int64_t t) const noexcept { return q8_.data() + t * cols; }
    const float* d(std::int64_t t) const noexcept { return d_.data() + t * nb; }
    const float* s(std::int64_t t) const noexcept { return s_.data() + t * nb; }
};

namespace kernels_detail {

/// Quantizes one block of 32: writes q, returns the unrounded d (amax / 127)
/// and stores sum(q) in `sum`. Bit-identical across the three paths.
inline float quantize_block_q8(const float* x, std::int8_t* q, int& sum) noexcept {
#if defined(TANDEM_KERNELS_AVX2)
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(x + 8 * i);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 mul = _mm256_set1_ps(id);
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256i iv[4];
    for (int i = 0; i < 4; ++i) {
        // roundf: truncate, then step away from zero when the dropped part is >= 1/2
        // (v - trunc(v) is exact, so ties are seen exactly).
        const __m256 y = _mm256_mul_ps(v[i], mul);
        const __m256 t = _mm256_round_ps(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(y, t));
        const __m256 step = _mm256_or_ps(_mm256_and_ps(y, sign), one);  // +-1 with y's sign
        const __m256 r = _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), step));
        iv[i] = _mm256_cvttps_epi32(r);
    }
    sum = simd::hsum_i32(_mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3])));
    // packs interleave 128-bit lanes; the permute restores element order.
    const __m256i p16a = _mm256_packs_epi32(iv[0], iv[1]);
    const __m256i p16b = _mm256_packs_epi32(iv[2], iv[3]);
    const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    const __m256i ordered = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), ordered);
    return d;
#elif defined(TANDEM_KERNELS_NEON)
    float32x4_t v[8];
    for (int i = 0; i < 8; ++i) v[i] = vld1q_f32(x + 4 * i);
    float32x4_t m = vabsq_f32(v[0]);
    for (int i = 1; i < 8; ++i) m = vmaxq_f32(m, vabsq_f32(v[i]));
    const float amax = vmaxvq_f32(m);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int32x4_t acc = vdupq_n_s32(0);
    for (int i = 0; i < 8; i += 2) {
        const int32x4_t a = vcvtaq_s32_f32(vmulq_n_f32(v[i], id));  // ties away from zero, as roundf
        const int32x4_t b = vcvtaq_s32_f32(vmulq_n_f32(v[i + 1], id));
        acc = vaddq_s32(acc, vaddq_s32(a, b));
        const int16x8_t h = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
        vst1_s8(q + 4 * i, vqmovn_s16(h));
    }
    sum = vaddvq_s32(acc);
    return d;
#else
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int s = 0;
    for (int j = 0; j < 32; ++j) {
        const float r = std::round(x[j] * id);
        q[j] = static_cast<std::int8_t>(std::fmax(-128.0f, std::fmin(127.0f, r)));
        s += q[j];
    }
    sum = s;
    return d;
#endif
}

}  // namespace kernels_detail

/// F32 (n,) -> Q8_0 blocks (n/32,), identical to the reference quantizer. n % 32 == 0.
inline void quantize_row_q8_0_fast(const float* x, BlockQ8_0* y, std::int64_t n) noexcept {
    for (std::int64_t b = 0; b < n / 32; ++b) {
        int sum = 0;
        const float d = kernels_detail::quantize_block_q8(x + 32 * b, y[b].qs, sum);
        y[b].d = fp32_to_fp16(d);
    }
}

/// F32 (n,) -> Q8_1 blocks (n/32,), identical to the reference quantizer. n % 32 == 0.
inline void quantize_row_q8_1_fast(const float* x, BlockQ8_1* y, std::int64_t n) noexcept {
    for (std::int64_t b = 0; b < n / 32; ++b) {
        int sum = 0;
        const float d = kernels_detail::quantize_block_q8(x + 32 * b, y[b].qs, sum);
        y[b].d = fp32_to_fp16(d);
        y[b].s = fp32_to_fp16(static_cast<float>(sum) * d);
    }
}

/// x (n, cols) -> out, splitting the rows over `pool` when there are several.
/// `int16` also stores the widened quants (the batch kernel for Q8_0 weights reads them).
inline void quantize_acts(const float* x, std::int64_t n, std::int64_t cols, QuantizedActs& out, ThreadPool* pool,
                          bool int16 = false) {
    const std::int64_t nb = cols / 32;
    out.n = n;
    out.cols = cols;
    out.nb = nb;
    out.q8_.reserve(static_cast<std::size_t>(n * cols));
    out.d_.reserve(static_cast<std::size_t>(n * nb));
    out.s_.reserve(static_cast<std::size_t>(n * nb));
#if defined(TANDEM_KERNELS_AVX2)
    int16 = int16 && n > 1;
    if (int16) out.q16_.reserve(static_cast<std::size_t>(n * cols));
    if (n > 1) {
        out.d2_.reserve(static_cast<std::size_t>((n + 1) / 2 * nb * 4));
    } else {
        out.qsum_.reserve(static_cast<std::size_t>(nb));
    }
#else
    (void)int16;  // NEON and scalar read the int8 quants only
#endif
    auto rows = [&](std::int64_t t0, std::int64_t t1) {
        for (std::int64_t t = t0; t < t1; ++t) {
            const float* xr = x + t * cols;
            std::int8_t* q = out.q8_.data() + t * cols;
            float* d = out.d_.data() + t * nb;
            float* s = out.s_.data() + t * nb;
            for (std::int64_t b = 0; b < nb; ++b) {
                int sum = 0;
                const float draw = kernels_detail::quantize_block_q8(xr + 32 * b, q + 32 * b, sum);
                d[b] = fp16_to_fp32(fp32_to_fp16(draw));  // the scale a Q8_0 block would carry
                s[b] = d[b] * static_cast<float>(sum);
#if defined(TANDEM_KERNELS_AVX2)
                if (int16) {
                    const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 32 * b));
                    std::int16_t* q16 = out.q16_.data() + t * cols + 32 * b;
                    _mm256_store_si256(reinterpret_cast<__m256i*>(q16), _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)));
                    _mm256_store_si256(reinterpret_cast<__m256i*>(q16 + 16),
                                       _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1)));
                } else if (n == 1) {
                    out.qsum_.data()[b] = static_cast<float>(sum);
                }
#endif
            }
        }
    };
    if (pool != nullptr && n > 1 && pool->size() > 1 && n * cols >= (1 << 15))  // below: faster than a wake-up
        pool->parallel_for(n, rows);
    else
        rows(0, n);
#if defined(TANDEM_KERNELS_AVX2)
    if (n > 1) {
        for (std::int64_t t = 0; t < n; t += 2) {
            const float* da = out.d(t);
            const float* db = t + 1 < n ? out.d(t + 1) : da;
            float* d2 = out.d2_.data() + t / 2 * nb * 4;
            for (std::int64_t b = 0; b < nb; ++b) {
                d2[4 * b] = d2[4 * b + 1] = da[b];
                d2[4 * b + 2] = d2[4 * b + 3] = db[b];
            }
        }
    }
#endif
}

TANDEM_KERNELS_END
