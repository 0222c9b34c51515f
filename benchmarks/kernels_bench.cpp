// Kernel benchmark: tandem's matmul on the matrices of tinyllama-1.1B against
// the naive scalar path (dequantize a row, then a plain float dot), measured in
// the same run, next to this machine's memory bandwidth.
//
//   (a) read bandwidth, STREAM-like sum over 256 MiB, 1 and 2 threads (one
//       stream per thread, and four streams with prefetch like the kernels)
//   (b) decode: one token through every matmul of the model (22 layers x 7
//       matrices + the output head): GB/s, fraction of the bandwidth, tokens/s
//       and the bandwidth bound on tokens/s
//   (c) prefill: 64 tokens through the 22 layers (+ the head for the last token)
// for Q8_0, Q4_0 and F16 weights (random content), 1 and 2 threads, medians.
//
// Usage: bench-kernels-bench [--json out.json] [--runs N] [--types Q8_0,Q4_0,F16] [--no-naive] [--cpu-clock]
//   --cpu-clock  time with process CPU time / threads instead of wall time, for a
//                machine that other processes keep busy (see bandwidth.hpp)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bandwidth.hpp"
#include "tandem/core/half.hpp"
#include "tandem/core/thread_pool.hpp"
#include "tandem/gguf/quant.hpp"
#include "tandem/kernels/matmul.hpp"

using namespace tandem;
using bench::Clock;
using bench::median;
using bench::seconds_since;

