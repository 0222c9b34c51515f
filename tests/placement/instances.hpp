// Random placement instances and an exhaustive reference solver for them.
//
// brute_force() knows nothing of the MILP: it enumerates every ordered subset
// of devices and every way to cut the blocks into that many non-empty
// contiguous ranges, and scores each with CostModel::evaluate.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <tandem/placement/cost_model.hpp>

namespace tandem::test {

struct BruteResult {
    std::optional<Placement> best;            // by the objective, among plans that fit
    double best_value = std::numeric_limits<double>::infinity();
    // Throughput: the least latency among plans whose throughput equals the best.
    double best_latency_at_best = std::numeric_limits<double>::infinity();
    std::uint64_t least_overflow = std::numeric_limits<std::uint64_t>::max();  // over all plans
    std::size_t plans = 0;
};

// Calls f(placement) for every placement; `cuts_allowed` (size n_blocks + 1)
// marks where a stage may end (empty: anywhere).
template <typename F>
void for_each_placement(std::int64_t n_blocks, int n_devices, const std::vector<char>& cuts_allowed, F&& f) {
    std::vector<int> order;
    std::vector<char> used(static_cast<std::size_t>(n_devices), 0);
    Placement p;
    // Recursively: pick the next device, then where its range ends.
    auto rec = [&](auto&& self, std::int64_t begin) -> void {
        if (begin == n_blocks) {
            f(p);
            return;
        }
        for (int d = 0; d < n_devices; ++d) {
            if (used[static_cast<std::size_t>(d)]) continue;
            used[static_cast<std::size_t>(d)] = 1;
            for (std::int64_t end = begin + 1; end <= n_blocks; ++end) {
                if (!cuts_allowed.empty() && !cuts_allowed[static_cast<std::size_t>(end)]) continue;
                p.stages.push_back({d, begin, end});
                self(self, end);
                p.stages.pop_back();
            }
            used[static_cast<std::size_t>(d)] = 0;
        }
    };
    rec(rec, 0);
}

inline BruteResult brute_force(const CostModel& m, Objective o, bool layer_cuts = false) {
    std::vector<char> cuts;
    if (layer_cuts) {
        cuts.assign(static_cast<std::size_t>(m.n_blocks() + 1), 0);
        cuts.back() = 1;
        for (const auto c : m.shape().layer_cuts()) cuts[static_cast<std::size_t>(c)] = 1;
    }
    BruteResult r;
    std::vector<Evaluation> fitting;
    for_each_placement(m.n_blocks(), m.n_devices(), cuts, [&](const Placement& p) {
        ++r.plans;
        const auto e = m.evaluate(p);
        std::uint64_t overflow = 0;
        for (std::size_t d = 0; d < e.memory_used.size(); ++d)
            overflow += e.memory_used[d] > e.memory_available[d] ? e.memory_used[d] - e.memory_available[d] : 0;
        r.least_overflow = std::min(r.least_overflow, overflow);
        if (!e.fits) return;
        fitting.push_back(e);
        if (e.value(o) < r.best_value) {
            r.best_value = e.value(o);
            r.best = p;
        }
    });
    for (const auto& e : fitting)
        if (e.value(o) <= r.best_value * (1 + 1e-12)) r.best_latency_at_best = std::min(r.best_latency_at_best, e.latency_s);
    return r;
}

struct InstanceOptions {
    int min_devices = 2, max_devices = 4;
    int min_layers = 1, max_layers = 4;   // blocks = 2 L + 2: 4 to 10
    bool regular = true;                  // every attention (FFN) block the same size
    double memory_slack = 1.0;            // scales device memories (lower: tighter)
};

inline double log_uniform(std::mt19937_64& rng, double lo, double hi) {
    return std::exp(std::uniform_real_distribution<double>(std::log(lo), std::log(hi))(rng));
}

/// A random llama-shaped model and cluster: speeds over two orders of
/// magnitude, memories from "holds two blocks" to "holds everything", and
/// every directed link (coordinator's included) different.
inline CostModel random_instance(std::uint64_t seed, const InstanceOptions& io = {}) {
    std::mt19937_64 rng(seed);
    auto uni = [&](double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); };
    auto pick = [&](int a, int b) { return std::uniform_int_distribution<int>(a, b)(rng); };
    const int L = pick(io.min_layers, io.max_layers);
    ModelShape s;
    s.id = "random-" + std::to_string(seed);
    s.dim = pick(64, 4096);
    s.n_vocab = pick(256, 64000);
    s.context_length = 256;
    const auto att = static_cast<std::uint64_t>(log_uniform(rng, 1e5, 1e7));
    const auto ffn = static_cast<std::uint64_t>(log_uniform(rng, 1e5, 2e7));
    const auto kv = static_cast<std::uint64_t>(pick(0, 64)) * 8;
    s.blocks.push_back({CostKind::Embedding, static_cast<std::uint64_t>(log_uniform(rng, 1e5, 1e7)), 0});
    for (int l = 0; l < L; ++l) {
        const auto jitter = [&](std::uint64_t x) {
            return io.regular ? x : static_cast<std::uint64_t>(static_cast<double>(x) * uni(0.5, 1.5));
        };
        s.blocks.push_back({CostKind::Attention, jitter(att), io.regular ? kv : kv * static_cast<std::uint64_t>(pick(0, 2))});
        s.blocks.push_back({CostKind::Ffn, jitter(ffn), 0});
    }
    s.blocks.push_back({CostKind::Head, static_cast<std::uint64_t>(log_uniform(rng, 1e5, 1e7)), 0});

    const int D = pick(io.min_devices, io.max_devices);
    std::uint64_t total = 0;
    for (const auto& b : s.blocks) total += b.weight_bytes + b.kv_bytes_per_position * 256 * 2;
    std::vector<DeviceProfile> devs;
    for (int d = 0; d < D; ++d) {
        DeviceProfile p;
        p.name = "dev" + std::to_string(d);
        const double slow = log_uniform(rng, 1, 100);  // device speed spread
        for (std::size_t k = 0; k < kCostKinds; ++k) {
            p.decode.s[k] = slow * log_uniform(rng, 1e-4, 2e-3);
            p.prefill.s[k] = p.decode.s[k] * uni(0.05, 1.0);
        }
        p.memory_bytes = static_cast<std::uint64_t>(static_cast<double>(total) * uni(0.15, 1.1) * io.memory_slack);
        devs.push_back(p);
    }
    Cluster c(devs);
    for (int a = Cluster::kCoordinator; a < D; ++a)
        for (int b = Cluster::kCoordinator; b < D; ++b)
            if (a != b) c.set_link(a, b, Link::from_ms_mbps(log_uniform(rng, 0.05, 20), log_uniform(rng, 5, 2000)));
    CostOptions opt;
    opt.context = 256;
    opt.sequences = pick(1, 2);
    opt.in_flight = pick(1, 4);
    opt.step_tokens = pick(0, 3) == 0 ? 16 : 1;
    return CostModel(std::move(s), std::move(c), opt);
}

}  // namespace tandem::test
