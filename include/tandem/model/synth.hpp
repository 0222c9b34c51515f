// Synthetic llama models: real shapes, a real tokenizer, deterministic random
// weights. For benchmarks at realistic sizes, where speed depends on the
// shapes and the tensor types but not on the weight values.
//
//   auto shape = find_synth_shape("tinyllama-1.1b");
//   auto vocab = GgufFile::open("models/vocab/ggml-vocab-llama-spm.gguf");
//   write_synth_model("tinyllama-q8_0.gguf", shape, vocab, {.type = GgmlType::Q8_0});
//
// The file is what the engine reads (model/config.hpp, model/llama.hpp):
//   token_embd.weight [dim, vocab]; per layer attn_norm [dim], attn_q [dim, q_dim],
//   attn_k/attn_v [dim, kv_dim], attn_output [q_dim, dim], ffn_norm [dim],
//   ffn_gate/ffn_up [dim, ffn], ffn_down [ffn, dim]; output_norm [dim];
//   output.weight [dim, vocab] unless the shape ties it to token_embd.
// 2-D weights take the requested type; norm weights stay F32 as in real files;
// a weight whose row length is not a whole number of the type's blocks (e.g.
// stories260K's ffn_down, rows of 172) stays F32.
//
// Values: norms are 1; weight w of a tensor with rows of n elements is drawn
// with sigma = 1/sqrt(n) (unit-variance inputs give unit-variance outputs, so
// the residual stream grows only like sqrt(layers) and logits stay finite).
// Each value is an Irwin-Hall(4) variate: the sum of four 16-bit uniforms,
// centred and scaled to mean 0 and variance sigma^2 exactly, bounded by
// +-3.46 sigma: close to a normal, and integer arithmetic plus one float
// multiply, so the bytes are the same on every machine and compiler. Each row
// has its own stream seeded from (seed, tensor name, row), so rows are
// generated in parallel and the file is byte-identical for the same arguments
// whatever the thread count.
//
// Tokenizer: every tokenizer.* key of the given vocabulary file is copied.
// When the model's vocabulary is larger (Llama 3 shapes built on the GPT-2
// vocabulary, which is the byte-level BPE at hand), tokens are padded with
// "[PAD<id>]" entries of type UNUSED (score -1000), as llama.cpp's converter
// pads, so every matrix has exactly the real shape; general.name says so.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/core/hash.hpp"
#include "tandem/core/thread_pool.hpp"
#include "tandem/gguf/quant.hpp"
#include "tandem/gguf/reader.hpp"
#include "tandem/gguf/types.hpp"
#include "tandem/gguf/value.hpp"
#include "tandem/gguf/writer.hpp"
#include "tandem/model/quantize_model.hpp"

namespace tandem {

/// The tokenizers tandem ships (under models/), one per named shape.
enum class SynthVocab : std::uint8_t {
    Stories260K,  // stories260K.gguf: SentencePiece, 512 tokens
    LlamaSpm,     // vocab/ggml-vocab-llama-spm.gguf: Llama 2 SentencePiece, 32000 tokens
    Gpt2,         // vocab/ggml-vocab-gpt-2.gguf: GPT-2 byte-level BPE, 50257 tokens
};

/// Path of a shipped tokenizer relative to the models directory.
inline const char* synth_vocab_file(SynthVocab v) noexcept {
    switch (v) {
        case SynthVocab::Stories260K: return "stories260K.gguf";
        case SynthVocab::LlamaSpm: return "vocab/ggml-vocab-llama-spm.gguf";
        case SynthVocab::Gpt2: return "vocab/ggml-vocab-gpt-2.gguf";
    }
    return "";
}

/// Hyper-parameters of a llama-family model.
struct SynthShape {
    std::string name;                // "tinyllama-1.1b", or "custom"
    std::string source;              // the published model whose shape this is
    std::int64_t dim = 0;            // embedding length
    std::int64_t ffn_dim = 0;        // feed-forward length
    std::int64_t n_layers = 0;
    std::int64_t n_heads = 0;
    std::int64_t n_kv_heads = 0;
    std::int64_t n_vocab = 0;
    std::int64_t context_length = 0;
    float rope_freq_base = 10000.0f;
    float norm_eps = 1e-5f;
    bool tied_output = false;        // output head reuses token_embd.weight
    SynthVocab vocab = SynthVocab::LlamaSpm;
    std::uint64_t published_parameters = 0;  // total from the model's release (0 = none)