namespace {

struct Shape {
    const char* name;
    std::int64_t rows, cols;
};

// tinyllama-1.1B: dim 2048, ffn 5632, 32 heads, 4 kv heads x 64, vocab 32000, 22 layers.
constexpr Shape kLayer[] = {{"attn_q", 2048, 2048},   {"attn_k", 256, 2048},   {"attn_v", 256, 2048},
                            {"attn_output", 2048, 2048}, {"ffn_gate", 5632, 2048}, {"ffn_up", 5632, 2048},
                            {"ffn_down", 2048, 5632}};
constexpr Shape kHead = {"output", 32000, 2048};
constexpr int kLayers = 22;
constexpr std::int64_t kPrefill = 64;

struct Model {
    GgmlType type;
    std::vector<std::vector<std::byte>> data;
    std::vector<WeightView> layer;  // kLayers * 7, in order
    WeightView head;
    std::size_t bytes = 0;       // all matrices
    double macs_per_token = 0;   // layers + head
    double layer_macs = 0;       // the 22 layers only
};

std::uint64_t splitmix(std::uint64_t& s) {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Random bytes are valid quants; only the F16 scales (and F16 weights) need a sane range.
void fill_random(GgmlType type, std::vector<std::byte>& buf, std::uint64_t seed, ThreadPool& pool) {
    const std::size_t bs = type_traits(type).type_size;
    const auto blocks = static_cast<std::int64_t>(buf.size() / bs);
    pool.parallel_for(blocks, [&](std::int64_t b0, std::int64_t b1) {
        std::uint64_t s = seed ^ static_cast<std::uint64_t>(b0) * 0x632be59bd9b4e019ull;
        for (std::int64_t b = b0; b < b1; ++b) {
            std::byte* p = buf.data() + static_cast<std::size_t>(b) * bs;
            for (std::size_t i = 0; i < bs; i += 8) {
                const std::uint64_t r = splitmix(s);
                std::memcpy(p + i, &r, std::min<std::size_t>(8, bs - i));
            }
            if (type == GgmlType::F16) {
                std::uint16_t h;
                std::memcpy(&h, p, 2);
                h = static_cast<std::uint16_t>((h & 0x83ff) | 0x2c00);  // |w| in [2^-4, 2^-3)
                std::memcpy(p, &h, 2);
            } else {
                const std::uint16_t d = fp32_to_fp16(1e-3f + static_cast<float>(s & 1023) * 1e-6f);
                std::memcpy(p, &d, 2);  // Q8_0 and Q4_0 keep d first
            }
        }
    });
}

Model make_model(GgmlType type, ThreadPool& pool) {
    Model m;
    m.type = type;
    auto add = [&](const Shape& s, std::uint64_t seed) {
        m.data.emplace_back(row_bytes(type, static_cast<std::uint64_t>(s.cols)) * static_cast<std::size_t>(s.rows));
        fill_random(type, m.data.back(), seed, pool);
        m.bytes += m.data.back().size();
        return weight_view(type, s.rows, s.cols, m.data.back().data());
    };
    m.data.reserve(kLayers * 7 + 1);
    for (int l = 0; l < kLayers; ++l)
        for (int i = 0; i < 7; ++i) {
            m.layer.push_back(add(kLayer[i], static_cast<std::uint64_t>(l * 7 + i + 1)));
            m.layer_macs += static_cast<double>(kLayer[i].rows * kLayer[i].cols);
        }
    m.head = add(kHead, 999);
    m.macs_per_token = m.layer_macs + static_cast<double>(kHead.rows * kHead.cols);
    return m;
}

/// The baseline: per row, dequantize with the format reference, then a plain loop.
void naive_matmul(const WeightView& w, const float* x, std::int64_t n, float* y, ThreadPool& pool) {
    pool.parallel_for(w.rows, [&](std::int64_t r0, std::int64_t r1) {
        std::vector<float> row(static_cast<std::size_t>(w.cols));
        for (std::int64_t r = r0; r < r1; ++r) {
            dequantize_row(w.type, w.row(r), row.data(), w.cols);
            for (std::int64_t t = 0; t < n; ++t) {
                float s = 0.0f;
                const float* xt = x + t * w.cols;
                for (std::int64_t c = 0; c < w.cols; ++c) s += row[static_cast<std::size_t>(c)] * xt[c];
                y[t * w.rows + r] = s;
            }
        }
    });
}

using MatmulFn = void (*)(const WeightView&, const float*, std::int64_t, float*, ThreadPool&);

/// One decode token: every layer matrix and the head with n = 1. Seconds.
double decode_pass(const Model& m, MatmulFn f, ThreadPool& pool, std::vector<float>& x, std::vector<float>& y) {
    Clock::threads = pool.size();
    const double t0 = Clock::now();
    for (const auto& w : m.layer) f(w, x.data(), 1, y.data(), pool);
    f(m.head, x.data(), 1, y.data(), pool);
    return seconds_since(t0);
}

/// A prefill of kPrefill tokens through `layers` layers (+ the head for one token). Seconds.
double prefill_pass(const Model& m, int layers, MatmulFn f, ThreadPool& pool, std::vector<float>& x,
                    std::vector<float>& y) {
    Clock::threads = pool.size();
    const double t0 = Clock::now();
    for (int i = 0; i < layers * 7; ++i) f(m.layer[static_cast<std::size_t>(i)], x.data(), kPrefill, y.data(), pool);
    if (layers == kLayers) f(m.head, x.data(), 1, y.data(), pool);
    return seconds_since(t0);
}

std::vector<double> repeat(int runs, const std::function<double()>& fn) {
    fn();  // warm-up: page faults, thread start, buffers
    std::vector<double> t;
    for (int i = 0; i < runs; ++i) t.push_back(fn());
    return t;
}

struct Record {
    std::string kind, type;
    unsigned threads;
    double ours_s, naive_s, tok_s, naive_tok_s, gbs, bw_fraction, bound_tok_s;
};

}  // namespace

int main(int argc, char** argv) {
    std::string json_path, types_arg = "Q8_0,Q4_0,F16";
    int runs = 5;
    bool naive = true;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--json" && i + 1 < argc)
            json_path = argv[++i];
        else if (a == "--runs" && i + 1 < argc)
            runs = std::max(1, std::atoi(argv[++i]));
        else if (a == "--types" && i + 1 < argc)
            types_arg = argv[++i];
        else if (a == "--no-naive")
            naive = false;
        else if (a == "--cpu-clock")
            Clock::cpu_clock = true;
        else {
            std::fprintf(stderr, "usage: %s [--json out.json] [--runs N] [--types Q8_0,Q4_0,F16] [--no-naive] [--cpu-clock]\n", argv[0]);
            return 2;
        }
    }
    std::vector<GgmlType> types;
    for (std::size_t p = 0; p < types_arg.size();) {
        const std::size_t q = std::min(types_arg.find(',', p), types_arg.size());
        const auto t = parse_type_name(types_arg.substr(p, q - p));
        if (!t || !matmul_supports(*t)) {
            std::fprintf(stderr, "unknown or unsupported type '%s'\n", types_arg.substr(p, q - p).c_str());
            return 2;
        }
        types.push_back(*t);
        p = q + 1;
    }

    std::printf("tandem kernels benchmark: %s path, %u hardware threads, medians of %d runs, %s\n\n", kernels_isa(),
                std::thread::hardware_concurrency(), runs,
                Clock::cpu_clock ? "CPU-time clock (process CPU time / threads)" : "wall clock");
    ThreadPool pool1(1), pool2(2);
    ThreadPool* pools[2] = {&pool1, &pool2};

    // (a) memory bandwidth: one stream per thread (STREAM sum) and four (the
    // pattern of the decode kernels); the better of the two bounds decode.
    double bw[3] = {0, 0, 0};
    std::printf("memory read bandwidth (sum over 256 MiB; 1 stream per thread | 4 streams + prefetch):\n");
    for (unsigned t = 1; t <= 2; ++t) {
        const auto b1 = bench::measure_read_bandwidth(*pools[t - 1], std::size_t{256} << 20, std::max(runs, 5), false);
        const auto b4 = bench::measure_read_bandwidth(*pools[t - 1], std::size_t{256} << 20, std::max(runs, 5), true);
        bw[t] = std::max(b1.median_gbs, b4.median_gbs);
        std::printf("  %u thread%s  %6.1f GB/s (min %.1f, max %.1f) | %6.1f GB/s (min %.1f, max %.1f)\n", t,
                    t > 1 ? "s" : " ", b1.median_gbs, b1.min_gbs, b1.max_gbs, b4.median_gbs, b4.min_gbs, b4.max_gbs);
    }

