// Per-sequence key/value cache for a contiguous range of layers.
//
// A segment keeps one KvCache per sequence it serves, covering only its own
// layers. Storage grows on demand (doubling) up to the model's context length,
// so a short request does not pay for the full context. Layers can be exported
// and imported, which is how a block's cache moves with the block when the
// load balancer migrates it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "tandem/core/error.hpp"

namespace tandem {

using SeqId = std::uint64_t;

/// Buffers the kernels read are aligned to Eigen's maximum alignment: Eigen's
/// vectorized reductions start with scalar steps up to the first aligned
/// element, so the summation order (and the last bits of a result) would
/// otherwise depend on where the allocator happened to put a buffer.
using AlignedFloats = std::vector<float, Eigen::aligned_allocator<float>>;

/// The cache of one layer of one sequence: K and V, each (n_positions, kv_dim).
struct LayerKv {
    std::int64_t n_positions = 0;
    AlignedFloats k;  // (n_positions, kv_dim)
    AlignedFloats v;  // (n_positions, kv_dim)
};

class KvCache {
public:
    KvCache() = default;
    KvCache(std::int64_t first_layer, std::int64_t end_layer, std::int64_t kv_dim, std::int64_t max_positions)
        : first_layer_(first_layer), kv_dim_(kv_dim), max_positions_(max_positions),
          layers_(static_cast<std::size_t>(std::max<std::int64_t>(0, end_layer - first_layer))) {}

    std::int64_t first_layer() const noexcept { return first_layer_; }
    std::int64_t end_layer() const noexcept { return first_layer_ + static_cast<std::int64_t>(layers_.size()); }
    bool has_layer(std::int64_t l) const noexcept { return l >= first_layer() && l < end_layer(); }
    std::int64_t kv_dim() const noexcept { return kv_dim_; }
    std::int64_t max_positions() const noexcept { return max_positions_; }
    /// Positions [0, length) hold keys and values in every layer written so far.
    std::int64_t length() const noexcept { return length_; }

    /// Makes room for positions [0, n) in every layer. Throws ConfigError past the context.
    void reserve(std::int64_t n) {
        if (n > max_positions_)
            throw ConfigError("sequence of " + std::to_string(n) + " positions exceeds the context length " +
                              std::to_string(max_positions_));
        if (n <= capacity_) return;
        std::int64_t cap = std::max<std::int64_t>(capacity_ * 2, 64);
        cap = std::min(std::max(cap, n), max_positions_);
        for (auto& s : layers_) {
            s.k.resize(static_cast<std::size_t>(cap * kv_dim_));
            s.v.resize(static_cast<std::size_t>(cap * kv_dim_));
        }
        capacity_ = cap;
    }

    /// Key row of `layer` at `pos`: (kv_dim). reserve() must cover pos.
    float* k(std::int64_t layer, std::int64_t pos) noexcept { return slot(layer).k.data() + pos * kv_dim_; }
    float* v(std::int64_t layer, std::int64_t pos) noexcept { return slot(layer).v.data() + pos * kv_dim_; }
    const float* k(std::int64_t layer, std::int64_t pos) const noexcept {
        return slot(layer).k.data() + pos * kv_dim_;
    }
    const float* v(std::int64_t layer, std::int64_t pos) const noexcept {
        return slot(layer).v.data() + pos * kv_dim_;
    }

    /// Records that positions up to `pos` are now filled.
    void mark_filled(std::int64_t pos) noexcept { length_ = std::max(length_, pos + 1); }
    /// Forgets positions >= n (for example to re-run a prefill).
    void truncate(std::int64_t n) noexcept { length_ = std::min(length_, n); }

    std::uint64_t bytes() const noexcept {
        return static_cast<std::uint64_t>(capacity_) * static_cast<std::uint64_t>(kv_dim_) * 2 * sizeof(float) *
               layers_.size();
    }

    /// Copies out the filled positions of one layer (for migration).
    LayerKv export_layer(std::int64_t layer) const {
        LayerKv out;
        out.n_positions = length_;
        const auto& s = slot(layer);
        const auto n = static_cast<std::size_t>(length_ * kv_dim_);
        out.k.assign(s.k.begin(), s.k.begin() + static_cast<std::ptrdiff_t>(n));
        out.v.assign(s.v.begin(), s.v.begin() + static_cast<std::ptrdiff_t>(n));
        return out;
    }

    /// Extends this cache to cover [first, end) (keeping what it holds) so that
    /// layers can be imported into it.
    void extend_layers(std::int64_t first, std::int64_t end) {
        if (layers_.empty()) {
            first_layer_ = first;
        }
        const std::int64_t new_first = std::min(first, first_layer_);
        const std::int64_t new_end = std::max(end, end_layer());
        std::vector<Slot> grown(static_cast<std::size_t>(new_end - new_first));
        for (std::int64_t l = first_layer_; l < end_layer(); ++l)
            grown[static_cast<std::size_t>(l - new_first)] = std::move(layers_[static_cast<std::size_t>(l - first_layer_)]);
        for (auto& s : grown) {
            s.k.resize(static_cast<std::size_t>(capacity_ * kv_dim_));
            s.v.resize(static_cast<std::size_t>(capacity_ * kv_dim_));
        }
        layers_ = std::move(grown);
        first_layer_ = new_first;
    }

    /// Drops layers outside [first, end) (after they moved to another device).
    void shrink_layers(std::int64_t first, std::int64_t end) {
        first = std::max(first, first_layer_);
        end = std::min(end, end_layer());
        if (end <= first) {
            layers_.clear();
            first_layer_ = first;
            return;
        }
        std::vector<Slot> kept;
        for (std::int64_t l = first; l < end; ++l)
            kept.push_back(std::move(layers_[static_cast<std::size_t>(l - first_layer_)]));
        layers_ = std::move(kept);
        first_layer_ = first;
    }

    /// Copies a layer's cache in (the layer must be within this cache's range).
    void import_layer(std::int64_t layer, const LayerKv& in) {
        if (!has_layer(layer)) throw ConfigError("import of layer " + std::to_string(layer) + " outside the cache");
        if (static_cast<std::int64_t>(in.k.size()) != in.n_positions * kv_dim_ || in.v.size() != in.k.size())
            throw ConfigError("imported KV of layer " + std::to_string(layer) + " has the wrong size");
        reserve(in.n_positions);
        auto& s = slot(layer);
        std::copy(in.k.begin(), in.k.end(), s.k.begin());
        std::copy(in.v.begin(), in.v.end(), s.v.begin());
        length_ = std::max(length_, in.n_positions);
    }

private:
    using Slot = LayerKv;  // k/v sized (capacity, kv_dim); n_positions unused here
    Slot& slot(std::int64_t layer) noexcept { return layers_[static_cast<std::size_t>(layer - first_layer_)]; }
    const Slot& slot(std::int64_t layer) const noexcept {
        return layers_[static_cast<std::size_t>(layer - first_layer_)];
    }

    std::int64_t first_layer_ = 0;
    std::int64_t kv_dim_ = 0;
    std::int64_t max_positions_ = 0;
    std::int64_t capacity_ = 0;
    std::int64_t length_ = 0;
    std::vector<Slot> layers_;
};

}  // namespace tandem
