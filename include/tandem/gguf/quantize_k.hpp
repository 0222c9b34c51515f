// Reference quantizers for the K-quant formats (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K):
// ggml's quantize_row_*_ref algorithms without an importance matrix.
//
// Unlike the legacy formats, a K-quant's scales are searched for: each 16- or
// 32-element sub-block gets the scale (and min) that minimises a weighted
// error over a small grid of candidates, then the sub-block scales are
// themselves quantized to 4/6/8 bits against one F16 super-block scale, and the
// quants are recomputed with the stored scales. The float operations follow
// ggml's reference in order, with contraction off, so the bytes are the same on
// every compiler. (tandem has no ggml to compare against byte for byte; the
// tests bound the error and check the block layout through the dequantizers.)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "tandem/core/half.hpp"
#include "tandem/gguf/dequantize.hpp"
#include "tandem/gguf/quantize.hpp"
#include "tandem/gguf/types.hpp"

namespace tandem {

namespace detail {

inline constexpr float kGroupMaxEps = 1e-15f;  // below this a sub-block counts as all zero

/// Symmetric scale search (ggml's make_qx_quants with squared-value weights):
/// L[i] = q + nmax with q in [-nmax, nmax-1]; returns the scale.
TANDEM_NO_FP_CONTRACT_FN inline float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L) {
    TANDEM_NO_FP_CONTRACT_BODY
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    // Integer-only helper: float arithmetic stays in this function, where
    // contraction is off (GCC's attribute does not reach into lambdas).
    auto clampq = [&](int l) { return std::max(-nmax, std::min(nmax - 1, l)); };
    float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = clampq(nearest_int(iscale * x[i]));
        L[i] = static_cast<std::int8_t>(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clampq(nearest_int(iscale * x[i]));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * static_cast<float>(l);
            suml2 += w * static_cast<float>(l) * static_cast<float>(l);
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(nmax + clampq(nearest_int(iscale * x[i])));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/// Q3_K's scale search (ggml's make_q3_quants with do_rmse): start from the
/// max-based scale, then move single quants while the weighted fit improves.
TANDEM_NO_FP_CONTRACT_FN inline float make_q3_quants(int n, int nmax, const float* x, std::int8_t* L) {
    TANDEM_NO_FP_CONTRACT_BODY
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    auto clampq = [&](int l) { return std::max(-nmax, std::min(nmax - 1, l)); };
    const float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = clampq(nearest_int(iscale * x[i]));
        L[i] = static_cast<std::int8_t>(l);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            const float li = static_cast<float>(L[i]);
            float slx = sumlx - w * x[i] * li;
            if (slx > 0) {
                float sl2 = suml2 - w * li * li;
                const int new_l = clampq(nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w * x[i] * static_cast<float>(new_l);
                    sl2 += w * static_cast<float>(new_l) * static_cast<float>(new_l);
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<std::int8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (n_changed == 0) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/// Affine scale-and-min search (ggml's make_qkx2_quants): x ~ scale * L - min_out,
/// L in [0, nmax]; `min_out` receives the (non-negative) min.
TANDEM_NO_FP_CONTRACT_FN inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights,
                                                       std::uint8_t* L, float* min_out, std::uint8_t* Laux,
                                                       float rmin, float rdelta, int nstep, bool use_mad) {
    TANDEM_NO_FP_CONTRACT_BODY
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *min_out = -min;
        return 0.0f;
    }
    auto clampq = [&](int l) { return std::max(0, std::min(nmax, l)); };
    auto error = [&](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };  // no sum inside
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = static_cast<std::uint8_t>(clampq(nearest_int(iscale * (x[i] - min))));
        best_error += weights[i] * error(scale * static_cast<float>(L[i]) + min - x[i]);
    }
    if (nstep < 1) {
        *min_out = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clampq(nearest_int(iscale * (x[i] - min)));
            Laux[i] = static_cast<std::uint8_t>(l);
            const float w = weights[i];
            sum_l += w * static_cast<float>(l);
            sum_l2 += w * static_cast<float>(l) * static_cast<float>(l);
            sum_xl += w * static_cast<float>(l) * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i)
                cur_error += weights[i] * error(this_scale * static_cast<float>(Laux[i]) + this_min - x[i]);
            if (cur_error < best_error) {
                std::memcpy(L, Laux, static_cast<std::size_t>(n));
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *min_out = -min;
    return scale;
}

/// Packs 256 2-bit values (0..3) the Q2_K/Q3_K way: byte 32*(e/128) + e%32, bits 2*((e%128)/32).
inline void pack_2bit(const std::uint8_t* L, std::uint8_t* qs) noexcept {
    for (int j = 0; j < 256; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                      (L[j + l + 96] << 6));
}

/// Packs 8 six-bit scales and mins into Q4_K/Q5_K's 12 bytes (inverse of scale_min_k4).
inline void pack_scale_min_k4(const std::uint8_t* ls, const std::uint8_t* lm, std::uint8_t* q) noexcept {
    std::memset(q, 0, kKScaleSize);
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = static_cast<std::uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            q[j - 4] = static_cast<std::uint8_t>(q[j - 4] | ((ls[j] >> 4) << 6));
            q[j] = static_cast<std::uint8_t>(q[j] | ((lm[j] >> 4) << 6));
        }
    }
}

/// Q4_K/Q5_K share everything but the number of levels and the search grid.
TANDEM_NO_FP_CONTRACT_FN inline void quantize_k4_block(const float* x, int nmax, float rmin, int nstep, std::uint16_t& d_out,
                                                       std::uint16_t& dmin_out, std::uint8_t* scales, std::uint8_t* L) {
    TANDEM_NO_FP_CONTRACT_BODY
    std::uint8_t Laux[32];
    float weights[32], mins[8], sub_scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        sub_scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
        if (sub_scales[j] > max_scale) max_scale = sub_scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    std::uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; ++j) {
        ls[j] = static_cast<std::uint8_t>(std::min(63, nearest_int(inv_scale * sub_scales[j]) & 0xff));
        lm[j] = static_cast<std::uint8_t>(std::min(63, nearest_int(inv_min * mins[j]) & 0xff));
    }
    pack_scale_min_k4(ls, lm, scales);
    d_out = fp32_to_fp16(max_scale / 63.0f);
    dmin_out = fp32_to_fp16(max_min / 63.0f);
    for (int j = 0; j < 8; ++j) {
        std::uint8_t sc, m;
        scale_min_k4(j, scales, sc, m);
        const float d = fp16_to_fp32(d_out) * static_cast<float>(sc);
        if (d == 0.0f) continue;
        const float dm = fp16_to_fp32(dmin_out) * static_cast<float>(m);
        for (int ii = 0; ii < 32; ++ii)
            L[32 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, nearest_int((x[32 * j + ii] + dm) / d))));
    }
}

}  // namespace detail

