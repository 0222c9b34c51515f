// The Scheduler concept: which request runs next, and how many run at once.
//
// Two decisions shape a pipeline's throughput. The coordinator admits waiting
// requests while fewer than K are in flight, so that with K >= D every device
// has work; and each device, when several work items are queued, picks which
// to run next (and which to run together as one batch).
//
// Requirements, for a Scheduler `s` (const view `cs`), counts `in_flight` and
// `waiting`, and a span `ready` of queued WorkItems:
//
//  1. cs.max_in_flight() -> std::size_t: K, the most requests in the pipeline.
//  2. s.admit(in_flight, waiting) -> bool: whether to start one more request now.
//  3. s.pick(ready) -> std::vector<std::size_t>: indices into `ready` of the
//     items the device runs next, as one batch (at least one when `ready` is
//     not empty; each index once).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace tandem {

/// What a scheduler knows of a queued step.
struct WorkItem {
    std::uint64_t request = 0;
    std::uint64_t step = 0;        // 0 = prefill
    std::int64_t n_tokens = 0;
    std::uint64_t arrival = 0;     // order in which the device received it
};

template <typename S>
concept Scheduler = requires(S& s, const S& cs, std::size_t in_flight, std::size_t waiting,
                             std::span<const WorkItem> ready) {
    { cs.max_in_flight() } -> std::convertible_to<std::size_t>;         // 1
    { s.admit(in_flight, waiting) } -> std::same_as<bool>;              // 2
    { s.pick(ready) } -> std::same_as<std::vector<std::size_t>>;        // 3
};

}  // namespace tandem
