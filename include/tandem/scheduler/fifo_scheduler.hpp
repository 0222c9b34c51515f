// FifoScheduler: admits up to K requests and runs queued steps in arrival
// order, optionally merging up to `max_batch` of them into one forward pass
// (weights are read once for the whole batch, which is what bandwidth-bound
// decoding wants). max_batch = 1 reproduces the paper's one-step-at-a-time
// devices.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/scheduler/scheduler.hpp"

namespace tandem {

class FifoScheduler {
public:
    explicit FifoScheduler(std::size_t max_in_flight = 1, std::size_t max_batch = 1,
                           std::int64_t max_batch_tokens = 512)
        : k_(max_in_flight), max_batch_(max_batch), max_batch_tokens_(max_batch_tokens) {
        if (k_ == 0) throw ConfigError("a scheduler needs at least one request in flight");
        if (max_batch_ == 0) throw ConfigError("a batch holds at least one step");
    }

    std::size_t max_in_flight() const noexcept { return k_; }
    bool admit(std::size_t in_flight, std::size_t waiting) const noexcept { return waiting > 0 && in_flight < k_; }

    std::vector<std::size_t> pick(std::span<const WorkItem> ready) const {
        std::vector<std::size_t> order(ready.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::stable_sort(order.begin(), order.end(),
                         [&](std::size_t a, std::size_t b) { return ready[a].arrival < ready[b].arrival; });
        std::vector<std::size_t> out;
        std::int64_t tokens = 0;
        for (const auto i : order) {
            if (out.size() == max_batch_) break;
            if (!out.empty() && tokens + ready[i].n_tokens > max_batch_tokens_) break;
            out.push_back(i);
            tokens += ready[i].n_tokens;
        }
        return out;
    }

private:
    std::size_t k_;
    std::size_t max_batch_;
    std::int64_t max_batch_tokens_;
};

static_assert(Scheduler<FifoScheduler>);

}  // namespace tandem
