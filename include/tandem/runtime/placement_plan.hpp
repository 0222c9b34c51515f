// The bridge between placement/ (which knows only core/) and the runtime:
// a loaded Model described as a placement ModelShape, and a solved Placement
// turned into the runtime's Plan (and back).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "tandem/model/model.hpp"
#include "tandem/placement/cost_model.hpp"
#include "tandem/runtime/plan.hpp"

namespace tandem {

/// A stable identity for a model's profiles: architecture, name, shape and
/// a 64-bit FNV-1a hash of the tensor table (names, types, shapes, offsets),
/// so a re-quantised file of the same model gets new profiles.
inline std::string model_identity(const Model& model) {
    const auto& c = model.config();
    std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a offset basis
    auto mix = [&](const void* p, std::size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;  // FNV-1a prime
    };
    for (const auto& t : model.file().tensors()) {
        mix(t.name.data(), t.name.size());
        const auto type = static_cast<std::uint32_t>(t.type);
        mix(&type, sizeof type);
        for (const auto d : t.shape) mix(&d, sizeof d);
        mix(&t.offset, sizeof t.offset);
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    return c.architecture + ":" + (c.name.empty() ? std::string("unnamed") : c.name) + ":L" +
           std::to_string(c.n_layers) + ":d" + std::to_string(c.dim) + ":v" + std::to_string(c.n_vocab) + ":" + hex;
}

/// What placement needs of `model`: per block its kind, weight bytes and KV
/// bytes per position, as the engine will hold them.
inline ModelShape model_shape(const Model& model) {
    const auto& c = model.config();
    ModelShape s;
    s.id = model_identity(model);
    s.dim = c.dim;
    s.n_vocab = c.n_vocab;
    s.context_length = c.context_length;
    for (std::int64_t b = 0; b < c.n_blocks(); ++b) {
        BlockShape bs;
        switch (block_ref(c, b).kind) {
            case BlockKind::Embedding: bs.kind = CostKind::Embedding; break;
            case BlockKind::Attention: bs.kind = CostKind::Attention; break;
            case BlockKind::Ffn: bs.kind = CostKind::Ffn; break;
            case BlockKind::Head: bs.kind = CostKind::Head; break;
        }
        bs.weight_bytes = model.block_weight_bytes(b);
        bs.kv_bytes_per_position = model.block_kv_bytes_per_position(b);
        s.blocks.push_back(bs);
    }
    return s;
}

/// The runtime plan of a placement: device index i becomes ids[i].
inline Plan to_plan(const Placement& p, const std::vector<DeviceId>& ids) {
    Plan plan;
    for (const auto& s : p.stages) {
        if (s.device < 0 || static_cast<std::size_t>(s.device) >= ids.size())
            throw ConfigError("placement names device " + std::to_string(s.device) + " but only " +
                              std::to_string(ids.size()) + " ids were given");
        plan.stages.push_back({ids[static_cast<std::size_t>(s.device)], BlockRange{s.begin, s.end}});
    }
    return plan;
}

/// The placement of a runtime plan, with device ids[i] as device index i
/// (to evaluate a plan chosen elsewhere, e.g. Plan::even, with the cost model).
inline Placement placement_of(const Plan& plan, const std::vector<DeviceId>& ids) {
    Placement p;
    for (const auto& s : plan.stages) {
        int index = -1;
        for (std::size_t i = 0; i < ids.size(); ++i)
            if (ids[i] == s.device) index = static_cast<int>(i);
        if (index < 0) throw ConfigError("plan names device " + std::to_string(s.device) + ", which has no index");
        p.stages.push_back({index, s.blocks.begin, s.blocks.end});
    }
    return p;
}

/// The cluster of the devices `ids` (device id d is device index d - 1 of
/// `cluster`), in that order, with their links, the coordinator's included;
/// an id beyond `cluster` names a device that joined later, with its
/// profile in `joined` and links that were never measured: they are taken
/// to be as slow as the slowest link of `cluster` (the longest latency, the
/// lowest bandwidth). What a failover's re-plan over the survivors solves on.
inline Cluster with_joined(const Cluster& cluster, const std::vector<DeviceId>& ids,
                           const std::map<DeviceId, DeviceProfile>& joined) {
    std::vector<DeviceProfile> devs;
    std::vector<int> index;  // into cluster, or -2 for a joined device
    for (const auto d : ids) {
        if (d >= 1 && static_cast<int>(d) <= cluster.size()) {
            index.push_back(static_cast<int>(d) - 1);
            devs.push_back(cluster.device(index.back()));
        } else if (const auto it = joined.find(d); it != joined.end()) {
            index.push_back(-2);
            devs.push_back(it->second);
        } else {
            throw ConfigError("device " + std::to_string(d) + " is not in the cluster (" +
                              std::to_string(cluster.size()) + " devices) and has no profile");
        }
    }
    // Profile names must stay unique: a joined device called like another gets its id.
    for (std::size_t i = 0; i < devs.size(); ++i)
        for (std::size_t j = 0; j < devs.size(); ++j)
            if (i != j && index[i] == -2 && devs[i].name == devs[j].name) devs[i].name += "#" + std::to_string(ids[i]);
    Link slowest{0, std::numeric_limits<double>::infinity()};
    for (int a = Cluster::kCoordinator; a < cluster.size(); ++a)
        for (int b = Cluster::kCoordinator; b < cluster.size(); ++b)
            if (a != b) {
                const auto l = cluster.link(a, b);
                slowest.latency_s = std::max(slowest.latency_s, l.latency_s);
                slowest.bytes_per_s = std::min(slowest.bytes_per_s, l.bytes_per_s);
            }
    Cluster sub(std::move(devs));
    index.insert(index.begin(), Cluster::kCoordinator);  // node 0 of the loops below
    const auto n = static_cast<int>(index.size());
    for (int a = 0; a < n; ++a)
        for (int b = 0; b < n; ++b) {
            if (a == b) continue;
            const int ia = index[static_cast<std::size_t>(a)], ib = index[static_cast<std::size_t>(b)];
            sub.set_link(a - 1, b - 1, ia == -2 || ib == -2 ? slowest : cluster.link(ia, ib));
        }
    return sub;
}

/// The cluster of the devices `ids` of `cluster`, in that order, with their
/// links (with_joined with no device joined).
inline Cluster sub_cluster(const Cluster& cluster, const std::vector<DeviceId>& ids) { return with_joined(cluster, ids, {}); }

}  // namespace tandem
