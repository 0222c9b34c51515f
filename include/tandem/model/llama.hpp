// The llama architecture family: RMSNorm, RoPE, grouped-query attention,
// SwiGLU FFN, tied or separate output head.
//
// A layer reads like a recipe:
//   xb = rms_norm(h) ; q,k,v = Wq xb, Wk xb, Wv xb ; rope(q, k) ; cache k, v
//   att = softmax(q K^T / sqrt(hd)) V ; h += Wo att
//   xb = rms_norm(h) ; h += Wdown (silu(Wgate xb) * Wup xb)
// Weights are used in place from the GGUF mapping, in whatever type the file
// stores (the matmul kernel handles each type).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "tandem/gguf/quant.hpp"
#include "tandem/gguf/reader.hpp"
#include "tandem/model/architecture.hpp"
#include "tandem/kernels/activation.hpp"
#include "tandem/kernels/attention.hpp"
#include "tandem/kernels/matmul.hpp"
#include "tandem/kernels/norm.hpp"
#include "tandem/kernels/rope.hpp"
#include "tandem/kernels/weight.hpp"

namespace tandem {

class LlamaArchitecture final : public Architecture {
public:
    /// Binds the tensors of the blocks in `bound` (others may be absent from `file`).
    LlamaArchitecture(const GgufFile& file, ModelConfig config, BlockRange bound)
        : config_(std::move(config)), bound_(bound), layers_(static_cast<std::size_t>(config_.n_layers)) {
        const auto& c = config_;
        for (std::int64_t b = bound.begin; b < bound.end; ++b) {
            const auto ref = block_ref(c, b);
            switch (ref.kind) {
                case BlockKind::Embedding: token_embd_ = bind(file, "token_embd.weight", c.dim, c.n_vocab); break;
                case BlockKind::Attention: {
                    auto& L = layers_[static_cast<std::size_t>(ref.layer)];
                    const auto p = "blk." + std::to_string(ref.layer) + ".";
                    L.attn_norm = bind_norm(file, p + "attn_norm.weight");
                    L.wq = bind(file, p + "attn_q.weight", c.dim, c.q_dim());
                    L.wk = bind(file, p + "attn_k.weight", c.dim, c.kv_dim());
                    L.wv = bind(file, p + "attn_v.weight", c.dim, c.kv_dim());
                    L.wo = bind(file, p + "attn_output.weight", c.q_dim(), c.dim);
                    break;
                }
                case BlockKind::Ffn: {
                    auto& L = layers_[static_cast<std::size_t>(ref.layer)];
                    const auto p = "blk." + std::to_string(ref.layer) + ".";
                    L.ffn_norm = bind_norm(file, p + "ffn_norm.weight");
                    L.w_gate = bind(file, p + "ffn_gate.weight", c.dim, c.ffn_dim);
                    L.w_up = bind(file, p + "ffn_up.weight", c.dim, c.ffn_dim);
                    L.w_down = bind(file, p + "ffn_down.weight", c.ffn_dim, c.dim);
                    break;
                }
                case BlockKind::Head:
                    output_norm_ = bind_norm(file, "output_norm.weight");
                    output_ = bind(file, c.tied_output ? "token_embd.weight" : "output.weight", c.dim, c.n_vocab);
                    break;
            }
        }
    }

    const ModelConfig& config() const noexcept override { return config_; }

    std::vector<std::string> block_tensors(std::int64_t b) const override {
        const auto ref = block_ref(config_, b);
        const auto p = "blk." + std::to_string(ref.layer) + ".";
        switch (ref.kind) {
            case BlockKind::Embedding: return {"token_embd.weight"};
            case BlockKind::Attention:
                return {p + "attn_norm.weight", p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight",
                        p + "attn_output.weight"};
            case BlockKind::Ffn:
                return {p + "ffn_norm.weight", p + "ffn_gate.weight", p + "ffn_up.weight", p + "ffn_down.weight"};
            case BlockKind::Head:
                return {"output_norm.weight", config_.tied_output ? "token_embd.weight" : "output.weight"};
        }
        return {};
    }

    void embed(std::span<const std::int32_t> tokens, Activations& h) const override {
        const auto& w = need(token_embd_, "token_embd.weight");
        h.resize(static_cast<Eigen::Index>(tokens.size()), config_.dim);
        for (std::size_t i = 0; i < tokens.size(); ++i) {
            const auto t = tokens[i];
            if (t < 0 || t >= config_.n_vocab)
                throw ConfigError("token id " + std::to_string(t) + " outside the vocabulary of " +
                                  std::to_string(config_.n_vocab));
            dequantize_row(w.type, w.data + static_cast<std::size_t>(t) * w.row_bytes, h.row(static_cast<Eigen::Index>(i)).data(),
                           config_.dim);
        }
    }

