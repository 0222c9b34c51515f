// What flows through a slice of the model: a batch of tokens, their hidden
// states, positions and sequences, and the scratch space a forward pass uses.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "tandem/model/kv_cache.hpp"

namespace tandem {

/// Row-major float matrix: activations are (n_tokens, width).
using Activations = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A batch of n tokens, possibly from several sequences. Tokens of one
/// sequence appear in position order; a token attends to every earlier
/// position of its own sequence (the cache plus earlier tokens of the batch).
struct Batch {
    std::vector<std::int32_t> tokens;    // (n) input ids; used when the slice starts at the embedding
    Activations hidden;                  // (n, dim) the residual stream between blocks
    std::vector<std::int32_t> positions; // (n)
    std::vector<SeqId> seq_ids;          // (n)
    std::vector<std::uint8_t> want_logits; // (n) 1 where the head must produce logits; empty = last token of each sequence
    Activations logits;                  // (n_out, n_vocab), rows in batch order of the wanted tokens
    // Tensors a block makes for a non-adjacent later block (e.g. an attention
    // bias), by name; the pipeline routes each straight to its consumers.
    std::map<std::string, Activations> extras;

    std::int64_t size() const noexcept { return static_cast<std::int64_t>(positions.size()); }

    /// Indices of the tokens whose logits the head produces.
    std::vector<std::int64_t> logit_rows() const {
        std::vector<std::int64_t> rows;
        const auto n = size();
        if (!want_logits.empty()) {
            for (std::int64_t i = 0; i < n; ++i)
                if (want_logits[static_cast<std::size_t>(i)]) rows.push_back(i);
            return rows;
        }
        for (std::int64_t i = 0; i < n; ++i) {
            const bool last_of_seq = i + 1 == n || seq_ids[static_cast<std::size_t>(i + 1)] != seq_ids[static_cast<std::size_t>(i)];
            if (last_of_seq) rows.push_back(i);
        }
        return rows;
    }

    /// One sequence's tokens at consecutive positions starting at `start`.
    static Batch for_sequence(SeqId seq, std::span<const std::int32_t> toks, std::int32_t start) {
        Batch b;
        b.tokens.assign(toks.begin(), toks.end());
        for (std::size_t i = 0; i < toks.size(); ++i) {
            b.positions.push_back(start + static_cast<std::int32_t>(i));
            b.seq_ids.push_back(seq);
        }
        return b;
    }
};

/// The KV caches a slice keeps, one per sequence it serves.
class KvStore {
public:
    KvStore() = default;
    KvStore(std::int64_t first_layer, std::int64_t end_layer, std::int64_t kv_dim, std::int64_t max_positions)
        : first_(first_layer), end_(end_layer), kv_dim_(kv_dim), max_positions_(max_positions) {}

    KvCache& at(SeqId seq) {
        auto it = caches_.find(seq);
        if (it == caches_.end()) it = caches_.emplace(seq, KvCache(first_, end_, kv_dim_, max_positions_)).first;
        return it->second;
    }
    bool contains(SeqId seq) const { return caches_.count(seq) != 0; }
    void erase(SeqId seq) { caches_.erase(seq); }
    void clear() { caches_.clear(); }
    std::size_t n_sequences() const noexcept { return caches_.size(); }
    std::map<SeqId, KvCache>& caches() noexcept { return caches_; }
    const std::map<SeqId, KvCache>& caches() const noexcept { return caches_; }

    std::int64_t first_layer() const noexcept { return first_; }
    std::int64_t end_layer() const noexcept { return end_; }
    std::uint64_t bytes() const noexcept {
        std::uint64_t b = 0;
        for (const auto& [id, c] : caches_) b += c.bytes();
        return b;
    }

    /// Re-ranges the store to layers [first, end): layers leaving are dropped,
    /// layers arriving start empty (fill them with import_layer).
    void set_layers(std::int64_t first, std::int64_t end) {
        for (auto& [id, c] : caches_) {
            c.shrink_layers(first, end);
            c.extend_layers(first, end);
        }
        first_ = first;
        end_ = end;
    }

private:
    std::int64_t first_ = 0, end_ = 0, kv_dim_ = 0, max_positions_ = 0;
    std::map<SeqId, KvCache> caches_;
};

/// Scratch buffers for one forward pass; reused across calls to avoid
/// allocation on the hot path. One per device (not shared between threads).
/// Aligned, so that results never depend on buffer addresses (see AlignedFloats).
struct Workspace {
    AlignedFloats xb;     // (n, dim) normalised input
    AlignedFloats q;      // (n, q_dim)
    AlignedFloats k;      // (n, kv_dim)
    AlignedFloats v;      // (n, kv_dim)
    AlignedFloats att;    // (n, q_dim) attention output
    AlignedFloats proj;   // (n, dim)
    AlignedFloats gate;   // (n, ffn_dim)
    AlignedFloats up;     // (n, ffn_dim)

    static float* sized(AlignedFloats& v, std::int64_t n) {
        if (static_cast<std::int64_t>(v.size()) < n) v.resize(static_cast<std::size_t>(n));
        return v.data();
    }
};

}  // namespace tandem
