// The plan as `tandem plan` and `tandem run --plan auto` print it: one row per
// stage (device, blocks, what they are, memory used / available, predicted
// compute and send time per token, the bottleneck), the devices left out,
// the predicted time per token, the gain over the usual splits, and why.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <tandem/placement/baselines.hpp>
#include <tandem/placement/solver.hpp>

namespace tandem::cli {

// "embedding + layers 0-2 + attention of 3"
inline std::string describe_blocks(std::int64_t begin, std::int64_t end, std::int64_t n_blocks) {
    std::vector<std::string> parts;
    std::int64_t b = begin;
    if (b == 0) {
        parts.push_back("embedding");
        b = 1;
    }
    const std::int64_t last = std::min(end, n_blocks - 1);  // middle blocks are [1, n_blocks - 1)
    if (b < last && b % 2 == 0) {  // starts with an FFN half
        parts.push_back("ffn of " + std::to_string((b - 1) / 2));
        ++b;
    }
    const std::int64_t full_end = b + (last - b) / 2 * 2;  // whole layers [b, full_end)
    if (full_end > b) {
        const auto l0 = (b - 1) / 2, l1 = (full_end - 1) / 2 - 1;
        parts.push_back(l0 == l1 ? "layer " + std::to_string(l0)
                                 : "layers " + std::to_string(l0) + "-" + std::to_string(l1));
    }
    if (full_end < last) parts.push_back("attention of " + std::to_string((full_end - 1) / 2));
    if (end == n_blocks) parts.push_back("head");
    std::string out;
    for (const auto& p : parts) out += (out.empty() ? "" : " + ") + p;
    return out;
}

struct PlanTableInfo {
    std::string model_name;    // file name
    std::string architecture;
    std::int64_t n_layers = 0;
    Objective objective = Objective::Latency;
    std::int64_t in_flight = 1;
    bool layers = false;       // cuts only between layers
};

inline void print_plan_table(std::FILE* out, const PlanTableInfo& info, const CostModel& m, const PlacementResult& r) {
    const auto& e = r.evaluation;
    const auto& cluster = m.cluster();
    const auto& shape = m.shape();
    const auto objective = info.objective;
    std::fprintf(out, "model: %s (%s, %lld layers = %lld blocks, %s of weights), KV cache for %lld positions x %lld sequences\n",
                 info.model_name.c_str(), info.architecture.c_str(), static_cast<long long>(info.n_layers),
                 static_cast<long long>(shape.n_blocks()), format_bytes(shape.total_weight_bytes()).c_str(),
                 static_cast<long long>(m.options().context), static_cast<long long>(m.options().sequences));
    const std::string flight = objective == Objective::Throughput
                                   ? " with " + std::to_string(info.in_flight) + " requests in flight"
                                   : std::string(" of one request");
    std::fprintf(out, "objective: %s%s; cuts %s\n\n", objective_name(objective), flight.c_str(),
                 info.layers ? "between layers" : "anywhere (sub-layer)");

    std::fprintf(out, "%-5s %-14s %-9s %-44s %-23s %11s %11s\n", "stage", "device", "blocks", "runs",
                 "memory used / avail", "compute ms", "send ms");
    for (std::size_t i = 0; i < e.stages.size(); ++i) {
        const auto& s = e.stages[i];
        const auto d = static_cast<std::size_t>(s.device);
        const bool bottleneck = e.bottleneck == Bottleneck::Stage && e.bottleneck_index == static_cast<int>(i);
        const std::string mem = format_bytes(e.memory_used[d]) + " / " + format_bytes(e.memory_available[d]);
        std::fprintf(out, "%-5zu %-14s %-9s %-44s %-23s %11.3f %11.3f%s\n", i, cluster.device(s.device).name.c_str(),
                     (std::to_string(s.begin) + ":" + std::to_string(s.end)).c_str(),
                     describe_blocks(s.begin, s.end, shape.n_blocks()).c_str(), mem.c_str(), s.compute_s * 1e3,
                     s.send_s * 1e3, bottleneck ? "  <- bottleneck" : "");
    }
    for (int d = 0; d < cluster.size(); ++d)
        if (!r.placement.uses(d))
            std::fprintf(out, "%-5s %-14s %-9s %-44s %-23s\n", "-", cluster.device(d).name.c_str(), "-", "(left out)",
                         ("0 / " + format_bytes(cluster.device(d).memory_bytes)).c_str());
    std::fprintf(out, "\npredicted: %.3f ms per token for one request (%.1f tokens/s)", e.latency_s * 1e3, 1 / e.latency_s);
    if (info.in_flight > 1)
        std::fprintf(out, "; %.3f ms per token with %lld in flight (%.1f tokens/s)", e.throughput_s * 1e3,
                     static_cast<long long>(info.in_flight), 1 / e.throughput_s);
    std::fprintf(out, "\n");

    std::string split;
    for (const auto& s : r.placement.stages)
        split += (split.empty() ? "b" : ",b") + std::to_string(s.begin) + ":" + std::to_string(s.end);
    std::fprintf(out, "as a split: --split %s\n\n", split.c_str());

    std::fprintf(out, "gain over the usual splits (predicted %s, ms per token; gain = theirs / ours):\n",
                 objective_name(objective));
    for (const auto& b : baselines(m, objective)) {
        if (!b.evaluation) {
            std::fprintf(out, "  %-22s no single device holds the model\n", b.name.c_str());
            continue;
        }
        const double v = b.evaluation->value(objective);
        std::fprintf(out, "  %-22s %10.3f ms   %6.2fx%s   %s\n", b.name.c_str(), v * 1e3, v / r.value(),
                     b.evaluation->fits ? "" : "  (exceeds memory)", b.placement->describe(cluster).c_str());
    }
    std::fprintf(out, "\nwhy:\n");
    for (const auto& line : r.explanation) std::fprintf(out, "  - %s\n", line.c_str());
}

}  // namespace tandem::cli
