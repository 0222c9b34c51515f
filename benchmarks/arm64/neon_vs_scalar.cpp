// NEON kernels against the portable scalar kernels, timed in one aarch64
// program: the hot kernels of a decode/prefill step (Q8_0, Q4_0 and F16 row
// dots, matmuls of one token and of 8 tokens, the Q8_0 activation quantizer).
// "scalar" is tandem's portable path built with the compiler's
// auto-vectorizer off (-fno-tree-vectorize -fno-tree-slp-vectorize), i.e. the
// scalar reference as written; at plain -O3 gcc would turn it into NEON too.
//
// Not a CMake target (benchmarks/*.cpp are; this folder is not globbed):
// scripts/test-arm64.sh (ARM64_BENCH=1) compiles this file twice with the
// aarch64 cross compiler, once with TANDEM_KERNELS_FORCE_SCALAR (the scalar
// path, in namespace tandem::kernels_scalar) and once for NEON with
// NEON_VS_SCALAR_MAIN, links the two and runs the result under qemu-aarch64.
// Both halves build the same inputs from the same seeds; main() checks that the
// two paths agree before printing times. Medians of 7 runs of thread CPU time,
// one thread.
//
// Under qemu every instruction is translated, so these ratios say how much
// work NEON saves in instructions, not how fast a phone runs: qemu timings are
// not phone timings.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <time.h>

#include "tandem/core/thread_pool.hpp"
#include "tandem/gguf/quant.hpp"
#include "tandem/kernels/matmul.hpp"
#include "tandem/kernels/quantize.hpp"
#include "tandem/kernels/vec_dot.hpp"

namespace neon_bench {

/// One kernel's result: median seconds per call and a checksum of its output.
struct Timing {
    std::string name;
    double seconds = 0;
    double checksum = 0;
};

inline std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 0.5f);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

inline std::vector<std::byte> quantized(tandem::GgmlType t, std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
    const auto rb = static_cast<std::size_t>(tandem::row_bytes(t, static_cast<std::uint64_t>(cols)));
    std::vector<std::byte> d(rb * static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r) {
        const auto x = random_floats(static_cast<std::size_t>(cols), seed + static_cast<std::uint32_t>(r));
        tandem::quantize_row(t, x.data(), d.data() + static_cast<std::size_t>(r) * rb, cols);
    }
    return d;
}

/// This thread's CPU time in seconds: other processes on a busy machine (or
/// qemu's own threads) do not count.
inline double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// Median CPU seconds of `fn` over 7 runs of `reps` calls each.
inline double median_seconds(int reps, const std::function<void()>& fn) {
    std::vector<double> s;
    for (int run = 0; run < 7; ++run) {
        const double t0 = thread_cpu_seconds();
        for (int i = 0; i < reps; ++i) fn();
        s.push_back((thread_cpu_seconds() - t0) / reps);
    }
    std::sort(s.begin(), s.end());
    return s[s.size() / 2];
}

}  // namespace neon_bench

#if defined(TANDEM_KERNELS_FORCE_SCALAR)
#define NEON_BENCH_FN time_kernels_scalar
#else
#define NEON_BENCH_FN time_kernels_simd
#endif

std::vector<neon_bench::Timing> time_kernels_scalar();
std::vector<neon_bench::Timing> time_kernels_simd();
const char* simd_isa();

#if !defined(TANDEM_KERNELS_FORCE_SCALAR)
const char* simd_isa() { return tandem::kernels_isa(); }
#endif

