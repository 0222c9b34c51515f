// The cost model: how long a placement takes per token and how much memory
// it needs on each device.
//
// A placement is an ordered list of stages, each a device and a contiguous
// range of blocks; the ranges tile [0, n_blocks). One step of one request
// goes coordinator -> stage 0 -> ... -> stage n-1 -> coordinator:
//
//   compute of stage s  = sum over its blocks b of  t_d(kind(b))     (the profile's time)
//   hop into stage 0    = link(coord, d0).transfer(4 bytes per token)          token ids
//   hop s -> s+1        = link(d_s, d_s+1).transfer((dim*4 + 4) bytes per token) hidden + position
//   hop out of the last = link(d_last, coord).transfer(n_vocab*4 bytes)        one row of logits
//
// All figures are per token: a step of n tokens (prefill chunk) costs n times
// the per-token block time, its link latencies are paid once per step, and
// only its last token's logits return; dividing by n gives per token.
//
//   latency    = all computes + all hops                 (one request, nothing overlaps)
//   cycle      = max(largest stage compute, largest hop) (the pipeline's slowest resource)
//   throughput = max(cycle, latency / K)                 (time per token with K requests in
//                                                         flight: the slowest resource, unless
//                                                         K is too small to fill the pipeline)
// A link counts as busy for its latency too (conservative: a link that could
// overlap its latency with the next message would do better).
//
// Memory of block b = weight bytes + KV bytes per position x context x sequences.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/placement/model_shape.hpp"
#include "tandem/placement/profile.hpp"

namespace tandem {

enum class Objective : std::uint8_t {
    Latency,     // per-token time of one request
    Throughput,  // per-token time with K requests in flight
};

inline const char* objective_name(Objective o) noexcept { return o == Objective::Latency ? "latency" : "throughput"; }

struct CostOptions {
    std::int64_t context = 0;      // KV positions reserved per sequence; 0: the model's context length
    std::int64_t sequences = 1;    // sequences whose KV caches every device keeps
    std::int64_t in_flight = 1;    // K: requests in flight (the throughput objective)
    std::int64_t step_tokens = 1;  // 1: decode (decode times); > 1: a prefill chunk (prefill times)
};

struct PlacedStage {
    int device = 0;          // index into the cluster's devices
    std::int64_t begin = 0;  // blocks [begin, end)
    std::int64_t end = 0;
    bool operator==(const PlacedStage&) const = default;
};

struct Placement {
    std::vector<PlacedStage> stages;  // in pipeline order
    bool operator==(const Placement&) const = default;

    /// Throws ConfigError unless the stages tile [0, n_blocks) in order, each
    /// non-empty, each device at most once.
    void validate(std::int64_t n_blocks, int n_devices) const {
        if (stages.empty()) throw ConfigError("a placement needs at least one stage");
        std::int64_t next = 0;
        std::vector<char> seen(static_cast<std::size_t>(std::max(n_devices, 0)), 0);
        for (const auto& s : stages) {
            if (s.device < 0 || s.device >= n_devices)
                throw ConfigError("placement names device " + std::to_string(s.device) + " of " + std::to_string(n_devices));
            if (seen[static_cast<std::size_t>(s.device)]++)
                throw ConfigError("placement uses device " + std::to_string(s.device) + " twice");
            if (s.begin != next || s.end <= s.begin)
                throw ConfigError("placement stages do not tile the " + std::to_string(n_blocks) + " blocks in order");
            next = s.end;
        }
        if (next != n_blocks)
            throw ConfigError("placement covers " + std::to_string(next) + " of " + std::to_string(n_blocks) + " blocks");
    }

    bool uses(int device) const noexcept {
        for (const auto& s : stages)
            if (s.device == device) return true;
        return false;
    }

