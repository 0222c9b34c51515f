// The Device concept: where segments run.
//
// Requirements, for a Device `d` (const view `cd`), a byte count `n` and a
// compute job `job` (a callable taking ThreadPool&):
//
//  1. cd.name() -> std::string: a stable, human-readable id.
//  2. d.pool() -> ThreadPool&: the threads its kernels use; cd.threads() ->
//     unsigned: how many.
//  3. cd.memory_budget() -> std::uint64_t: bytes it may hold for weights plus
//     KV caches; cd.memory_used() -> std::uint64_t: bytes reserved so far.
//  4. d.reserve(n) accounts n more bytes, throwing MemoryLimitError (with the
//     requested and available amounts) above the budget; d.unreserve(n) gives
//     them back.
//  5. cd.speed() -> double: measured relative compute speed (1.0 = this
//     machine at full speed; 0.25 = four times slower). Placement reads it.
//  6. d.compute(job) -> double: runs job(pool()) and returns the seconds the
//     device was busy. This is where a device's own behaviour lives: an
//     emulated phone stretches the time, a GPU device would launch work.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>

#include "tandem/core/thread_pool.hpp"

namespace tandem {

namespace detail {
struct ComputeJobArchetype {
    void operator()(ThreadPool&) const {}
};
}  // namespace detail

template <typename D>
concept Device = requires(D& d, const D& cd, std::uint64_t n, const detail::ComputeJobArchetype& job) {
    { cd.name() } -> std::convertible_to<std::string>;        // 1
    { d.pool() } -> std::same_as<ThreadPool&>;                // 2
    { cd.threads() } -> std::convertible_to<unsigned>;        // 2
    { cd.memory_budget() } -> std::convertible_to<std::uint64_t>;  // 3
    { cd.memory_used() } -> std::convertible_to<std::uint64_t>;    // 3
    { d.reserve(n) } -> std::same_as<void>;                   // 4
    { d.unreserve(n) } -> std::same_as<void>;                 // 4
    { cd.speed() } -> std::convertible_to<double>;            // 5
    { d.compute(job) } -> std::same_as<double>;               // 6
};

}  // namespace tandem
