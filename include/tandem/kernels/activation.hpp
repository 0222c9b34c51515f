// Element-wise kernels of a transformer block: softmax, SiLU, SwiGLU and the
// residual add, over F32 buffers (Eigen arrays, vectorized).
#pragma once

#include <cstdint>

#include <Eigen/Core>

namespace tandem {

/// A float buffer seen as an Eigen array (n,).
using ArrayMapF = Eigen::Map<Eigen::Array<float, Eigen::Dynamic, 1>>;
using ConstArrayMapF = Eigen::Map<const Eigen::Array<float, Eigen::Dynamic, 1>>;

/// x (n,) <- softmax(x): exp(x - max) / sum, stable for any finite input.
inline void softmax(float* x, std::int64_t n) {
    if (n <= 0) return;
    ArrayMapF v(x, n);
    const float mx = v.maxCoeff();
    v = (v - mx).exp();
    v *= 1.0f / v.sum();
}

/// y (n,) = silu(x) = x / (1 + exp(-x)). y may alias x.
inline void silu(const float* x, float* y, std::int64_t n) {
    const ConstArrayMapF xv(x, n);
    ArrayMapF(y, n) = xv / (1.0f + (-xv).exp());
}

/// out (n,) = silu(gate) * up. out may alias gate or up.
inline void swiglu(const float* gate, const float* up, float* out, std::int64_t n) {
    const ConstArrayMapF g(gate, n), u(up, n);
    ArrayMapF(out, n) = g / (1.0f + (-g).exp()) * u;
}

/// y (n,) += x (n,): the residual connection.
inline void add_inplace(float* y, const float* x, std::int64_t n) {
    ArrayMapF(y, n) += ConstArrayMapF(x, n);
}

}  // namespace tandem
