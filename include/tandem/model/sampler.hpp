// Token sampling: greedy, temperature, top-k, top-p, min-p and repetition
// penalty, with a seeded RNG that gives the same draws on every platform.
//
// Order of the chain (the common one in llama.cpp): repetition penalty ->
// top-k -> top-p -> min-p -> temperature -> draw. top-p and min-p look at the
// distribution before temperature. temperature <= 0 means greedy (argmax after
// the penalty; ties go to the lowest id).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "tandem/core/error.hpp"

namespace tandem {

struct SamplerConfig {
    float temperature = 0.0f;     // <= 0: greedy
    std::int32_t top_k = 0;       // <= 0: off
    float top_p = 1.0f;           // >= 1: off
    float min_p = 0.0f;           // <= 0: off
    float repeat_penalty = 1.0f;  // 1: off
    std::int32_t repeat_last_n = 64;
    std::uint64_t seed = 0;
};

/// xoshiro256** seeded with splitmix64: fully specified, so a seed draws the
/// same numbers on x86-64 and arm64, libstdc++ and libc++ alike (std::
/// distributions are not specified that tightly).
class Rng {
public:
    explicit Rng(std::uint64_t seed = 0) noexcept {
        for (auto& s : s_) {
            seed += 0x9e3779b97f4a7c15ull;
            std::uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            s = z ^ (z >> 31);
        }
    }
    std::uint64_t next() noexcept {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }
    /// Uniform in [0, 1) with 53 random bits.
    double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
    std::uint64_t s_[4];
};

class Sampler {
public:
    explicit Sampler(SamplerConfig cfg = {}) : cfg_(cfg), rng_(cfg.seed) {
        if (cfg.top_p <= 0.0f) throw ConfigError("top-p must be > 0");
        if (cfg.repeat_penalty <= 0.0f) throw ConfigError("repetition penalty must be > 0");
    }

    const SamplerConfig& config() const noexcept { return cfg_; }

    /// Picks the next token from `logits` (n_vocab) and records it in the history.
    std::int32_t sample(std::span<const float> logits) {
        const auto id = pick(logits);
        accept(id);
        return id;
    }

    /// Adds a token to the history the repetition penalty looks at (prompt tokens too).
    void accept(std::int32_t id) {
        if (cfg_.repeat_last_n <= 0) return;
        history_.push_back(id);
        while (static_cast<std::int32_t>(history_.size()) > cfg_.repeat_last_n) history_.pop_front();
    }

    std::int32_t pick(std::span<const float> logits) {
        if (logits.empty()) throw ConfigError("sampling from empty logits");
        const auto n = static_cast<std::int32_t>(logits.size());
        cand_.resize(static_cast<std::size_t>(n));
        for (std::int32_t i = 0; i < n; ++i) cand_[static_cast<std::size_t>(i)] = {i, logits[static_cast<std::size_t>(i)]};
        apply_penalty();

        if (cfg_.temperature <= 0.0f) {
            // Greedy: first maximum wins.
            std::size_t best = 0;
            for (std::size_t i = 1; i < cand_.size(); ++i)
                if (cand_[i].logit > cand_[best].logit) best = i;
            return cand_[best].id;
        }

        // Sort by logit, descending, keeping id order for ties (deterministic).
        auto by_logit = [](const Cand& a, const Cand& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
        std::size_t keep = cand_.size();
        if (cfg_.top_k > 0 && static_cast<std::size_t>(cfg_.top_k) < keep) {
            keep = static_cast<std::size_t>(cfg_.top_k);
            std::partial_sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(keep), cand_.end(), by_logit);
        } else {
            std::sort(cand_.begin(), cand_.end(), by_logit);
        }
        cand_.resize(keep);

        // Probabilities before temperature, for top-p and min-p.
        softmax(1.0f);
        if (cfg_.top_p < 1.0f) {
            double cum = 0;
            std::size_t cut = cand_.size();
            for (std::size_t i = 0; i < cand_.size(); ++i) {
                cum += cand_[i].p;
                if (cum >= cfg_.top_p) {
                    cut = i + 1;
                    break;
                }
            }
            cand_.resize(cut);
        }
        if (cfg_.min_p > 0.0f) {
            const float threshold = cfg_.min_p * cand_.front().p;
            std::size_t cut = 1;
            while (cut < cand_.size() && cand_[cut].p >= threshold) ++cut;
            cand_.resize(cut);
        }

        softmax(cfg_.temperature);
        const double r = rng_.uniform();
        double cum = 0;
        for (const auto& c : cand_) {
            cum += c.p;
            if (r < cum) return c.id;
        }
        return cand_.back().id;  // rounding left r above the last cumulative sum
    }

private:
    struct Cand {
        std::int32_t id;
        float logit;
        float p = 0;
    };

    void apply_penalty() {
        if (cfg_.repeat_penalty == 1.0f) return;
        std::vector<std::int32_t> seen(history_.begin(), history_.end());
        std::sort(seen.begin(), seen.end());
        seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
        for (const auto id : seen) {
            if (id < 0 || static_cast<std::size_t>(id) >= cand_.size()) continue;
            float& l = cand_[static_cast<std::size_t>(id)].logit;
            l = l > 0 ? l / cfg_.repeat_penalty : l * cfg_.repeat_penalty;
        }
    }

    // p = softmax(logit / temperature) over the candidates (sorted, max first).
    void softmax(float temperature) {
        const float mx = cand_.front().logit;
        double sum = 0;
        for (auto& c : cand_) {
            c.p = std::exp((c.logit - mx) / temperature);
            sum += c.p;
        }
        for (auto& c : cand_) c.p = static_cast<float>(c.p / sum);
    }

    SamplerConfig cfg_;
    Rng rng_;
    std::deque<std::int32_t> history_;
    std::vector<Cand> cand_;
};

}  // namespace tandem