    std::int64_t head_dim() const noexcept { return n_heads > 0 ? dim / n_heads : 0; }
    std::int64_t kv_dim() const noexcept { return n_kv_heads * head_dim(); }
};

/// The named shapes, with the hyper-parameters of their Hugging Face
/// config.json and the parameter totals their safetensors report.
/// Llama 3.x shapes use rope base 500000 without Llama 3's long-context rope
/// scaling (no rope_freqs tensor: tandem does not apply it).
inline const std::vector<SynthShape>& synth_shapes() {
    static const std::vector<SynthShape> shapes = [] {
        std::vector<SynthShape> s;
        // karpathy/tinyllamas stories260K (llama2.c): max_seq_len 512.
        s.push_back({"stories260K", "karpathy/tinyllamas stories260K", 64, 172, 5, 8, 4, 512, 512, 10000.0f, 1e-5f,
                     false, SynthVocab::Stories260K, 0});
        s.push_back({"tinyllama-1.1b", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", 2048, 5632, 22, 32, 4, 32000, 2048,
                     10000.0f, 1e-5f, false, SynthVocab::LlamaSpm, 1100048384ull});
        s.push_back({"llama-3.2-1b", "meta-llama/Llama-3.2-1B", 2048, 8192, 16, 32, 8, 128256, 131072, 500000.0f,
                     1e-5f, true, SynthVocab::Gpt2, 1235814400ull});
        s.push_back({"llama-3.2-3b", "meta-llama/Llama-3.2-3B", 3072, 8192, 28, 24, 8, 128256, 131072, 500000.0f,
                     1e-5f, true, SynthVocab::Gpt2, 3212749824ull});
        s.push_back({"llama-3-8b", "meta-llama/Meta-Llama-3-8B", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0f,
                     1e-5f, false, SynthVocab::Gpt2, 8030261248ull});
        return s;
    }();
    return shapes;
}

/// The named shape `name` (case-insensitive); ConfigError listing the names otherwise.
inline const SynthShape& find_synth_shape(std::string_view name) {
    auto lower = [](std::string_view s) {
        std::string out(s);
        for (auto& c : out) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        return out;
    };
    std::string names;
    for (const auto& s : synth_shapes()) {
        if (lower(s.name) == lower(name)) return s;
        names += (names.empty() ? "" : ", ") + s.name;
    }
    throw ConfigError("unknown shape '" + std::string(name) + "' (known: " + names + ")");
}

/// Throws ConfigError unless the shape is one the engine can run.
inline void validate_synth_shape(const SynthShape& s) {
    auto positive = [&](std::int64_t v, const char* what) {
        if (v <= 0) throw ConfigError("shape '" + s.name + "': " + what + " must be positive, not " + std::to_string(v));
    };
    positive(s.dim, "dim");
    positive(s.ffn_dim, "ffn");
    positive(s.n_layers, "layers");
    positive(s.n_heads, "heads");
    positive(s.n_kv_heads, "kv-heads");
    positive(s.n_vocab, "vocab");
    positive(s.context_length, "ctx");
    if (s.dim % s.n_heads != 0)
        throw ConfigError("shape '" + s.name + "': dim " + std::to_string(s.dim) + " is not a multiple of heads " +
                          std::to_string(s.n_heads));
    if (s.head_dim() % 2 != 0)
        throw ConfigError("shape '" + s.name + "': head dimension " + std::to_string(s.head_dim()) +
                          " is odd (RoPE rotates pairs)");
    if (s.n_heads % s.n_kv_heads != 0)
        throw ConfigError("shape '" + s.name + "': heads " + std::to_string(s.n_heads) +
                          " is not a multiple of kv-heads " + std::to_string(s.n_kv_heads));
    if (s.n_layers > 100000 || s.n_vocab > INT32_MAX || s.dim > (1 << 20) || s.ffn_dim > (1 << 22))
        throw ConfigError("shape '" + s.name + "': dimensions beyond any real model");
}

/// One tensor of a synthetic model, in file order.
struct SynthTensor {
    std::string name;
    std::vector<std::uint64_t> shape;  // ggml order: shape[0] is the row length
    bool norm = false;                 // 1-D norm weight (F32, all ones)

