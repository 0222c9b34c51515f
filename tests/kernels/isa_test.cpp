// Which instruction-set path the kernels compiled to. The path comparisons in
// this area (scalar vs SIMD) only check NEON or AVX2 code if that path is the
// one built, so an aarch64 build (run under qemu-aarch64 in CI) must be NEON.
#include <doctest/doctest.h>

#include <string>

#include "tandem/kernels/simd.hpp"

TEST_CASE("kernels: the build compiles the SIMD path of its target") {
    const std::string isa = tandem::kernels_isa();
    MESSAGE("kernel path: " << isa);
#if defined(__aarch64__)
    CHECK(isa.rfind("neon", 0) == 0);
#if defined(__ARM_FEATURE_DOTPROD)
    CHECK(isa == "neon-dotprod");
#else
    CHECK(isa == "neon");
#endif
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    CHECK(isa == "avx2");
#else
    CHECK(isa == "scalar");
#endif
}
