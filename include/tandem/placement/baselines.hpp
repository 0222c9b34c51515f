// The placements other systems use, in the solver's terms, so that the
// solver's gain over each can be predicted (and measured) in the same units.
//
//  even split             every device, in the listed order, the same number
//                         of layers (distributed-llama, most prototypes and
//                         the paper's baseline);
//  memory-proportional    layers in proportion to each device's memory, in
//                         the listed order (llama.cpp RPC's tensor split, exo's
//                         ring partitioning);
//  single best device     the whole model on the one device that runs it
//                         fastest among those that can hold it.
//
// Splits are at layer granularity: the embedding goes with the first device
// that gets layers and the head with the last. Even and memory-proportional
// splits ignore speeds and links, and the even split ignores memory, as the
// systems that use them do; check Evaluation::fits before running one.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "tandem/placement/cost_model.hpp"

namespace tandem {

/// Device devices[i] gets layers_per_device[i] consecutive layers (0: left
/// out), in order; the embedding joins the first used device, the head the last.
inline Placement layer_split(const ModelShape& shape, const std::vector<int>& devices,
                             const std::vector<std::int64_t>& layers_per_device) {
    if (devices.size() != layers_per_device.size() || devices.empty())
        throw ConfigError("layer split: one layer count per device");
    const auto cuts = shape.layer_cuts();
    const std::int64_t n_layers = static_cast<std::int64_t>(cuts.size()) + 1;
    std::int64_t total = 0;
    for (const auto n : layers_per_device) {
        if (n < 0) throw ConfigError("layer split: negative layer count");
        total += n;
    }
    Placement p;
    if (shape.n_layers() == 0) {  // nothing to split
        p.stages.push_back({devices.front(), 0, shape.n_blocks()});
        return p;
    }
    if (total != n_layers)
        throw ConfigError("layer split gives " + std::to_string(total) + " of " + std::to_string(n_layers) + " layers");
    auto begin_of = [&](std::int64_t layer) { return layer == 0 ? std::int64_t{0} : cuts[static_cast<std::size_t>(layer - 1)]; };
    auto end_of = [&](std::int64_t layer_end) {
        return layer_end == n_layers ? shape.n_blocks() : cuts[static_cast<std::size_t>(layer_end - 1)];
    };
    std::int64_t layer = 0;
    for (std::size_t i = 0; i < devices.size(); ++i) {
        const auto n = layers_per_device[i];
        if (n == 0) continue;
        p.stages.push_back({devices[i], begin_of(layer), end_of(layer + n)});
        layer += n;
    }
    return p;
}

namespace detail {
/// Splits `n` items in proportion to `weights` (largest remainder; ties to the earlier).
inline std::vector<std::int64_t> proportional_counts(std::int64_t n, const std::vector<double>& weights) {
    const double sum = std::accumulate(weights.begin(), weights.end(), 0.0);
    std::vector<std::int64_t> counts(weights.size(), 0);
    if (!(sum > 0)) throw ConfigError("proportional split: weights sum to zero");
    std::vector<std::pair<double, std::size_t>> rest;
    std::int64_t given = 0;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        const double exact = static_cast<double>(n) * weights[i] / sum;
        counts[i] = static_cast<std::int64_t>(exact);
        given += counts[i];
        rest.push_back({exact - static_cast<double>(counts[i]), i});
    }
    std::stable_sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (std::size_t k = 0; given < n; ++k, ++given) ++counts[rest[k % rest.size()].second];
    return counts;
}

inline std::vector<int> all_devices(const CostModel& m) {
    std::vector<int> d(static_cast<std::size_t>(m.n_devices()));
    std::iota(d.begin(), d.end(), 0);
    return d;
}
}  // namespace detail

/// Every device in the listed order with (nearly) equal numbers of layers;
/// the first devices get one more when the layers do not divide evenly.
inline Placement even_split(const CostModel& m) {
    const auto devices = detail::all_devices(m);
    const std::int64_t n_layers = m.shape().n_layers(), n = m.n_devices();
    std::vector<std::int64_t> counts;
    for (std::int64_t i = 0; i < n; ++i) counts.push_back(n_layers / n + (i < n_layers % n ? 1 : 0));
    return layer_split(m.shape(), devices, counts);
}

/// Layers in proportion to each device's memory, in the listed order.
inline Placement memory_proportional_split(const CostModel& m) {
    const auto devices = detail::all_devices(m);
    std::vector<double> mem;
    for (const int d : devices) mem.push_back(static_cast<double>(m.memory_available(d)));
    return layer_split(m.shape(), devices, detail::proportional_counts(m.shape().n_layers(), mem));
}

/// The whole model on the device that runs it fastest (by `objective`) among
/// those that can hold it; nullopt if none can.
inline std::optional<Placement> single_best_device(const CostModel& m, Objective objective) {
    std::optional<Placement> best;
    double best_value = 0;
    for (int d = 0; d < m.n_devices(); ++d) {
        Placement p{{{d, 0, m.n_blocks()}}};
        const auto e = m.evaluate(p);
        if (!e.fits) continue;
        if (!best || e.value(objective) < best_value) {
            best = p;
            best_value = e.value(objective);
        }
    }
    return best;
}

struct Baseline {
    std::string name;                    // "even split", "memory-proportional", "single best device"
    std::optional<Placement> placement;  // nullopt: not possible (no single device holds the model)
    std::optional<Evaluation> evaluation;
};

/// The three baselines, evaluated.
inline std::vector<Baseline> baselines(const CostModel& m, Objective objective) {
    std::vector<Baseline> out;
    out.push_back({"even split", even_split(m), std::nullopt});
    out.push_back({"memory-proportional", memory_proportional_split(m), std::nullopt});
    out.push_back({"single best device", single_best_device(m, objective), std::nullopt});
    for (auto& b : out)
        if (b.placement) b.evaluation = m.evaluate(*b.placement);
    return out;
}

}  // namespace tandem