    std::string describe(const Cluster& c) const {
        std::string out;
        for (const auto& s : stages)
            out += (out.empty() ? "" : " -> ") + c.device(s.device).name + "[" + std::to_string(s.begin) + ":" +
                   std::to_string(s.end) + "]";
        return out;
    }
};

struct StageCost {
    int device = 0;
    std::int64_t begin = 0, end = 0;
    double compute_s = 0;  // per token
    double send_s = 0;     // per token: the hop out of this stage (to the next stage, or the coordinator)
};

enum class Bottleneck : std::uint8_t {
    Stage,    // a stage's compute
    Link,     // a hop
    Latency,  // too few requests in flight to fill the pipeline (latency / K)
};

struct Evaluation {
    std::vector<StageCost> stages;
    double receive_s = 0;     // hop coordinator -> first stage, per token
    double latency_s = 0;     // per token, one request
    double cycle_s = 0;       // per token, the slowest stage or hop
    double throughput_s = 0;  // per token with K in flight
    std::int64_t in_flight = 1;
    Bottleneck bottleneck = Bottleneck::Stage;
    // Stage: index of the stage. Link: -1 for the hop into stage 0, s for the
    // hop out of stage s. Latency: -1.
    int bottleneck_index = 0;
    std::vector<std::uint64_t> memory_used;       // per device of the cluster (0: unused)
    std::vector<std::uint64_t> memory_available;  // per device
    bool fits = true;                             // memory_used <= memory_available everywhere

    double value(Objective o) const noexcept { return o == Objective::Latency ? latency_s : throughput_s; }
};

class CostModel {
public:
    CostModel(ModelShape shape, Cluster cluster, CostOptions opt = {})
        : shape_(std::move(shape)), cluster_(std::move(cluster)), opt_(opt) {
        shape_.validate();
        if (cluster_.size() == 0) throw ConfigError("placement needs at least one device");
        if (opt_.context <= 0) opt_.context = shape_.context_length;
        if (opt_.context <= 0) throw ConfigError("cost model: no context length (give CostOptions::context)");
        if (opt_.sequences <= 0 || opt_.in_flight <= 0 || opt_.step_tokens <= 0)
            throw ConfigError("cost model: sequences, in-flight requests and step tokens must be positive");
    }

    const ModelShape& shape() const noexcept { return shape_; }
    const Cluster& cluster() const noexcept { return cluster_; }
    const CostOptions& options() const noexcept { return opt_; }
    int n_devices() const noexcept { return cluster_.size(); }
    std::int64_t n_blocks() const noexcept { return shape_.n_blocks(); }

    /// Seconds per token block b computes on device d.
    double block_s(std::int64_t b, int d) const {
        const auto& p = cluster_.device(d);
        const auto& t = opt_.step_tokens == 1 ? p.decode : p.prefill;
        return t[shape_.blocks[static_cast<std::size_t>(b)].kind];
    }
    /// Seconds per token for the hidden state to cross from device a to b (0 if a == b).
    double hop_s(int a, int b) const {
        if (a == b) return 0;
        return per_token(cluster_.link(a, b), shape_.hidden_bytes_per_token() * tokens());
    }
    /// Seconds per token for the token ids to reach device d from the coordinator.
    double input_s(int d) const {
        return per_token(cluster_.link(Cluster::kCoordinator, d), ModelShape::input_bytes_per_token() * tokens());
    }
    /// Seconds per token for the logits to return from device d (one row per step).
    double output_s(int d) const {
        return per_token(cluster_.link(d, Cluster::kCoordinator), shape_.output_bytes_per_token());
    }
    /// Bytes block b needs: weights + its KV cache for `context` positions x `sequences`.
    std::uint64_t block_memory(std::int64_t b) const {
        const auto& blk = shape_.blocks[static_cast<std::size_t>(b)];
        return blk.weight_bytes + blk.kv_bytes_per_position * static_cast<std::uint64_t>(opt_.context) *
                                      static_cast<std::uint64_t>(opt_.sequences);
    }
    std::uint64_t memory_available(int d) const { return cluster_.device(d).memory_bytes; }
    std::uint64_t total_memory_needed() const {
        std::uint64_t t = 0;
        for (std::int64_t b = 0; b < n_blocks(); ++b) t += block_memory(b);
        return t;
    }
    std::uint64_t total_kv_bytes() const { return total_memory_needed() - shape_.total_weight_bytes(); }

