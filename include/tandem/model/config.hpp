// Hyper-parameters of a transformer read from GGUF metadata, and the model's
// division into blocks that segments are cut from.
//
// Blocks, at sub-layer granularity (what placement and segments count in):
//   block 0            embedding (token ids -> hidden state)
//   block 1 + 2*i      layer i, attention half:  h += attn(norm(h))
//   block 2 + 2*i      layer i, FFN half:        h += ffn(norm(h))
//   block 2*L + 1      head: final norm + output projection -> logits
// A cut between two blocks passes the hidden state (the residual stream) and
// the token positions; nothing else crosses a boundary in pre-norm models.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/gguf/reader.hpp"
#include "tandem/kernels/rope.hpp"  // RopeLayout

namespace tandem {

struct ModelConfig {
    std::string architecture;      // general.architecture, e.g. "llama"
    std::string name;              // general.name (informational)
    std::int64_t n_vocab = 0;
    std::int64_t dim = 0;          // embedding length
    std::int64_t n_layers = 0;
    std::int64_t n_heads = 0;
    std::int64_t n_kv_heads = 0;
    std::int64_t head_dim = 0;     // dim / n_heads unless the file says otherwise
    std::int64_t ffn_dim = 0;
    std::int64_t context_length = 0;
    float norm_eps = 1e-5f;
    // RoPE
    std::int64_t rope_dims = 0;    // rotated dimensions per head (<= head_dim)
    float rope_freq_base = 10000.0f;
    float rope_freq_scale = 1.0f;  // 1 / linear scaling factor
    RopeLayout rope_layout = RopeLayout::Normal;
    bool tied_output = false;      // output head reuses token_embd.weight

    std::int64_t kv_dim() const noexcept { return n_kv_heads * head_dim; }
    std::int64_t q_dim() const noexcept { return n_heads * head_dim; }
    std::int64_t n_blocks() const noexcept { return 2 * n_layers + 2; }
};

/// Kinds of block; see the numbering at the top of this file.
enum class BlockKind : std::uint8_t { Embedding, Attention, Ffn, Head };

struct BlockRef {
    BlockKind kind;
    std::int64_t layer;  // -1 for embedding and head
};

inline BlockRef block_ref(const ModelConfig& c, std::int64_t block) {
    if (block < 0 || block >= c.n_blocks())
        throw ConfigError("block " + std::to_string(block) + " outside [0, " + std::to_string(c.n_blocks()) + ")");
    if (block == 0) return {BlockKind::Embedding, -1};
    if (block == c.n_blocks() - 1) return {BlockKind::Head, -1};
    return {((block - 1) % 2 == 0) ? BlockKind::Attention : BlockKind::Ffn, (block - 1) / 2};
}

inline const char* block_kind_name(BlockKind k) noexcept {
    switch (k) {
        case BlockKind::Embedding: return "embedding";
        case BlockKind::Attention: return "attention";
        case BlockKind::Ffn: return "ffn";
        case BlockKind::Head: return "head";
    }
    return "?";
}

/// A contiguous range [begin, end) of blocks.
struct BlockRange {
    std::int64_t begin = 0;
    std::int64_t end = 0;

    std::int64_t size() const noexcept { return end - begin; }
    bool empty() const noexcept { return end <= begin; }
    bool contains(std::int64_t b) const noexcept { return b >= begin && b < end; }
    bool operator==(const BlockRange&) const = default;

