// The compute kernels of the single-device engine, in one include.
//
//   weight.hpp       WeightView: a (rows, cols) GGUF tensor read in place
//   matmul.hpp       y = x @ W^T for every supported weight type (the hot path)
//   vec_dot.hpp      single-row dots (F32/F16/BF16, Q8_0/Q4_0/Q5_0 x Q8_0, Q4_1/Q5_1 x Q8_1)
//   kquant_dot.hpp   K-quant dots (Q4_K/Q5_K/Q6_K x Q8_K) and the Q8_K quantizer
//   quantize.hpp     activation quantizers (Q8_0, Q8_1, the matmul's own layout)
//   norm.hpp         RMSNorm
//   rope.hpp         rotary position embedding (normal and NeoX layouts)
//   activation.hpp   softmax, SiLU, SwiGLU, residual add
//   attention.hpp    attention over a KV cache (one token, causal batch; GQA)
// Kernels know core/ and the GGUF block layouts, nothing of models.
#pragma once

#include "tandem/kernels/activation.hpp"
#include "tandem/kernels/attention.hpp"
#include "tandem/kernels/kquant_dot.hpp"
#include "tandem/kernels/matmul.hpp"
#include "tandem/kernels/norm.hpp"
#include "tandem/kernels/quantize.hpp"
#include "tandem/kernels/rope.hpp"
#include "tandem/kernels/simd.hpp"
#include "tandem/kernels/vec_dot.hpp"
#include "tandem/kernels/weight.hpp"