    void attention(std::int64_t layer, Activations& h, const Batch& batch, KvStore& kv, Workspace& ws,
                   ThreadPool& pool) const override {
        const auto& c = config_;
        const auto& L = layers_[static_cast<std::size_t>(layer)];
        need(L.wq, "attention weights of layer " + std::to_string(layer));
        const std::int64_t n = h.rows();
        const std::int64_t dim = c.dim, hd = c.head_dim, kvd = c.kv_dim(), qd = c.q_dim();
        float* xb = Workspace::sized(ws.xb, n * dim);      // (n, dim)
        float* q = Workspace::sized(ws.q, n * qd);         // (n, q_dim)
        float* k = Workspace::sized(ws.k, n * kvd);        // (n, kv_dim)
        float* v = Workspace::sized(ws.v, n * kvd);        // (n, kv_dim)
        float* att = Workspace::sized(ws.att, n * qd);     // (n, q_dim)
        float* proj = Workspace::sized(ws.proj, n * dim);  // (n, dim)

        // xb = rms_norm(h); q, k, v = Wq xb, Wk xb, Wv xb (one pass over xb).
        rms_norm_rows(h.data(), L.attn_norm, xb, n, dim, c.norm_eps);
        const WeightView* w_qkv[] = {&L.wq, &L.wk, &L.wv};
        float* y_qkv[] = {q, k, v};
        matmul(std::span<const WeightView* const>(w_qkv), xb, n, std::span<float* const>(y_qkv), pool);

        // RoPE, then append k and v to each token's sequence cache.
        for (std::int64_t t = 0; t < n; ++t) {
            const std::int64_t pos = batch.positions[static_cast<std::size_t>(t)];
            rope_inplace(q + t * qd, c.n_heads, hd, c.rope_dims, pos, c.rope_freq_base, c.rope_freq_scale, c.rope_layout);
            rope_inplace(k + t * kvd, c.n_kv_heads, hd, c.rope_dims, pos, c.rope_freq_base, c.rope_freq_scale,
                         c.rope_layout);
            auto& cache = kv.at(batch.seq_ids[static_cast<std::size_t>(t)]);
            cache.reserve(pos + 1);
            std::memcpy(cache.k(layer, pos), k + t * kvd, static_cast<std::size_t>(kvd) * sizeof(float));
            std::memcpy(cache.v(layer, pos), v + t * kvd, static_cast<std::size_t>(kvd) * sizeof(float));
            cache.mark_filled(pos);
        }

        // Each token attends over positions [0, pos] of its own sequence. The
        // same per-token kernel runs whatever the batch holds, so a token's
        // output does not depend on what it was batched with.
        const AttentionDims dims{c.n_heads, c.n_kv_heads, hd, kvd};
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        auto one = [&](std::int64_t t, ThreadPool* heads_pool) {
            const std::int64_t pos = batch.positions[static_cast<std::size_t>(t)];
            const KvCache& cache = kv.at(batch.seq_ids[static_cast<std::size_t>(t)]);
            thread_local AlignedFloats scratch;  // (n_heads, n_kv)
            if (scratch.size() < static_cast<std::size_t>(c.n_heads * (pos + 1)))
                scratch.resize(static_cast<std::size_t>(c.n_heads * (pos + 1)));
            tandem::attention(q + t * qd, cache.k(layer, 0), cache.v(layer, 0), pos + 1, dims, scale, att + t * qd,
                              scratch.data(), heads_pool);
        };
        for (std::int64_t t = 0; t < n; ++t) kv.at(batch.seq_ids[static_cast<std::size_t>(t)]);  // create caches here, not in threads
        std::int64_t work = 0;  // multiply-adds over the batch's positions, per head dimension
        for (std::int64_t t = 0; t < n; ++t) work += (batch.positions[static_cast<std::size_t>(t)] + 1) * c.n_heads * hd;
        if (n == 1)
            one(0, &pool);
        else if (pool.size() == 1 || work < (1 << 16))  // small: done before the pool would have woken up
            for (std::int64_t t = 0; t < n; ++t) one(t, nullptr);
        else
            pool.parallel_for(n, [&](std::int64_t t0, std::int64_t t1) {
                for (std::int64_t t = t0; t < t1; ++t) one(t, nullptr);
            });

        matmul(L.wo, att, n, proj, pool);
        add_inplace(h.data(), proj, n * dim);  // h += Wo att
    }