    std::uint64_t n_elements() const noexcept {
        std::uint64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
};

/// The tensors of `s` in llama.cpp's order: embedding, layers, final norm, head.
inline std::vector<SynthTensor> synth_tensors(const SynthShape& s) {
    validate_synth_shape(s);
    const auto u = [](std::int64_t v) { return static_cast<std::uint64_t>(v); };
    const auto q_dim = u(s.n_heads * s.head_dim()), kv_dim = u(s.kv_dim());
    std::vector<SynthTensor> t;
    t.push_back({"token_embd.weight", {u(s.dim), u(s.n_vocab)}, false});
    for (std::int64_t l = 0; l < s.n_layers; ++l) {
        const auto p = "blk." + std::to_string(l) + ".";
        t.push_back({p + "attn_norm.weight", {u(s.dim)}, true});
        t.push_back({p + "attn_q.weight", {u(s.dim), q_dim}, false});
        t.push_back({p + "attn_k.weight", {u(s.dim), kv_dim}, false});
        t.push_back({p + "attn_v.weight", {u(s.dim), kv_dim}, false});
        t.push_back({p + "attn_output.weight", {q_dim, u(s.dim)}, false});
        t.push_back({p + "ffn_norm.weight", {u(s.dim)}, true});
        t.push_back({p + "ffn_gate.weight", {u(s.dim), u(s.ffn_dim)}, false});
        t.push_back({p + "ffn_up.weight", {u(s.dim), u(s.ffn_dim)}, false});
        t.push_back({p + "ffn_down.weight", {u(s.ffn_dim), u(s.dim)}, false});
    }
    t.push_back({"output_norm.weight", {u(s.dim)}, true});
    if (!s.tied_output) t.push_back({"output.weight", {u(s.dim), u(s.n_vocab)}, false});
    return t;
}

/// Number of weights (a tied head counted once), as model hubs count them.
inline std::uint64_t synth_parameter_count(const SynthShape& s) {
    std::uint64_t n = 0;
    for (const auto& t : synth_tensors(s)) n += t.n_elements();
    return n;
}

/// The type a tensor is written in when `requested` is asked for: norms F32,
/// rows that are not whole blocks of `requested` F32, everything else `requested`.
inline GgmlType synth_tensor_type(const SynthTensor& t, GgmlType requested) {
    if (t.norm) return GgmlType::F32;
    if (t.shape[0] % type_traits(requested).block_size != 0) return GgmlType::F32;
    return requested;
}

// ---- deterministic values ----

namespace synth_detail {
inline std::uint64_t mix64(std::uint64_t z) noexcept {  // splitmix64's finaliser
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
inline constexpr std::uint64_t kGamma = 0x9E3779B97F4A7C15ull;  // splitmix64's increment
// 1 / standard deviation of a sum of four uniforms on {0..65535}: sqrt(3 / (65536^2 - 1)).
inline constexpr double kInvStd4 = 2.6428997921303018e-05;
inline constexpr std::int32_t kMean4 = 4 * 65535 / 2;  // 131070
inline constexpr std::int32_t kTokenUnused = 5;        // llama.cpp's token type UNUSED
}  // namespace synth_detail

/// Seed of a tensor's values: XXH64 of its name under the run's seed.
inline std::uint64_t synth_tensor_seed(std::uint64_t seed, std::string_view name) noexcept {
    return Xxh64(seed).update(name.data(), name.size()).digest();
}

/// Standard deviation of a weight whose rows have `row_length` elements.
inline float synth_sigma(std::uint64_t row_length) noexcept {
    return 1.0f / std::sqrt(static_cast<float>(row_length));
}

/// Row `row` of a tensor: n values with mean 0 and standard deviation sigma
/// (Irwin-Hall(4), see the top of this file). Depends only on the arguments.
inline void synth_row(std::uint64_t tensor_seed, std::uint64_t row, float sigma, float* out, std::int64_t n) noexcept {
    using namespace synth_detail;
    std::uint64_t state = mix64(tensor_seed ^ mix64(row + kGamma));
    const float scale = sigma * static_cast<float>(kInvStd4);
    for (std::int64_t i = 0; i < n; ++i) {
        const std::uint64_t z = mix64(state += kGamma);
        const auto sum = static_cast<std::int32_t>((z & 0xFFFF) + ((z >> 16) & 0xFFFF) + ((z >> 32) & 0xFFFF) + (z >> 48));
        out[i] = static_cast<float>(sum - kMean4) * scale;  // |sum - mean| < 2^18: exact in float
    }
}

// ---- tokenizer metadata ----

/// Copies every tokenizer.* key of `vocab` into `out`, padding the token list
/// (and scores and types) to `n_vocab` entries "[PAD<id>]" of type UNUSED.
/// Returns the number of tokens `vocab` has. ConfigError when it has none or
/// more than `n_vocab`.
inline std::int64_t copy_tokenizer_metadata(const GgufFile& vocab, GgufWriter& out, std::int64_t n_vocab) {
    const auto* tokens = vocab.find("tokenizer.ggml.tokens");
    if (tokens == nullptr || !tokens->is_array() || tokens->array().element_type != GgufValueType::STRING)
        throw ConfigError(vocab.name() + ": no tokenizer (tokenizer.ggml.tokens) to copy");
    const auto n_tokens = static_cast<std::int64_t>(tokens->array().items.size());
    if (n_tokens > n_vocab)
        throw ConfigError(vocab.name() + ": the tokenizer has " + std::to_string(n_tokens) +
                          " tokens, more than the model's vocabulary of " + std::to_string(n_vocab));
    // A padded array: the file's items, then `fill` up to n_vocab.
    auto padded = [&](const GgufValue& v, auto fill) {
        const auto& a = v.array();
        if (static_cast<std::int64_t>(a.items.size()) != n_tokens)
            throw ConfigError(vocab.name() + ": tokenizer arrays differ in length");
        std::vector<GgufValue> items = a.items;
        items.reserve(static_cast<std::size_t>(n_vocab));
        for (std::int64_t id = n_tokens; id < n_vocab; ++id) items.emplace_back(fill(id));
        return make_array(a.element_type, std::move(items));
    };
    bool has_types = false;
    for (const auto& [key, value] : vocab.metadata()) {
        if (key.rfind("tokenizer.", 0) != 0) continue;
        if (n_tokens == n_vocab) {
            out.set(key, value);
        } else if (key == "tokenizer.ggml.tokens") {
            out.set(key, padded(value, [](std::int64_t id) { return GgufValue("[PAD" + std::to_string(id) + "]"); }));
        } else if (key == "tokenizer.ggml.scores" && value.is_array() &&
                   value.array().element_type == GgufValueType::FLOAT32) {
            out.set(key, padded(value, [](std::int64_t) { return GgufValue(-1000.0f); }));
        } else if (key == "tokenizer.ggml.token_type" && value.is_array() &&
                   value.array().element_type == GgufValueType::INT32) {
            has_types = true;
            out.set(key, padded(value, [](std::int64_t) { return GgufValue(synth_detail::kTokenUnused); }));
        } else {
            out.set(key, value);
        }
    }
    if (n_tokens < n_vocab && !has_types) {  // say which tokens are padding
        std::vector<std::int32_t> types(static_cast<std::size_t>(n_vocab), 1);  // NORMAL
        std::fill(types.begin() + n_tokens, types.end(), synth_detail::kTokenUnused);
        out.set("tokenizer.ggml.token_type", make_array(types));
    }
    return n_tokens;
}

// ---- the model file ----

/// Progress after each tensor is generated.
struct SynthProgress {
    std::size_t tensor = 0;        // tensors done so far (1-based count)
    std::size_t n_tensors = 0;
    std::string_view name;         // the tensor just generated
    std::uint64_t bytes_done = 0;  // tensor bytes generated so far
    std::uint64_t bytes_total = 0;
};

struct SynthOptions {
    GgmlType type = GgmlType::F32;  // of the 2-D weights: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q6_K
    std::uint64_t seed = 0;
    ThreadPool* pool = nullptr;     // rows are generated on it when given; must outlive write()
    std::function<void(const SynthProgress&)> on_tensor;  // called on the writing thread
};

/// What a synthetic file holds.
struct SynthSummary {
    std::uint64_t parameters = 0;
    std::uint64_t file_bytes = 0;
    std::size_t n_tensors = 0;
    std::vector<std::string> kept_f32;  // 2-D weights left in F32 (rows not whole blocks)
    std::int64_t tokenizer_tokens = 0;  // before padding
    std::string general_name;
};

/// A writer holding the whole synthetic model: metadata now, tensor bytes
/// generated by fill callbacks when it writes (one tensor in memory at a time).
/// `vocab` is only read here; it need not outlive the writer.
inline GgufWriter make_synth_writer(const SynthShape& s, const GgufFile& vocab, const SynthOptions& opt,
                                    SynthSummary* summary = nullptr) {
    validate_synth_shape(s);
    const auto ftype = llama_file_type(opt.type);
    if (!ftype)
        throw ConfigError(std::string("synthetic weights of type ") + std::string(type_name(opt.type)) +
                          " are not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q6_K)");
    const auto tensors = synth_tensors(s);
    const bool quantized = type_traits(opt.type).block_size > 1;

    GgufWriter w;
    const std::string p = "llama.";
    w.set("general.architecture", "llama");
    w.set("general.name", "");  // placeholder keeps its place; set below
    w.set(p + "context_length", static_cast<std::uint32_t>(s.context_length));
    w.set(p + "embedding_length", static_cast<std::uint32_t>(s.dim));
    w.set(p + "block_count", static_cast<std::uint32_t>(s.n_layers));
    w.set(p + "feed_forward_length", static_cast<std::uint32_t>(s.ffn_dim));
    w.set(p + "rope.dimension_count", static_cast<std::uint32_t>(s.head_dim()));
    w.set(p + "attention.head_count", static_cast<std::uint32_t>(s.n_heads));
    w.set(p + "attention.head_count_kv", static_cast<std::uint32_t>(s.n_kv_heads));
    w.set(p + "attention.layer_norm_rms_epsilon", s.norm_eps);
    w.set(p + "rope.freq_base", s.rope_freq_base);
    w.set(p + "vocab_size", static_cast<std::uint32_t>(s.n_vocab));
    w.set("general.file_type", *ftype);
    if (quantized) w.set("general.quantization_version", kGgmlQuantizationVersion);
    w.set("tandem.synthetic.seed", opt.seed);
    const auto n_tokens = copy_tokenizer_metadata(vocab, w, s.n_vocab);

    std::string name = "tandem synth " + s.name + " (random weights";
    if (!s.source.empty()) name += ", shape of " + s.source;
    const auto tok_name = vocab.get_or<std::string>("general.name", vocab.name());
    if (n_tokens < s.n_vocab)
        name += "; tokenizer " + tok_name + " padded from " + std::to_string(n_tokens) + " to " +
                std::to_string(s.n_vocab) + " tokens, not the original vocabulary";
    name += ")";
    w.set("general.name", name);

    // Tensors. The options (pool, callback) are shared by every fill callback
    // and live as long as the writer.
    const auto shared = std::make_shared<const SynthOptions>(opt);
    SynthSummary sum;
    std::vector<std::uint64_t> bytes_after;  // tensor bytes up to and including tensor i
    std::uint64_t bytes_total = 0;
    for (const auto& t : tensors) {
        const auto type = synth_tensor_type(t, opt.type);
        bytes_total += t.n_elements() / t.shape[0] * row_bytes(type, t.shape[0]);
        bytes_after.push_back(bytes_total);
        if (!t.norm && type != opt.type) sum.kept_f32.push_back(t.name);
        sum.parameters += t.n_elements();
    }
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const auto& t = tensors[i];
        const auto type = synth_tensor_type(t, opt.type);
        const std::uint64_t cols = t.shape[0];
        const std::uint64_t rows = t.n_elements() / cols;
        const std::uint64_t seed = synth_tensor_seed(opt.seed, t.name);
        const bool norm = t.norm;
        const SynthProgress progress{i + 1, tensors.size(), {}, bytes_after[i], bytes_total};
        w.add_tensor(t.name, type, t.shape, [shared, type, cols, rows, seed, norm, progress, tname = t.name](std::span<std::byte> dst) {
            const std::size_t rb = static_cast<std::size_t>(row_bytes(type, cols));
            const float sigma = synth_sigma(cols);
            auto run = [&](std::int64_t b, std::int64_t e) {
                std::vector<float> tmp(static_cast<std::size_t>(cols));
                for (std::int64_t r = b; r < e; ++r) {
                    if (norm) std::fill(tmp.begin(), tmp.end(), 1.0f);
                    else synth_row(seed, static_cast<std::uint64_t>(r), sigma, tmp.data(), static_cast<std::int64_t>(cols));
                    quantize_row(type, tmp.data(), dst.data() + static_cast<std::size_t>(r) * rb,
                                 static_cast<std::int64_t>(cols));
                }
            };
            if (shared->pool != nullptr && rows > 1) shared->pool->parallel_for(static_cast<std::int64_t>(rows), run);
            else run(0, static_cast<std::int64_t>(rows));
            if (shared->on_tensor) {
                auto p = progress;
                p.name = tname;
                shared->on_tensor(p);
            }
        });
    }
    sum.n_tensors = tensors.size();
    sum.file_bytes = w.file_size();
    sum.tokenizer_tokens = n_tokens;
    sum.general_name = name;
    if (summary) *summary = std::move(sum);
    return w;
}

/// Writes the synthetic model to `path` (via path.part, renamed when complete).
inline SynthSummary write_synth_model(const std::string& path, const SynthShape& s, const GgufFile& vocab,
                                      const SynthOptions& opt) {
    SynthSummary summary;
    const auto w = make_synth_writer(s, vocab, opt, &summary);
    w.write(path);
    return summary;
}

}  // namespace tandem
