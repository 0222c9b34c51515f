// This translation unit compiles the kernels' portable scalar path (the
// functions land in tandem::kernels_scalar, so they coexist with the SIMD ones).
#define TANDEM_KERNELS_FORCE_SCALAR 1

#include "scalar_path.hpp"

#include "tandem/kernels/kquant_dot.hpp"
#include "tandem/kernels/matmul.hpp"
#include "tandem/kernels/quantize.hpp"
#include "tandem/kernels/vec_dot.hpp"

static_assert(tandem::kernels_isa()[0] == 's', "this TU must build the scalar path");

namespace tandem::test::scalar {

const char* isa() { return kernels_isa(); }
GgmlType activation_type(GgmlType weights) { return matmul_activation_type(weights); }

void matmul(const WeightView& w, const float* x, std::int64_t n, float* y, ThreadPool& pool) {
    tandem::matmul(w, x, n, y, pool);
}

std::int32_t block_dot(GgmlType type, const void* block, const std::int8_t* a) {
    namespace kd = kernels_detail;
    switch (type) {
        case GgmlType::Q8_0: return kd::block_dot_i32<GgmlType::Q8_0>(*static_cast<const BlockQ8_0*>(block), a);
        case GgmlType::Q4_0: return kd::block_dot_i32<GgmlType::Q4_0>(*static_cast<const BlockQ4_0*>(block), a);
        case GgmlType::Q4_1: return kd::block_dot_i32<GgmlType::Q4_1>(*static_cast<const BlockQ4_1*>(block), a);
        case GgmlType::Q5_0: return kd::block_dot_i32<GgmlType::Q5_0>(*static_cast<const BlockQ5_0*>(block), a);
        case GgmlType::Q5_1: return kd::block_dot_i32<GgmlType::Q5_1>(*static_cast<const BlockQ5_1*>(block), a);
        default: return 0;
    }
}

void quantize_q8_0(const float* x, BlockQ8_0* y, std::int64_t n) { quantize_row_q8_0_fast(x, y, n); }
void quantize_q8_1(const float* x, BlockQ8_1* y, std::int64_t n) { quantize_row_q8_1_fast(x, y, n); }

float vec_dot_quant(GgmlType type, const void* w, const void* a, std::int64_t n) {
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

float vec_dot_f16(const std::uint16_t* w, const float* x, std::int64_t n) { return vec_dot_f16_f32(w, x, n); }
float vec_dot_bf16(const std::uint16_t* w, const float* x, std::int64_t n) { return vec_dot_bf16_f32(w, x, n); }

float vec_dot_k(GgmlType type, const void* w, const BlockQ8_K* a, std::int64_t n) {
    switch (type) {
        case GgmlType::Q4_K: return vec_dot_q4_K_q8_K(static_cast<const BlockQ4_K*>(w), a, n);
        case GgmlType::Q5_K: return vec_dot_q5_K_q8_K(static_cast<const BlockQ5_K*>(w), a, n);
        case GgmlType::Q6_K: return vec_dot_q6_K_q8_K(static_cast<const BlockQ6_K*>(w), a, n);
        default: return 0.0f;
    }
}

void quantize_q8_K(const float* x, BlockQ8_K* y, std::int64_t n) { quantize_row_q8_K_fast(x, y, n); }

}  // namespace tandem::test::scalar