    Evaluation evaluate(const Placement& p) const {
        p.validate(n_blocks(), n_devices());
        Evaluation e;
        e.in_flight = opt_.in_flight;
        e.memory_used.assign(static_cast<std::size_t>(n_devices()), 0);
        for (int d = 0; d < n_devices(); ++d) e.memory_available.push_back(memory_available(d));
        e.receive_s = input_s(p.stages.front().device);
        e.latency_s = e.receive_s;
        e.cycle_s = e.receive_s;
        e.bottleneck = Bottleneck::Link;
        e.bottleneck_index = -1;
        for (std::size_t i = 0; i < p.stages.size(); ++i) {
            const auto& s = p.stages[i];
            StageCost c{s.device, s.begin, s.end, 0, 0};
            for (auto b = s.begin; b < s.end; ++b) {
                c.compute_s += block_s(b, s.device);
                e.memory_used[static_cast<std::size_t>(s.device)] += block_memory(b);
            }
            c.send_s = i + 1 < p.stages.size() ? hop_s(s.device, p.stages[i + 1].device) : output_s(s.device);
            e.latency_s += c.compute_s + c.send_s;
            // Ties go to the earlier resource, computes before hops.
            if (c.compute_s > e.cycle_s || (c.compute_s == e.cycle_s && e.bottleneck == Bottleneck::Link)) {
                e.cycle_s = c.compute_s;
                e.bottleneck = Bottleneck::Stage;
                e.bottleneck_index = static_cast<int>(i);
            }
            if (c.send_s > e.cycle_s) {
                e.cycle_s = c.send_s;
                e.bottleneck = Bottleneck::Link;
                e.bottleneck_index = static_cast<int>(i);
            }
            e.stages.push_back(c);
        }
        const double filled = e.latency_s / static_cast<double>(opt_.in_flight);
        e.throughput_s = std::max(e.cycle_s, filled);
        if (filled > e.cycle_s) {
            e.bottleneck = Bottleneck::Latency;
            e.bottleneck_index = -1;
        }
        for (int d = 0; d < n_devices(); ++d)
            e.fits = e.fits && e.memory_used[static_cast<std::size_t>(d)] <= e.memory_available[static_cast<std::size_t>(d)];
        return e;
    }

private:
    std::uint64_t tokens() const noexcept { return static_cast<std::uint64_t>(opt_.step_tokens); }
    double per_token(const Link& l, std::uint64_t bytes_per_step) const {
        return l.transfer_s(bytes_per_step) / static_cast<double>(opt_.step_tokens);
    }

    ModelShape shape_;
    Cluster cluster_;
    CostOptions opt_;
};

// ---- units for messages ------------------------------------------------------

/// "3.91 GiB", "512 MiB", "12.0 KiB", "100 B".
inline std::string format_bytes(std::uint64_t bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : (v < 10 ? "%.2f %s" : (v < 100 ? "%.1f %s" : "%.0f %s")), v,
                  units[u]);
    return buf;
}

/// Seconds as milliseconds, about three significant digits: "1056 ms",
/// "12.3 ms", "0.0421 ms".
inline std::string format_ms(double seconds) {
    char buf[32];
    const double ms = seconds * 1e3;
    const double a = std::abs(ms);
    if (a >= 100) std::snprintf(buf, sizeof buf, "%.0f ms", ms);
    else if (a >= 10) std::snprintf(buf, sizeof buf, "%.1f ms", ms);
    else if (a >= 1) std::snprintf(buf, sizeof buf, "%.2f ms", ms);
    else std::snprintf(buf, sizeof buf, "%.3g ms", ms);
    return buf;
}

}  // namespace tandem
