// The interface every model architecture implements, block by block.
//
// An architecture binds the GGUF tensors of the blocks it is asked to run and
// computes them; it keeps no per-request state (KV caches and scratch come in
// as arguments), so one loaded architecture serves any number of sequences.
// Adding an architecture means one new file implementing this interface plus
// one line in model/registry.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tandem/core/thread_pool.hpp"
#include "tandem/model/batch.hpp"
#include "tandem/model/config.hpp"

namespace tandem {

class Architecture {
public:
    virtual ~Architecture() = default;

    virtual const ModelConfig& config() const noexcept = 0;

    /// GGUF tensor names block `b` reads (what a worker must receive to run it).
    virtual std::vector<std::string> block_tensors(std::int64_t b) const = 0;

    /// Extra tensors (beyond the hidden state) block `b` makes for later,
    /// non-adjacent blocks, and those it needs from earlier ones. None in llama;
    /// BLOOM-style models make an attention bias once and use it in every layer.
    virtual std::vector<std::string> block_produces(std::int64_t /*b*/) const { return {}; }
    virtual std::vector<std::string> block_consumes(std::int64_t /*b*/) const { return {}; }

    /// tokens (n) -> h (n, dim)
    virtual void embed(std::span<const std::int32_t> tokens, Activations& h) const = 0;

    /// h (n, dim) += attention(norm(h)) for `layer`; appends the batch's keys and
    /// values to each token's sequence cache in `kv`.
    virtual void attention(std::int64_t layer, Activations& h, const Batch& batch, KvStore& kv, Workspace& ws,
                           ThreadPool& pool) const = 0;

    /// h (n, dim) += ffn(norm(h)) for `layer`.
    virtual void ffn(std::int64_t layer, Activations& h, Workspace& ws, ThreadPool& pool) const = 0;

    /// logits (rows.size(), n_vocab) = output(norm(h[rows])).
    virtual void head(const Activations& h, std::span<const std::int64_t> rows, Activations& logits, Workspace& ws,
                      ThreadPool& pool) const = 0;
};

/// Runs blocks [range.begin, range.end) on `batch` in place: reads batch.tokens
/// when the range starts at the embedding, otherwise batch.hidden; leaves the
/// hidden state in batch.hidden, and logits in batch.logits when the range
/// ends with the head.
/// `block_seconds`, when given, indexed by block id (at least range.end
/// entries): each block's wall time is added to its entry.
inline void run_blocks(const Architecture& arch, BlockRange range, Batch& batch, KvStore& kv, Workspace& ws,
                       ThreadPool& pool, double* block_seconds = nullptr) {
    const auto& c = arch.config();
    if (range.begin < 0 || range.end > c.n_blocks() || range.begin > range.end)
        throw ConfigError("block range " + to_string(range) + " outside the model's " + std::to_string(c.n_blocks()) +
                          " blocks");
    const auto n = batch.size();
    if (static_cast<std::int64_t>(batch.seq_ids.size()) != n)
        throw ConfigError("batch has " + std::to_string(n) + " positions but " +
                          std::to_string(batch.seq_ids.size()) + " sequence ids");
    for (std::int64_t b = range.begin; b < range.end; ++b) {
        const auto t0 = block_seconds ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        struct Timed {  // adds the block's time however it ends
            double* out;
            std::chrono::steady_clock::time_point t0;
            ~Timed() {
                if (out) *out += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            }
        } timed{block_seconds ? block_seconds + b : nullptr, t0};
        const auto ref = block_ref(c, b);
        switch (ref.kind) {
            case BlockKind::Embedding:
                if (static_cast<std::int64_t>(batch.tokens.size()) != n)
                    throw ConfigError("embedding needs one token per position");
                arch.embed(batch.tokens, batch.hidden);
                break;
            case BlockKind::Attention:
                if (batch.hidden.rows() != n || batch.hidden.cols() != c.dim)
                    throw ConfigError("hidden state is (" + std::to_string(batch.hidden.rows()) + ", " +
                                      std::to_string(batch.hidden.cols()) + "), expected (" + std::to_string(n) +
                                      ", " + std::to_string(c.dim) + ")");
                arch.attention(ref.layer, batch.hidden, batch, kv, ws, pool);
                break;
            case BlockKind::Ffn: arch.ffn(ref.layer, batch.hidden, ws, pool); break;
            case BlockKind::Head: {
                const auto rows = batch.logit_rows();
                arch.head(batch.hidden, rows, batch.logits, ws, pool);
                break;
            }
        }
    }
}

}  // namespace tandem
