// What placement needs to know about a model: its blocks (kind, weight bytes,
// KV cache bytes per position) and the sizes that cross a cut.
//
// Placement knows only core/, so it has its own copy of the four block kinds
// (the same as model/config.hpp's BlockKind, in the same order) and its own
// description of a model. runtime/placement_plan.hpp fills a ModelShape from
// a loaded Model; ModelShape::llama() builds one from published shapes (a
// 70B model can be planned for without its 40 GB file).
//
// Block numbering, as in model/config.hpp (sub-layer granularity):
//   0 embedding | 1 + 2i attention half of layer i | 2 + 2i FFN half | 2L + 1 head
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/core/error.hpp"

namespace tandem {

enum class CostKind : std::uint8_t { Embedding, Attention, Ffn, Head };
inline constexpr std::size_t kCostKinds = 4;

inline const char* cost_kind_name(CostKind k) noexcept {
    switch (k) {
        case CostKind::Embedding: return "embedding";
        case CostKind::Attention: return "attention";
        case CostKind::Ffn: return "ffn";
        case CostKind::Head: return "head";
    }
    return "?";
}

inline std::optional<CostKind> cost_kind_from_name(std::string_view s) noexcept {
    for (std::size_t i = 0; i < kCostKinds; ++i)
        if (s == cost_kind_name(static_cast<CostKind>(i))) return static_cast<CostKind>(i);
    return std::nullopt;
}

struct BlockShape {
    CostKind kind = CostKind::Attention;
    std::uint64_t weight_bytes = 0;           // bytes of weights the block reads
    std::uint64_t kv_bytes_per_position = 0;  // KV cache per sequence per position (attention only)
};

struct ModelShape {
    std::string id;                 // identity of the model (profiles are per model)
    std::int64_t dim = 0;           // hidden size: what crosses a cut, per token
    std::int64_t n_vocab = 0;       // logits per token coming back to the coordinator
    std::int64_t context_length = 0;
    std::vector<BlockShape> blocks; // in order; see the numbering above

    std::int64_t n_blocks() const noexcept { return static_cast<std::int64_t>(blocks.size()); }

    // Bytes per token crossing each kind of hop (float32 activations):
    /// coordinator -> first stage: one token id.
    static constexpr std::uint64_t input_bytes_per_token() noexcept { return 4; }
    /// stage -> stage: the hidden row (dim floats) and the token's position.
    std::uint64_t hidden_bytes_per_token() const noexcept { return static_cast<std::uint64_t>(dim) * 4 + 4; }
    /// last stage -> coordinator: one row of logits.
    std::uint64_t output_bytes_per_token() const noexcept { return static_cast<std::uint64_t>(n_vocab) * 4; }

    std::uint64_t total_weight_bytes() const noexcept {
        std::uint64_t t = 0;
        for (const auto& b : blocks) t += b.weight_bytes;
        return t;
    }

    /// Block indices in (0, n_blocks) where a layer-granularity cut may fall:
    /// before each attention block but the first (the embedding stays with
    /// layer 0, the head with the last layer).
    std::vector<std::int64_t> layer_cuts() const {
        std::vector<std::int64_t> cuts;
        bool first = true;
        for (std::int64_t b = 1; b < n_blocks(); ++b) {
            if (blocks[static_cast<std::size_t>(b)].kind != CostKind::Attention) continue;
            if (!first) cuts.push_back(b);
            first = false;
        }
        return cuts;
    }

    std::int64_t n_layers() const noexcept {
        std::int64_t n = 0;
        for (const auto& b : blocks) n += b.kind == CostKind::Attention;
        return n;
    }

    /// Throws ConfigError unless the shape is usable for planning.
    void validate() const {
        if (blocks.empty()) throw ConfigError("model shape '" + id + "' has no blocks");
        if (dim <= 0 || n_vocab <= 0) throw ConfigError("model shape '" + id + "' has no dim or vocabulary size");
    }

    /// A llama-family model from its published hyper-parameters, with weights
    /// stored at `bytes_per_weight` (F32 4, F16 2, Q8_0 34/32, Q4_0 18/32,
    /// Q4_K 144/256) and norms in F32. KV cache in F32, as the engine keeps it.
    /// The head always counts an (n_vocab, dim) matrix: its own or, when tied,
    /// the embedding's, which is what Model::block_weight_bytes reports too.
    static ModelShape llama(std::string id, std::int64_t n_layers, std::int64_t dim, std::int64_t n_heads,
                            std::int64_t n_kv_heads, std::int64_t ffn_dim, std::int64_t n_vocab,
                            std::int64_t context_length, double bytes_per_weight) {
        if (n_layers <= 0 || dim <= 0 || n_heads <= 0 || n_kv_heads <= 0 || ffn_dim <= 0 || n_vocab <= 0 ||
            dim % n_heads != 0 || bytes_per_weight <= 0)
            throw ConfigError("llama shape '" + id + "': invalid hyper-parameters");
        const auto q = [&](double params) { return static_cast<std::uint64_t>(params * bytes_per_weight); };
        const double d = static_cast<double>(dim);
        const double kv_dim = static_cast<double>(dim / n_heads * n_kv_heads);
        ModelShape s;
        s.id = std::move(id);
        s.dim = dim;
        s.n_vocab = n_vocab;
        s.context_length = context_length;
        s.blocks.push_back({CostKind::Embedding, q(d * static_cast<double>(n_vocab)), 0});
        for (std::int64_t l = 0; l < n_layers; ++l) {
            // attention: norm (F32) + wq, wo (dim x dim) + wk, wv (kv_dim x dim)
            s.blocks.push_back({CostKind::Attention, static_cast<std::uint64_t>(dim) * 4 + q(2 * d * d + 2 * kv_dim * d),
                                static_cast<std::uint64_t>(kv_dim) * 2 * 4});
            // FFN: norm (F32) + gate, up, down (ffn_dim x dim)
            s.blocks.push_back(
                {CostKind::Ffn, static_cast<std::uint64_t>(dim) * 4 + q(3 * d * static_cast<double>(ffn_dim)), 0});
        }
        // head: final norm (F32) + output (n_vocab x dim). A tied head reads the
        // embedding table instead, which its device must hold all the same (so
        // a stage holding both counts that table twice: conservative).
        s.blocks.push_back({CostKind::Head, static_cast<std::uint64_t>(dim) * 4 + q(d * static_cast<double>(n_vocab)), 0});
        return s;
    }
};

}  // namespace tandem
