// The kernels built with TANDEM_KERNELS_FORCE_SCALAR (scalar_path.cpp), so a
// test can run the portable path next to the SIMD path in one program.
#pragma once

#include <cstdint>

#include "tandem/core/thread_pool.hpp"
#include "tandem/gguf/types.hpp"
#include "tandem/kernels/weight.hpp"

namespace tandem::test::scalar {

const char* isa();
GgmlType activation_type(GgmlType weights);
void matmul(const WeightView& w, const float* x, std::int64_t n, float* y, ThreadPool& pool);
/// block_dot_i32 for a block of Q8_0, Q4_0, Q4_1, Q5_0 or Q5_1.
std::int32_t block_dot(GgmlType type, const void* block, const std::int8_t* a);
void quantize_q8_0(const float* x, BlockQ8_0* y, std::int64_t n);
void quantize_q8_1(const float* x, BlockQ8_1* y, std::int64_t n);
/// vec_dot_<type>_q8_0 / _q8_1 as appropriate (a holds BlockQ8_0 or BlockQ8_1).
float vec_dot_quant(GgmlType type, const void* w, const void* a, std::int64_t n);
float vec_dot_f16(const std::uint16_t* w, const float* x, std::int64_t n);
float vec_dot_bf16(const std::uint16_t* w, const float* x, std::int64_t n);
/// vec_dot_q{4,5,6}_K_q8_K.
float vec_dot_k(GgmlType type, const void* w, const BlockQ8_K* a, std::int64_t n);
void quantize_q8_K(const float* x, BlockQ8_K* y, std::int64_t n);

}  // namespace tandem::test::scalar