    /// The whole model.
    static BlockRange all(const ModelConfig& c) { return {0, c.n_blocks()}; }
    /// Layer-granularity range in "coarse" numbering: 0 = embedding, 1..L = layers,
    /// L+1 = head; [first, last) of those maps to sub-layer blocks.
    static BlockRange layers(const ModelConfig& c, std::int64_t first, std::int64_t last) {
        auto fine = [&](std::int64_t coarse) {
            if (coarse <= 0) return std::int64_t{0};
            if (coarse > c.n_layers) return c.n_blocks();
            return 2 * coarse - 1;
        };
        if (first < 0 || last > c.n_layers + 2 || first > last)
            throw ConfigError("layer range [" + std::to_string(first) + ", " + std::to_string(last) + ") invalid");
        return {fine(first), fine(last)};
    }
    /// Layers [first, end) whose attention half (block 1+2i) lies in the range:
    /// the layers whose KV cache a segment over this range keeps.
    std::int64_t first_kv_layer() const noexcept { return begin / 2; }
    std::int64_t end_kv_layer(const ModelConfig& c) const noexcept {
        const std::int64_t e = end / 2 < c.n_layers ? end / 2 : c.n_layers;
        return e > first_kv_layer() ? e : first_kv_layer();
    }
};

inline std::string to_string(const BlockRange& r) {
    return std::to_string(r.begin) + ":" + std::to_string(r.end);
}

/// Reads the hyper-parameters of `file` under its architecture's key prefix
/// ("llama.", ...). Missing required keys raise KeyError naming the key.
inline ModelConfig read_config(const GgufFile& file) {
    ModelConfig c;
    c.architecture = file.get<std::string>("general.architecture");
    c.name = file.get_or<std::string>("general.name", "");
    const std::string p = c.architecture + ".";
    c.dim = file.get<std::int64_t>(p + "embedding_length");
    c.n_layers = file.get<std::int64_t>(p + "block_count");
    c.n_heads = file.get<std::int64_t>(p + "attention.head_count");
    c.n_kv_heads = file.get_or<std::int64_t>(p + "attention.head_count_kv", c.n_heads);
    c.ffn_dim = file.get<std::int64_t>(p + "feed_forward_length");
    c.context_length = file.get<std::int64_t>(p + "context_length");
    if (c.n_heads <= 0 || c.n_kv_heads <= 0 || c.dim <= 0 || c.n_layers <= 0 || c.ffn_dim <= 0 ||
        c.context_length <= 0)
        throw ConfigError(file.name() + ": non-positive model dimension in metadata");
    if (c.n_heads % c.n_kv_heads != 0)
        throw ConfigError(file.name() + ": head_count " + std::to_string(c.n_heads) +
                          " is not a multiple of head_count_kv " + std::to_string(c.n_kv_heads));
    c.head_dim = file.get_or<std::int64_t>(p + "attention.key_length", c.dim / c.n_heads);
    c.rope_dims = file.get_or<std::int64_t>(p + "rope.dimension_count", c.head_dim);
    if (c.rope_dims > c.head_dim || c.rope_dims % 2 != 0)
        throw ConfigError(file.name() + ": rope.dimension_count " + std::to_string(c.rope_dims) + " is invalid");
    c.rope_freq_base = file.get_or<float>(p + "rope.freq_base", 10000.0f);
    const auto scaling = file.get_or<std::string>(p + "rope.scaling.type", "none");
    if (scaling == "linear") {
        const float factor = file.get_or<float>(p + "rope.scaling.factor", 1.0f);
        if (factor > 0.0f) c.rope_freq_scale = 1.0f / factor;
    } else if (scaling != "none" && !scaling.empty()) {
        throw UnsupportedError(file.name() + ": rope scaling '" + scaling + "' is not supported (none, linear)");
    }
    c.norm_eps = file.get_or<float>(p + "attention.layer_norm_rms_epsilon", 1e-5f);
    // The vocabulary size: metadata, else the embedding's rows, else the tokenizer.
    if (file.contains(p + "vocab_size")) {
        c.n_vocab = file.get<std::int64_t>(p + "vocab_size");
    } else if (const auto* t = file.find_tensor("token_embd.weight")) {
        c.n_vocab = static_cast<std::int64_t>(t->rows());
    } else if (const auto* tok = file.find("tokenizer.ggml.tokens"); tok && tok->is_array()) {
        c.n_vocab = static_cast<std::int64_t>(tok->array().items.size());
    } else {
        throw KeyError(file.name() + ": cannot tell the vocabulary size");
    }
    // A weight shard (a worker's subset of tensors) records whether the head is tied.
    c.tied_output = file.contains("tandem.tied_output") ? file.get<bool>("tandem.tied_output")
                                                        : file.find_tensor("output.weight") == nullptr;
    return c;
}

}  // namespace tandem
