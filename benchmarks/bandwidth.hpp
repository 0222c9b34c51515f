// Memory read bandwidth of this machine, measured like STREAM's "sum": every
// thread of a pool sums its slice of a buffer much larger than the last-level
// cache. Decode (one token) of a quantized model reads every weight byte once,
// so this number bounds its speed: tokens/s <= bandwidth / bytes per token.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include <time.h>

#include "tandem/core/thread_pool.hpp"

namespace tandem::bench {

struct Bandwidth {
    double median_gbs = 0, min_gbs = 0, max_gbs = 0;
    std::size_t bytes = 0;
    int runs = 0;
};

/// The benchmarks' clock. Wall time by default. With cpu_clock set, the
/// process CPU time divided by the threads in use: on a machine shared with
/// other busy processes this approximates the wall time the same run would take
/// alone (our threads compute or spin-wait the whole time of a parallel run, so
/// CPU time ~ threads x wall time), where wall time mostly measures the others.
struct Clock {
    static inline bool cpu_clock = false;
    static inline unsigned threads = 1;
    static double now() noexcept {
        if (!cpu_clock) return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
        timespec ts{};
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec)) / threads;
    }
};

inline double seconds_since(double t0) { return Clock::now() - t0; }

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

/// Sum of floats in [p, p + n): 8 independent accumulators so the loop is
/// bound by loads, not by the latency of the adds (vectorizes at -O2/-O3).
inline float sum_floats(const float* p, std::size_t n) noexcept {
    float acc[8] = {};
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += p[i + static_cast<std::size_t>(k)];
    float s = 0;
    for (float a : acc) s += a;
    for (; i < n; ++i) s += p[i];
    return s;
}

/// The same sum read as 4 sequential streams (the quarters of [p, p + n)),
/// with software prefetch: the access pattern of the decode kernels, which on
/// some CPUs draws more bandwidth from one core than a single stream.
inline float sum_floats_4way(const float* p, std::size_t n) noexcept {
    const std::size_t q = n / 4 / 8 * 8;
    float acc[4][8] = {};
    for (std::size_t i = 0; i < q; i += 8)
        for (int s = 0; s < 4; ++s) {
            const float* ps = p + static_cast<std::size_t>(s) * q + i;
#if defined(__GNUC__)
            if (i % 16 == 0) __builtin_prefetch(ps + 128);
#endif
            for (int k = 0; k < 8; ++k) acc[s][k] += ps[k];
        }
    float t = 0;
    for (auto& a : acc)
        for (float v : a) t += v;
    for (std::size_t i = 4 * q; i < n; ++i) t += p[i];
    return t;
}

/// Read bandwidth in GB/s (1e9 bytes/s) over a buffer of `bytes`, on all threads
/// of `pool`, one stream per thread (STREAM's sum) or 4 (four_way).
inline Bandwidth measure_read_bandwidth(ThreadPool& pool, std::size_t bytes, int runs, bool four_way = false) {
    const std::size_t n = bytes / sizeof(float);
    struct Free {
        void operator()(float* p) const noexcept { ::operator delete(p, std::align_val_t{64}); }
    };
    std::unique_ptr<float, Free> buf(static_cast<float*>(::operator new(n * sizeof(float), std::align_val_t{64})));
    // Touch every page from the threads that will read them (first-touch placement).
    pool.parallel_for(static_cast<std::int64_t>(n), [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i) buf.get()[i] = static_cast<float>(i & 1023) * 1e-3f;
    });
    std::vector<double> gbs;
    volatile float sink = 0;
    for (int r = 0; r < runs + 1; ++r) {
        std::vector<float> part(pool.size(), 0.0f);
        Clock::threads = pool.size();
        const double t0 = Clock::now();
        pool.run([&](unsigned t, unsigned nt) {
            const std::size_t b = n / nt * t, e = t + 1 == nt ? n : n / nt * (t + 1);
            part[t] = four_way ? sum_floats_4way(buf.get() + b, e - b) : sum_floats(buf.get() + b, e - b);
        });
        const double s = seconds_since(t0);
        for (float p : part) sink = sink + p;
        if (r > 0) gbs.push_back(static_cast<double>(n * sizeof(float)) / s / 1e9);  // run 0 warms up
    }
    Bandwidth out;
    out.median_gbs = median(gbs);
    out.min_gbs = *std::min_element(gbs.begin(), gbs.end());
    out.max_gbs = *std::max_element(gbs.begin(), gbs.end());
    out.bytes = n * sizeof(float);
    out.runs = runs;
    return out;
}

}  // namespace tandem::bench