/// Q2_K: 16 sub-blocks of 16, 2-bit quants, 4-bit scale and min per sub-block.
TANDEM_NO_FP_CONTRACT_FN inline void quantize_row_q2_k(const float* x, void* dst, std::int64_t n) {
    TANDEM_NO_FP_CONTRACT_BODY
    const auto nb = detail::count_blocks(n, kQK_K, "Q2_K");
    for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
        BlockQ2_K b{};
        std::uint8_t L[256], Laux[16];
        float weights[16], mins[16], scales[16];
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
            scales[j] = detail::make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<std::uint8_t>(detail::nearest_int(iscale * scales[j]));
            b.d = fp32_to_fp16(max_scale / 15.0f);
        } else {
            b.d = fp32_to_fp16(0.0f);
        }
        if (max_min > 0) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; ++j)
                b.scales[j] = static_cast<std::uint8_t>(b.scales[j] | (static_cast<unsigned>(detail::nearest_int(iscale * mins[j])) << 4));
            b.dmin = fp32_to_fp16(max_min / 15.0f);
        } else {
            b.dmin = fp32_to_fp16(0.0f);
        }
        for (int j = 0; j < 16; ++j) {
            const float d = fp16_to_fp32(b.d) * static_cast<float>(b.scales[j] & 0xF);
            if (d == 0.0f) continue;
            const float dm = fp16_to_fp32(b.dmin) * static_cast<float>(b.scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii)
                L[16 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(3, detail::nearest_int((x[16 * j + ii] + dm) / d))));
        }
        detail::pack_2bit(L, b.qs);
        detail::store_block(dst, i, b);
    }
}

