// Text generation on one device: prefill the prompt as one batch, then decode
// one token per step, sampling each from the logits.
//
// This is the single-device reference every pipeline configuration must match.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "tandem/core/thread_pool.hpp"
#include "tandem/model/model.hpp"
#include "tandem/model/sampler.hpp"

namespace tandem {

struct GenerateOptions {
    std::int32_t max_tokens = 128;  // generated tokens, not counting the prompt
    SamplerConfig sampler{};
    std::vector<std::int32_t> stop_tokens;  // e.g. the tokenizer's end-of-generation ids
};

struct GenerateStats {
    std::int64_t prompt_tokens = 0;
    std::int64_t generated_tokens = 0;
    double prefill_seconds = 0;
    double decode_seconds = 0;  // time of the decode steps after the first sampled token

    double prefill_tokens_per_second() const noexcept {
        return prefill_seconds > 0 ? static_cast<double>(prompt_tokens) / prefill_seconds : 0;
    }
    double decode_tokens_per_second() const noexcept {
        return decode_seconds > 0 && generated_tokens > 1 ? static_cast<double>(generated_tokens - 1) / decode_seconds
                                                          : 0;
    }
};

class Generator {
public:
    Generator(std::shared_ptr<const Model> model, ThreadPool& pool)
        : model_(std::move(model)), pool_(pool),
          kv_(0, model_->config().n_layers, model_->config().kv_dim(), model_->config().context_length) {}

    /// Generates after `prompt` (which should start with BOS where the model
    /// wants one). `on_token(id)` sees every generated token as soon as it is
    /// sampled and may return false to stop. Returns the generated ids.
    std::vector<std::int32_t> generate(std::span<const std::int32_t> prompt, const GenerateOptions& opt,
                                       const std::function<bool(std::int32_t)>& on_token = {},
                                       GenerateStats* stats = nullptr) {
        using clock = std::chrono::steady_clock;
        if (prompt.empty()) throw ConfigError("generation needs at least one prompt token (e.g. BOS)");
        const auto& c = model_->config();
        if (static_cast<std::int64_t>(prompt.size()) + opt.max_tokens > c.context_length)
            throw ConfigError("prompt of " + std::to_string(prompt.size()) + " tokens plus " +
                              std::to_string(opt.max_tokens) + " new ones exceeds the context length " +
                              std::to_string(c.context_length));
        const auto all = BlockRange::all(c);
        const SeqId seq = next_seq_++;
        Sampler sampler(opt.sampler);
        for (auto t : prompt) sampler.accept(t);

        GenerateStats st;
        st.prompt_tokens = static_cast<std::int64_t>(prompt.size());
        std::vector<std::int32_t> out;
        auto t0 = clock::now();
        Batch b = Batch::for_sequence(seq, prompt, 0);
        run_blocks(model_->arch(), all, b, kv_, ws_, pool_);
        st.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();

        auto t1 = clock::now();
        std::int32_t pos = static_cast<std::int32_t>(prompt.size());
        while (static_cast<std::int32_t>(out.size()) < opt.max_tokens) {
            const std::int32_t next = sampler.sample({b.logits.data(), static_cast<std::size_t>(b.logits.cols())});
            out.push_back(next);
            const bool stop = std::find(opt.stop_tokens.begin(), opt.stop_tokens.end(), next) != opt.stop_tokens.end();
            if ((on_token && !on_token(next)) || stop || static_cast<std::int32_t>(out.size()) >= opt.max_tokens) break;
            if (out.size() == 1) t1 = clock::now();  // decode time starts after the first token
            b = Batch::for_sequence(seq, std::span(&next, 1), pos++);
            run_blocks(model_->arch(), all, b, kv_, ws_, pool_);
        }
        st.generated_tokens = static_cast<std::int64_t>(out.size());
        st.decode_seconds = out.size() > 1 ? std::chrono::duration<double>(clock::now() - t1).count() : 0;
        kv_.erase(seq);
        if (stats) *stats = st;
        return out;
    }

    const Model& model() const noexcept { return *model_; }

private:
    std::shared_ptr<const Model> model_;
    ThreadPool& pool_;
    KvStore kv_;
    Workspace ws_;
    SeqId next_seq_ = 0;
};

}  // namespace tandem