    void ffn(std::int64_t layer, Activations& h, Workspace& ws, ThreadPool& pool) const override {
        const auto& c = config_;
        const auto& L = layers_[static_cast<std::size_t>(layer)];
        need(L.w_gate, "FFN weights of layer " + std::to_string(layer));
        const std::int64_t n = h.rows(), dim = c.dim, f = c.ffn_dim;
        float* xb = Workspace::sized(ws.xb, n * dim);      // (n, dim)
        float* gate = Workspace::sized(ws.gate, n * f);    // (n, ffn)
        float* up = Workspace::sized(ws.up, n * f);        // (n, ffn)
        float* proj = Workspace::sized(ws.proj, n * dim);  // (n, dim)
        rms_norm_rows(h.data(), L.ffn_norm, xb, n, dim, c.norm_eps);
        const WeightView* w_gu[] = {&L.w_gate, &L.w_up};
        float* y_gu[] = {gate, up};
        matmul(std::span<const WeightView* const>(w_gu), xb, n, std::span<float* const>(y_gu), pool);
        swiglu(gate, up, gate, n * f);  // gate = silu(gate) * up
        matmul(L.w_down, gate, n, proj, pool);
        add_inplace(h.data(), proj, n * dim);  // h += Wdown (silu(gate) * up)
    }

    void head(const Activations& h, std::span<const std::int64_t> rows, Activations& logits, Workspace& ws,
              ThreadPool& pool) const override {
        const auto& c = config_;
        const auto& w = need(output_, "output head");
        const auto n = static_cast<std::int64_t>(rows.size());
        float* xb = Workspace::sized(ws.xb, n * c.dim);  // (n_out, dim)
        for (std::int64_t i = 0; i < n; ++i)
            rms_norm(h.row(rows[static_cast<std::size_t>(i)]).data(), output_norm_, xb + i * c.dim, c.dim, c.norm_eps);
        // logits (n_out, n_vocab) = output xb
        logits.resize(n, c.n_vocab);
        matmul(w, xb, n, logits.data(), pool);
    }

private:
    struct Layer {
        const float* attn_norm = nullptr;  // (dim)
        WeightView wq, wk, wv, wo;
        const float* ffn_norm = nullptr;   // (dim)
        WeightView w_gate, w_up, w_down;
    };

    WeightView bind(const GgufFile& f, const std::string& name, std::int64_t cols, std::int64_t rows) {
        const auto& t = f.tensor(name);
        if (t.shape.size() != 2 || static_cast<std::int64_t>(t.shape[0]) != cols ||
            static_cast<std::int64_t>(t.shape[1]) != rows)
            throw FormatError(f.name(), f.data_offset() + t.offset,
                              "tensor '" + name + "' has shape " + shape_string(t.shape) + ", expected [" +
                                  std::to_string(cols) + ", " + std::to_string(rows) + "]");
        return weight_view(t, f.name());
    }

    // Norm weights are tiny: keep an F32 copy whatever the file stores.
    const float* bind_norm(const GgufFile& f, const std::string& name) {
        const auto& t = f.tensor(name);
        if (t.n_elements() != static_cast<std::uint64_t>(config_.dim))
            throw FormatError(f.name(), f.data_offset() + t.offset,
                              "tensor '" + name + "' has shape " + shape_string(t.shape) + ", expected [" +
                                  std::to_string(config_.dim) + "]");
        auto& v = norms_.emplace_back(static_cast<std::size_t>(config_.dim));
        dequantize_row(t.type, t.data.data(), v.data(), config_.dim);
        return v.data();
    }

    static std::string shape_string(const std::vector<std::uint64_t>& s) {
        std::string out = "[";
        for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
        return out + "]";
    }

    const WeightView& need(const WeightView& w, const std::string& what) const {
        if (w.data == nullptr)
            throw ConfigError(what + " not loaded: block outside this slice's range " + to_string(bound_));
        return w;
    }

    ModelConfig config_;
    BlockRange bound_;
    WeightView token_embd_, output_;
    const float* output_norm_ = nullptr;
    std::vector<Layer> layers_;
    std::deque<std::vector<float>> norms_;  // stable addresses
};

}  // namespace tandem