/// Q3_K: 16 sub-blocks of 16, 3-bit quants, 6-bit signed scales.
TANDEM_NO_FP_CONTRACT_FN inline void quantize_row_q3_k(const float* x, void* dst, std::int64_t n) {
    TANDEM_NO_FP_CONTRACT_BODY
    const auto nb = detail::count_blocks(n, kQK_K, "Q3_K");
    for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
        BlockQ3_K b{};
        std::int8_t L[256];
        float scales[16];
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; ++j) {
            scales[j] = detail::make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            if (std::fabs(scales[j]) > amax) {
                amax = std::fabs(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; ++j) {
                const int l = std::max(-32, std::min(31, detail::nearest_int(iscale * scales[j]))) + 32;
                if (j < 8)
                    b.scales[j] = static_cast<std::uint8_t>(l & 0xF);
                else
                    b.scales[j - 8] = static_cast<std::uint8_t>(b.scales[j - 8] | ((l & 0xF) << 4));
                b.scales[j % 4 + 8] = static_cast<std::uint8_t>(b.scales[j % 4 + 8] | ((l >> 4) << (2 * (j / 4))));
            }
            b.d = fp32_to_fp16(1 / iscale);
        } else {
            b.d = fp32_to_fp16(0.0f);
        }
        for (int j = 0; j < 16; ++j) {
            const int low = j < 8 ? (b.scales[j] & 0xF) : (b.scales[j - 8] >> 4);
            const int sc = (low | (((b.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
            const float d = fp16_to_fp32(b.d) * static_cast<float>(sc);
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii)
                L[16 * j + ii] = static_cast<std::int8_t>(std::max(-4, std::min(3, detail::nearest_int(x[16 * j + ii] / d))) + 4);
        }
        // High bit of quant e goes to bit e/32 of hmask[e%32]; the low 2 bits stay.
        std::uint8_t low[256];
        for (int e = 0; e < 256; ++e) {
            if (L[e] > 3) b.hmask[e % 32] = static_cast<std::uint8_t>(b.hmask[e % 32] | (1u << (e / 32)));
            low[e] = static_cast<std::uint8_t>(L[e] > 3 ? L[e] - 4 : L[e]);
        }
        detail::pack_2bit(low, b.qs);
        detail::store_block(dst, i, b);
    }
}

/// Q4_K: 8 sub-blocks of 32, 4-bit quants, 6-bit scale and min per sub-block.
inline void quantize_row_q4_k(const float* x, void* dst, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK_K, "Q4_K");
    for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
        BlockQ4_K b{};
        std::uint8_t L[256];
        detail::quantize_k4_block(x, 15, -1.0f, 20, b.d, b.dmin, b.scales, L);
        for (int j = 0; j < 256; j += 64)
            for (int l = 0; l < 32; ++l) b.qs[j / 2 + l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 4));
        detail::store_block(dst, i, b);
    }
}

/// Q5_K: as Q4_K with 5-bit quants (the fifth bit in qh).
inline void quantize_row_q5_k(const float* x, void* dst, std::int64_t n) {
    const auto nb = detail::count_blocks(n, kQK_K, "Q5_K");
    for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
        BlockQ5_K b{};
        std::uint8_t L[256];
        detail::quantize_k4_block(x, 31, -0.5f, 15, b.d, b.dmin, b.scales, L);
        for (int e = 0; e < 256; ++e) {
            // nibble (e%64)/32 of qs[32*(e/64) + e%32]; bit 4 -> bit e/32 of qh[e%32]
            const int byte = 32 * (e / 64) + e % 32;
            b.qs[byte] = static_cast<std::uint8_t>(b.qs[byte] | ((L[e] & 0xF) << (4 * ((e % 64) / 32))));
            if (L[e] > 15) b.qh[e % 32] = static_cast<std::uint8_t>(b.qh[e % 32] | (1u << (e / 32)));
        }
        detail::store_block(dst, i, b);
    }
}

/// Q6_K: 16 sub-blocks of 16, 6-bit quants, 8-bit signed scales.
TANDEM_NO_FP_CONTRACT_FN inline void quantize_row_q6_k(const float* x, void* dst, std::int64_t n) {
    TANDEM_NO_FP_CONTRACT_BODY
    const auto nb = detail::count_blocks(n, kQK_K, "Q6_K");
    for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
        BlockQ6_K b{};
        std::int8_t L[256];
        float scales[16];
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ++ib) {
            scales[ib] = detail::make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            if (std::fabs(scales[ib]) > max_abs_scale) {
                max_abs_scale = std::fabs(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < detail::kGroupMaxEps) {  // all zero
            detail::store_block(dst, i, b);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        b.d = fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < 16; ++ib)
            b.scales[ib] = static_cast<std::int8_t>(std::min(127, detail::nearest_int(iscale * scales[ib])));
        for (int j = 0; j < 16; ++j) {
            const float d = fp16_to_fp32(b.d) * static_cast<float>(b.scales[j]);
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii)
                L[16 * j + ii] = static_cast<std::int8_t>(std::max(-32, std::min(31, detail::nearest_int(x[16 * j + ii] / d))) + 32);
        }
        for (int e = 0; e < 256; ++e) {
            // low 4 bits: nibble (e%128)/64 of ql[64*(e/128) + e%64]; high 2 bits: qh[32*(e/128) + e%32]
            const int q = L[e];
            const int lo = 64 * (e / 128) + e % 64, hi = 32 * (e / 128) + e % 32;
            b.ql[lo] = static_cast<std::uint8_t>(b.ql[lo] | ((q & 0xF) << (4 * ((e % 128) / 64))));
            b.qh[hi] = static_cast<std::uint8_t>(b.qh[hi] | ((q >> 4) << (2 * ((e % 128) / 32))));
        }
        detail::store_block(dst, i, b);
    }
}

}  // namespace tandem
