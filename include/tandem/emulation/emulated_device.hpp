// Emulated phones on a desktop: a Device that is N times slower than the
// machine it runs on, holds at most M bytes, uses T threads, and can be told
// to slow down at given times (for load-balancing experiments).
//
// Slowness is emulated by measuring each step's real compute time t and then
// sleeping (factor - 1) * t: the device appears `factor` times slower while the
// extra time costs no CPU, so several emulated devices share a 2-core machine
// without stealing each other's cycles.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/device/cpu_device.hpp"

namespace tandem {

/// A step function of time: factor(t) for t seconds after the device started.
class SlowdownSchedule {
public:
    struct Step {
        double at_seconds;
        double factor;
    };

    SlowdownSchedule() = default;
    explicit SlowdownSchedule(std::vector<Step> steps) : steps_(std::move(steps)) {
        for (std::size_t i = 0; i < steps_.size(); ++i) {
            if (steps_[i].factor < 1.0) throw ConfigError("a slowdown factor must be >= 1");
            if (i > 0 && steps_[i].at_seconds < steps_[i - 1].at_seconds)
                throw ConfigError("slowdown steps must be in time order");
        }
    }

    /// Parses "20s:3x,40s:1x" (seconds, then the factor from that time on).
    static SlowdownSchedule parse(const std::string& spec) {
        std::vector<Step> steps;
        std::stringstream ss(spec);
        std::string part;
        while (std::getline(ss, part, ',')) {
            const auto colon = part.find(':');
            if (colon == std::string::npos) throw ConfigError("slowdown step '" + part + "' is not TIMEs:FACTORx");
            std::string t = part.substr(0, colon), f = part.substr(colon + 1);
            if (!t.empty() && t.back() == 's') t.pop_back();
            if (!f.empty() && f.back() == 'x') f.pop_back();
            try {
                steps.push_back({std::stod(t), std::stod(f)});
            } catch (const std::exception&) {
                throw ConfigError("slowdown step '" + part + "' is not TIMEs:FACTORx");
            }
        }
        return SlowdownSchedule(std::move(steps));
    }

    /// The extra factor at `seconds` after start (1 before the first step).
    double factor_at(double seconds) const noexcept {
        double f = 1.0;
        for (const auto& s : steps_)
            if (seconds >= s.at_seconds) f = s.factor;
        return f;
    }
    bool empty() const noexcept { return steps_.empty(); }
    const std::vector<Step>& steps() const noexcept { return steps_; }

private:
    std::vector<Step> steps_;
};

/// What an emulated device is.
struct EmulationProfile {
    std::string name = "desktop";
    double slowdown = 1.0;  // compute factor relative to this machine
    std::uint64_t memory_bytes = std::numeric_limits<std::uint64_t>::max();
    unsigned threads = 1;
    SlowdownSchedule schedule{};  // extra slowdowns over time
    double noise = 0.0;  // each step's factor times a uniform draw from [1 - noise, 1 + noise] (a busy phone)

    /// Named presets of phone classes, relative to one core of this desktop.
    static EmulationProfile preset(const std::string& name) {
        constexpr std::uint64_t GiB = 1ull << 30;
        if (name == "high-end") return {"high-end", 1.5, 8 * GiB, 2, {}};
        if (name == "mid-range") return {"mid-range", 3.0, 4 * GiB, 2, {}};
        if (name == "low-end") return {"low-end", 6.0, 2 * GiB, 1, {}};
        if (name == "desktop") return {"desktop", 1.0, std::numeric_limits<std::uint64_t>::max(), 0, {}};
        throw ConfigError("unknown device preset '" + name + "' (high-end, mid-range, low-end, desktop)");
    }
    static std::vector<std::string> preset_names() { return {"high-end", "mid-range", "low-end", "desktop"}; }
};

class EmulatedDevice {
public:
    using clock = std::chrono::steady_clock;

    explicit EmulatedDevice(EmulationProfile p)
        : profile_(std::move(p)),
          cpu_(CpuDeviceOptions{.name = profile_.name, .threads = profile_.threads, .memory_budget = profile_.memory_bytes,
                                .speed = 1.0 / profile_.slowdown}),
          start_(clock::now()) {
        if (profile_.slowdown < 1.0) throw ConfigError("an emulated device cannot be faster than the machine (slowdown >= 1)");
        if (profile_.noise < 0.0 || profile_.noise >= 1.0) throw ConfigError("slowdown noise must be in [0, 1)");
    }

    std::string name() const { return profile_.name; }
    ThreadPool& pool() noexcept { return cpu_.pool(); }
    unsigned threads() const noexcept { return cpu_.threads(); }
    std::uint64_t memory_budget() const noexcept { return cpu_.memory_budget(); }
    std::uint64_t memory_used() const noexcept { return cpu_.memory_used(); }
    void reserve(std::uint64_t n) { cpu_.reserve(n); }
    void unreserve(std::uint64_t n) noexcept { cpu_.unreserve(n); }
    /// Nominal speed (1 / slowdown); the monitor measures the real one.
    double speed() const noexcept { return 1.0 / (profile_.slowdown * current_extra()); }

    /// Runs the job, then sleeps so that the step takes factor x its real time.
    template <typename Job>
    double compute(Job&& job) {
        const double real = cpu_.compute(std::forward<Job>(job));
        double factor = profile_.slowdown * current_extra();
        if (profile_.noise > 0) factor = std::max(1.0, factor * (1.0 + profile_.noise * (2.0 * next_uniform() - 1.0)));
        if (factor > 1.0) std::this_thread::sleep_for(std::chrono::duration<double>((factor - 1.0) * real));
        return real * factor;
    }

    /// Restarts the schedule's clock (e.g. when a benchmark run begins).
    void restart_clock() { start_ = clock::now(); }
    double current_extra() const noexcept {
        return profile_.schedule.factor_at(std::chrono::duration<double>(clock::now() - start_).count());
    }
    const EmulationProfile& profile() const noexcept { return profile_; }

private:
    // xorshift64*: a reproducible draw in [0, 1) per step, no global state.
    double next_uniform() noexcept {
        rng_ ^= rng_ >> 12;
        rng_ ^= rng_ << 25;
        rng_ ^= rng_ >> 27;
        return static_cast<double>((rng_ * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
    }

    std::uint64_t rng_ = 0x9E3779B97F4A7C15ull;
    EmulationProfile profile_;
    CpuDevice cpu_;
    clock::time_point start_;
};

static_assert(Device<EmulatedDevice>);

}  // namespace tandem