    std::vector<Record> records;
    std::vector<float> x(static_cast<std::size_t>(kPrefill * 5632)), y(static_cast<std::size_t>(kPrefill * 32000));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7919) % 2001) * 1e-3f - 1.0f;

    for (const auto type : types) {
        const Model m = make_model(type, pool2);
        std::printf("\n== %s: %.2f GB of weights, %.2f GMAC per token ==\n", std::string(type_name(type)).c_str(),
                    static_cast<double>(m.bytes) / 1e9, m.macs_per_token / 1e9);
        std::printf("decode (1 token, all 155 matmuls + head)\n");
        std::printf("  thr |  ours ms   GB/s  %%bw   tok/s  (bound) |  naive ms  tok/s | speedup\n");
        for (unsigned t = 1; t <= 2; ++t) {
            ThreadPool& pool = *pools[t - 1];
            const double ours = median(repeat(runs, [&] { return decode_pass(m, matmul, pool, x, y); }));
            const double base = naive ? median(repeat(std::min(runs, 3), [&] {
                return decode_pass(m, naive_matmul, pool, x, y);
            }))
                                      : 0.0;
            Record r{"decode", std::string(type_name(type)), t, ours, base, 1 / ours, base > 0 ? 1 / base : 0,
                     static_cast<double>(m.bytes) / ours / 1e9, 0, bw[t] * 1e9 / static_cast<double>(m.bytes)};
            r.bw_fraction = r.gbs / bw[t];
            records.push_back(r);
            std::printf("  %3u | %8.1f %6.1f %4.0f%% %6.1f (%5.1f) | %9.1f %6.2f | %6.1fx\n", t, ours * 1e3, r.gbs,
                        100 * r.bw_fraction, r.tok_s, r.bound_tok_s, base * 1e3, r.naive_tok_s,
                        base > 0 ? base / ours : 0.0);
        }
        std::printf("prefill (%lld tokens; naive measured on 1 layer, scaled x%d)\n", static_cast<long long>(kPrefill),
                    kLayers);
        std::printf("  thr |  ours ms  tok/s  GMAC/s |  naive ms  tok/s | speedup\n");
        for (unsigned t = 1; t <= 2; ++t) {
            ThreadPool& pool = *pools[t - 1];
            const double ours =
                median(repeat(std::max(2, runs / 2), [&] { return prefill_pass(m, kLayers, matmul, pool, x, y); }));
            // Per layer, ours vs naive on the same layer (the naive full prefill would take minutes).
            const double ours1 = median(repeat(runs, [&] { return prefill_pass(m, 1, matmul, pool, x, y); }));
            const double base1 =
                naive ? median(repeat(1, [&] { return prefill_pass(m, 1, naive_matmul, pool, x, y); })) : 0.0;
            const double base = base1 * kLayers;
            Record r{"prefill", std::string(type_name(type)), t, ours, base, kPrefill / ours,
                     base > 0 ? kPrefill / base : 0, 0, 0, 0};
            records.push_back(r);
            std::printf("  %3u | %8.1f %6.1f %7.1f | %9.0f %6.2f | %6.1fx  (per layer %.2f ms vs %.1f ms)\n", t,
                        ours * 1e3, r.tok_s, (m.layer_macs * kPrefill + m.macs_per_token - m.layer_macs) / ours / 1e9,
                        base * 1e3, r.naive_tok_s, base1 > 0 ? base1 / ours1 : 0.0, ours1 * 1e3, base1 * 1e3);
        }
    }

    if (!json_path.empty()) {
        std::ofstream f(json_path);
        f << "{\n  \"isa\": \"" << kernels_isa() << "\",\n  \"clock\": \"" << (Clock::cpu_clock ? "cpu" : "wall")
          << "\",\n  \"bandwidth_gbs\": {\"1\": " << bw[1] << ", \"2\": " << bw[2]
          << "},\n  \"results\": [\n";
        for (std::size_t i = 0; i < records.size(); ++i) {
            const auto& r = records[i];
            f << "    {\"kind\": \"" << r.kind << "\", \"type\": \"" << r.type << "\", \"threads\": " << r.threads
              << ", \"ours_s\": " << r.ours_s << ", \"naive_s\": " << r.naive_s << ", \"tok_s\": " << r.tok_s
              << ", \"naive_tok_s\": " << r.naive_tok_s << ", \"gbs\": " << r.gbs
              << ", \"bandwidth_fraction\": " << r.bw_fraction << ", \"bound_tok_s\": " << r.bound_tok_s << "}"
              << (i + 1 < records.size() ? "," : "") << "\n";
        }
        f << "  ]\n}\n";
        std::printf("\nwrote %s\n", json_path.c_str());
    }
    return 0;
}
