// CpuDevice: this machine's CPU (or a share of it): a thread pool, a memory
// budget and a measured speed.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <utility>

#include "tandem/core/error.hpp"
#include "tandem/core/thread_pool.hpp"
#include "tandem/device/device.hpp"

namespace tandem {

struct CpuDeviceOptions {
    std::string name = "cpu";
    unsigned threads = 0;  // 0: one per hardware thread
    std::uint64_t memory_budget = std::numeric_limits<std::uint64_t>::max();
    double speed = 1.0;    // as measured by placement's profiler; 1.0 until then
};

class CpuDevice {
public:
    explicit CpuDevice(CpuDeviceOptions opt = {}) : opt_(std::move(opt)), pool_(opt_.threads) {}

    std::string name() const { return opt_.name; }
    ThreadPool& pool() noexcept { return pool_; }
    unsigned threads() const noexcept { return pool_.size(); }
    std::uint64_t memory_budget() const noexcept { return opt_.memory_budget; }
    std::uint64_t memory_used() const noexcept { return used_.load(); }
    double speed() const noexcept { return opt_.speed; }
    void set_speed(double s) noexcept { opt_.speed = s; }

    void reserve(std::uint64_t n) {
        std::lock_guard lock(mutex_);
        const auto used = used_.load();
        if (n > opt_.memory_budget || used > opt_.memory_budget - n)
            throw MemoryLimitError(opt_.name + ": cannot reserve " + std::to_string(n) + " bytes: " +
                                       std::to_string(opt_.memory_budget - used) + " of " +
                                       std::to_string(opt_.memory_budget) + " left",
                                   n, opt_.memory_budget - used);
        used_ = used + n;
    }
    void unreserve(std::uint64_t n) noexcept {
        std::lock_guard lock(mutex_);
        used_ = n > used_ ? 0 : used_ - n;
    }

    template <typename Job>
    double compute(Job&& job) {
        const auto t0 = std::chrono::steady_clock::now();
        job(pool_);
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }

private:
    CpuDeviceOptions opt_;
    ThreadPool pool_;
    std::mutex mutex_;
    std::atomic<std::uint64_t> used_{0};
};

static_assert(Device<CpuDevice>);

}  // namespace tandem