std::vector<neon_bench::Timing> NEON_BENCH_FN() {
    using namespace tandem;
    using neon_bench::median_seconds;
    std::vector<neon_bench::Timing> out;
    ThreadPool pool(1);
    constexpr std::int64_t kDot = 4096;  // elements per row dot
    constexpr std::int64_t kRows = 256, kCols = 1024;
    const auto x = neon_bench::random_floats(kDot, 7);
    volatile float sink = 0;

    {  // row dots against quantized activations (the inner loop of decode)
        const auto w8 = neon_bench::quantized(GgmlType::Q8_0, 1, kDot, 1);
        const auto w4 = neon_bench::quantized(GgmlType::Q4_0, 1, kDot, 2);
        std::vector<BlockQ8_0> a(kDot / 32);
        quantize_row_q8_0_fast(x.data(), a.data(), kDot);
        const auto* b8 = reinterpret_cast<const BlockQ8_0*>(w8.data());
        const auto* b4 = reinterpret_cast<const BlockQ4_0*>(w4.data());
        out.push_back({"vec_dot Q8_0 x Q8_0 (4096)", median_seconds(400, [&] { sink = vec_dot_q8_0_q8_0(b8, a.data(), kDot); }),
                       vec_dot_q8_0_q8_0(b8, a.data(), kDot)});
        out.push_back({"vec_dot Q4_0 x Q8_0 (4096)", median_seconds(400, [&] { sink = vec_dot_q4_0_q8_0(b4, a.data(), kDot); }),
                       vec_dot_q4_0_q8_0(b4, a.data(), kDot)});
        std::vector<std::uint16_t> h(kDot);
        for (std::int64_t i = 0; i < kDot; ++i) h[static_cast<std::size_t>(i)] = fp32_to_fp16(x[static_cast<std::size_t>((i * 7) % kDot)]);
        out.push_back({"vec_dot F16 x F32 (4096)", median_seconds(400, [&] { sink = vec_dot_f16_f32(h.data(), x.data(), kDot); }),
                       vec_dot_f16_f32(h.data(), x.data(), kDot)});
    }
    {  // the activation quantizer
        std::vector<BlockQ8_0> a(kDot / 32);
        out.push_back({"quantize Q8_0 (4096)", median_seconds(400, [&] { quantize_row_q8_0_fast(x.data(), a.data(), kDot); }), 0});
        double cs = 0;
        for (const auto& b : a) cs += b.qs[0] + b.qs[31];
        out.back().checksum = cs;
    }
    for (const auto t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16}) {  // matmuls, 1 and 8 tokens
        const auto data = neon_bench::quantized(t, kRows, kCols, 100);
        const auto w = weight_view(t, kRows, kCols, data.data());
        for (const std::int64_t n : {1, 8}) {
            const auto xs = neon_bench::random_floats(static_cast<std::size_t>(n * kCols), 200);
            std::vector<float> y(static_cast<std::size_t>(n * kRows));
            const std::string name = "matmul " + std::string(type_name(t)) + " 256x1024, " + std::to_string(n) +
                                     (n == 1 ? " token" : " tokens");
            const double s = median_seconds(n == 1 ? 20 : 5, [&] { matmul(w, xs.data(), n, y.data(), pool); });
            double cs = 0;
            for (const float v : y) cs += v;
            out.push_back({name, s, cs});
        }
    }
    (void)sink;
    return out;
}

#if defined(NEON_VS_SCALAR_MAIN)
int main() {
    const auto simd = time_kernels_simd();
    const auto scalar = time_kernels_scalar();
    std::printf("kernels: %s vs scalar (no auto-vectorization), 1 thread, medians of 7 runs of CPU time\n"
                "(under qemu-aarch64: qemu timings are not phone timings)\n", simd_isa());
    std::printf("%-32s %12s %12s %8s\n", "kernel", "scalar us", "simd us", "speedup");
    int bad = 0;
    for (std::size_t i = 0; i < simd.size(); ++i) {
        const double a = scalar[i].checksum, b = simd[i].checksum;
        const bool same = std::fabs(a - b) <= 1e-3 * (std::fabs(a) + 1.0);
        if (!same) {
            std::fprintf(stderr, "%s: the paths disagree (scalar %.6g, simd %.6g)\n", simd[i].name.c_str(), a, b);
            ++bad;
        }
        std::printf("%-32s %12.1f %12.1f %7.2fx\n", simd[i].name.c_str(), scalar[i].seconds * 1e6,
                    simd[i].seconds * 1e6, scalar[i].seconds / simd[i].seconds);
    }
    return bad == 0 ? 0 : 1;
}
#endif
