// Runtime load balancing: a monitor of measured step times and a trigger
// that re-plans when the measured bottleneck drifts from the plan.
//
// Monitor: each device's compute time per pipeline step, from the busy
// seconds and step counts its device loop reports, smoothed with an EWMA.
// From it and the weight bytes of the blocks the device holds, the device's
// measured speed (bytes of weights processed per second: decode is bound by
// reading weights). A speed is a property of the device, not of its blocks,
// so it stays valid when blocks move.
//
// Re-plan: the contiguous split of the blocks over the devices, in ring
// order, that minimises the bottleneck stage time under the measured speeds
// and each device's memory budget; an exact dynamic programme over (device,
// first block), O(D * B^2). Devices on standby (connected, holding no
// blocks) join the split after the plan's devices, at the speed their
// profile predicts: a device that joined is used by the next move.
//
// Trigger, with hysteresis: a move is proposed only when the best plan's
// predicted bottleneck beats the current plan's by more than `threshold`
// in `patience` consecutive windows, and only when the time it saves over the
// tokens still to generate exceeds the cost of migrating; after a move, the
// trigger waits `cooldown` windows. The evidence comes from disjoint windows
// of at least `min_window_steps` steps; the size of the move comes from the
// newest `min_window_steps` steps alone. A device whose speed is merely noisy
// keeps the EWMA near its mean and so does not move blocks back and forth.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tandem/runtime/plan.hpp"

namespace tandem {

struct BalancerOptions {
    double alpha = 0.3;           // EWMA weight of the newest window
    double threshold = 0.2;       // relative bottleneck gain needed to propose a move
    int patience = 3;             // consecutive windows over the threshold
    int cooldown = 5;             // windows to wait after a move
    double migration_seconds = 0.05;  // estimated pause of one move (updated from measured moves)
    bool learn_from_moves = true;     // raise the threshold after moves that did not deliver (Balancer::threshold)
    std::uint64_t min_window_steps = 8;  // a window spans at least this many steps (Monitor)
};

/// One device's cumulative counters, as its device loop reports them.
/// `tokens` (token positions computed) tells decode windows from windows
/// with prompt steps; 0 when not known.
struct DeviceSample {
    double busy_seconds = 0;
    std::uint64_t steps = 0;
    std::uint64_t tokens = 0;
};

class Monitor {
public:
    /// `min_steps`: a window spans at least this many steps. When steps are
    /// slow, a window is extended until it has them (the baseline stays), so
    /// a device's noise is averaged over as many steps as with fast steps.
    explicit Monitor(double alpha = 0.3, std::uint64_t min_steps = 1) : alpha_(alpha), min_steps_(min_steps) {}

    /// Feeds cumulative counters; the difference to the previous sample of
    /// the same device is one window. Returns false when the window had no
    /// step, or had a step of several tokens (a prompt, or a failover's
    /// replay): such a step costs the prompt's length in decode steps, and
    /// devices meet it in different windows, so it says nothing about their
    /// decode speed. The window is skipped, not averaged in.
    bool add(DeviceId d, DeviceSample s) {
        auto& st = dev_[d];
        const bool have_prev = st.have_prev;
        const auto prev = st.prev;
        st.prev = s;
        st.have_prev = true;
        // Counters that went back (a restarted worker) start the history anew.
        if (!st.history.empty() && (s.steps < st.history.back().steps || s.busy_seconds < st.history.back().busy_seconds))
            st.history.clear();
        st.history.push_back(s);
        if (st.history.size() > kHistory) st.history.erase(st.history.begin());
        if (!have_prev || s.steps <= prev.steps || s.busy_seconds < prev.busy_seconds) return false;
        if (s.tokens != 0 && s.tokens - prev.tokens != s.steps - prev.steps) return false;
        if (s.steps - prev.steps < min_steps_) {  // too few steps yet: extend the window
            st.prev = prev;
            return false;
        }
        const double t = (s.busy_seconds - prev.busy_seconds) / static_cast<double>(s.steps - prev.steps);
        st.step_seconds = st.have_ewma ? alpha_ * t + (1 - alpha_) * st.step_seconds : t;
        st.have_ewma = true;
        st.recent.push_back(t);
        if (st.recent.size() > kRecent) st.recent.erase(st.recent.begin());
        st.fresh = true;
        ++st.windows;
        return true;
    }
    /// Marks every device's last window as seen (a window without a step,
    /// or still being extended, leaves a device not fresh).
    void start_window() {
        for (auto& [d, st] : dev_) st.fresh = false;
    }
    /// Whether any device completed a window since start_window().
    bool any_fresh() const {
        for (const auto& [d, st] : dev_)
            if (st.fresh) return true;
        return false;
    }
    /// The mean of the device's last `n` completed windows, if it has that many.
    std::optional<double> recent_mean(DeviceId d, std::size_t n) const {
        const auto it = dev_.find(d);
        if (it == dev_.end() || it->second.recent.size() < n || n == 0) return std::nullopt;
        double sum = 0;
        for (std::size_t i = it->second.recent.size() - n; i < it->second.recent.size(); ++i) sum += it->second.recent[i];
        return sum / static_cast<double>(n);
    }
    /// The mean step time over the newest `min_steps` or more steps, from the
    /// samples fed since the device's blocks last changed, wherever window
    /// boundaries fall: unlike recent_mean(), it does not reach back into a
    /// window that began before a change of speed. nullopt when fewer steps
    /// were sampled, or when those steps include a prompt step.
    std::optional<double> newest_mean(DeviceId d, std::uint64_t min_steps) const {
        const auto it = dev_.find(d);
        if (it == dev_.end() || it->second.history.size() < 2) return std::nullopt;
        const auto& h = it->second.history;
        const auto& last = h.back();
        for (std::size_t i = h.size() - 1; i-- > 0;) {
            const auto steps = last.steps - h[i].steps;
            if (steps < std::max<std::uint64_t>(min_steps, 1)) continue;
            if (last.tokens != 0 && last.tokens - h[i].tokens != steps) return std::nullopt;
            return (last.busy_seconds - h[i].busy_seconds) / static_cast<double>(steps);
        }
        return std::nullopt;
    }
    /// After blocks moved, step times change: keep the speeds, restart the step times.
    void blocks_changed(DeviceId d, double new_step_seconds) {
        auto& st = dev_[d];
        st.step_seconds = new_step_seconds;
        st.recent.clear();
        st.history.clear();
    }
    std::optional<double> step_seconds(DeviceId d) const {
        const auto it = dev_.find(d);
        if (it == dev_.end() || !it->second.have_ewma) return std::nullopt;
        return it->second.step_seconds;
    }

    /// What the monitor knows of one device, for stats and traces.
    struct DeviceStats {
        DeviceId device = 0;
        std::optional<double> ewma_step_seconds;  // smoothed compute time per step
        std::optional<double> last_step_seconds;  // the newest window's
        std::uint64_t windows = 0;                // windows closed so far
    };
    std::vector<DeviceStats> stats() const {
        std::vector<DeviceStats> out;
        for (const auto& [d, st] : dev_) {
            DeviceStats x;
            x.device = d;
            if (st.have_ewma) x.ewma_step_seconds = st.step_seconds;
            if (!st.recent.empty()) x.last_step_seconds = st.recent.back();
            x.windows = st.windows;
            out.push_back(x);
        }
        return out;
    }

private:
    struct Dev {
        DeviceSample prev{};
        bool have_prev = false;
        bool have_ewma = false;
        double step_seconds = 0;
        std::vector<double> recent;  // the newest windows' raw step times
        std::vector<DeviceSample> history;  // the newest samples, for newest_mean()
        bool fresh = false;
        std::uint64_t windows = 0;
    };
    static constexpr std::size_t kRecent = 16;
    static constexpr std::size_t kHistory = 64;
    double alpha_;
    std::uint64_t min_steps_;
    std::map<DeviceId, Dev> dev_;
};

/// The best contiguous split, in the order of `devices`, of blocks with
/// costs `block_cost` (e.g. weight bytes) over devices of `speed` (cost per
/// second) and `budget` (cost units of memory, or +inf). A device may get no
/// blocks (it is left out). Returns the plan and its bottleneck time, or
/// nullopt when the blocks do not fit.
struct SplitResult {
    Plan plan;
    double bottleneck = 0;
};
inline std::optional<SplitResult> best_split(const std::vector<double>& block_cost, const std::vector<double>& block_memory,
                                             const std::vector<DeviceId>& devices, const std::vector<double>& speed,
                                             const std::vector<double>& budget) {
    const std::size_t B = block_cost.size(), D = devices.size();
    constexpr double inf = std::numeric_limits<double>::infinity();
    std::vector<double> pc(B + 1, 0), pm(B + 1, 0);  // prefix sums
    for (std::size_t b = 0; b < B; ++b) {
        pc[b + 1] = pc[b] + block_cost[b];
        pm[b + 1] = pm[b] + block_memory[b];
    }
    // f[d][b]: best bottleneck placing blocks [b, B) on devices [d, D).
    std::vector<std::vector<double>> f(D + 1, std::vector<double>(B + 1, inf));
    std::vector<std::vector<std::size_t>> cut(D + 1, std::vector<std::size_t>(B + 1, 0));
    f[D][B] = 0;
    for (std::size_t d = D; d-- > 0;) {
        for (std::size_t b = 0; b <= B; ++b) {
            for (std::size_t e = b; e <= B; ++e) {  // device d takes [b, e)
                if (pm[e] - pm[b] > budget[d]) break;
                const double t = e > b ? (pc[e] - pc[b]) / speed[d] : 0;
                const double v = std::max(t, f[d + 1][e]);
                if (v < f[d][b]) {
                    f[d][b] = v;
                    cut[d][b] = e;
                }
            }
        }
    }
    if (f[0][0] == inf) return std::nullopt;
    SplitResult r;
    r.bottleneck = f[0][0];
    std::size_t b = 0;
    for (std::size_t d = 0; d < D; ++d) {
        const auto e = cut[d][b];
        if (e > b) r.plan.stages.push_back({devices[d], {static_cast<std::int64_t>(b), static_cast<std::int64_t>(e)}});
        b = e;
    }
    return r;
}

/// Decides, window by window, whether to move blocks.
class Balancer {
public:
    struct Decision {
        Plan next;
        double current_bottleneck = 0;  // predicted from measured speeds, seconds per step
        double new_bottleneck = 0;
        std::string why;
    };

    Balancer(BalancerOptions opt, std::vector<double> block_cost, std::vector<double> block_memory)
        : opt_(opt), monitor_(opt.alpha, opt.min_window_steps), cost_(std::move(block_cost)), memory_(std::move(block_memory)) {}

    Monitor& monitor() noexcept { return monitor_; }
    const std::vector<double>& block_cost() const noexcept { return cost_; }
    int moves() const noexcept { return moves_; }
    std::size_t windows() const noexcept { return windows_; }

    /// One window: `plan` is the current plan, `samples` each device's
    /// cumulative counters, `budget` each device's memory budget (in the
    /// units of block_memory), `tokens_left` the tokens still to generate
    /// over all requests. `standby`: devices that hold no blocks but may
    /// take some, with their speeds (cost units per second, e.g. predicted
    /// from a profile) and budgets in `budget`; they come after the plan's
    /// devices in the ring. Returns a move to make now, if any.
    std::optional<Decision> window(const Plan& plan, const std::map<DeviceId, DeviceSample>& samples,
                                   const std::map<DeviceId, double>& budget, double tokens_left,
                                   const std::map<DeviceId, double>& standby = {}) {
        ++windows_;
        monitor_.start_window();
        for (const auto& [d, s] : samples) monitor_.add(d, s);
        if (cooldown_ > 0) {
            --cooldown_;
            streak_ = 0;
            return std::nullopt;
        }
        check_last_move(plan);
        if (last_move_) return std::nullopt;  // the last move is not measured yet: no new one before it is
        // No device finished a window (slow steps extend windows to
        // `min_window_steps`): nothing new to judge, the streak stands.
        if (!monitor_.any_fresh()) return std::nullopt;
        // The drift must show both in the smoothed times (not a single odd
        // window) and in this window's own times (not the tail of a blip the
        // EWMA still remembers), `patience` windows in a row.
        const auto smoothed = evaluate(plan, budget, standby, [&](DeviceId d) { return monitor_.step_seconds(d); });
        const auto latest = evaluate(plan, budget, standby, [&](DeviceId d) { return monitor_.recent_mean(d, 1); });
        const double threshold = this->threshold();
        if (!smoothed || !latest || smoothed->gain <= threshold || latest->gain <= threshold) {
            streak_ = 0;
            return std::nullopt;
        }
        if (++streak_ < opt_.patience) return std::nullopt;
        streak_ = 0;
        // The streak's windows must show the gain on their mean too (no
        // lag from before them) ...
        const auto n = static_cast<std::size_t>(std::max(1, opt_.patience));
        const auto streak = evaluate(plan, budget, standby, [&](DeviceId d) { return monitor_.recent_mean(d, n); });
        if (!streak || streak->gain <= threshold) return std::nullopt;
        // ... but the move is sized from the newest `min_window_steps` steps:
        // the first of the streak's windows can begin before a slowdown, and
        // a move planned on it is too small (experiment 3 measured 1.05x
        // instead of about 1.5x). Without such a span, the streak's mean.
        const auto e = evaluate(plan, budget, standby, [&](DeviceId d) {
            const auto t = monitor_.newest_mean(d, opt_.min_window_steps);
            return t ? t : monitor_.recent_mean(d, n);
        });
        if (!e || e->gain <= threshold) return std::nullopt;
        // Worth it only if the steps still to run save more than the move costs.
        if ((e->current - e->best.bottleneck) * tokens_left <= opt_.migration_seconds) return std::nullopt;
        cooldown_ = opt_.cooldown;
        ++moves_;
        last_move_ = LastMove{e->current, e->best.bottleneck};
        // Predicted step times under the new plan, so the monitor's next
        // windows compare against the right baseline.
        for (std::size_t i = 0; i < e->devices.size(); ++i) {
            double c = 0;
            if (const auto* st = e->best.plan.stage_of_device(e->devices[i]))
                for (auto b = st->blocks.begin; b < st->blocks.end; ++b) c += cost_[static_cast<std::size_t>(b)];
            monitor_.blocks_changed(e->devices[i], c / e->speed[i]);
        }
        Decision d;
        d.next = e->best.plan;
        d.current_bottleneck = e->current;
        d.new_bottleneck = e->best.bottleneck;
        d.why = "bottleneck " + fmt_ms(e->current) + " ms/step, " + fmt_ms(e->best.bottleneck) + " predicted after the move";
        return d;
    }

    void set_migration_seconds(double s) noexcept { opt_.migration_seconds = s; }

    /// The gain a move must be predicted to bring now: the configured
    /// threshold, doubled for every recent move that delivered less than half
    /// of what it predicted (and halved back by each move that delivered).
    /// When the cost model is wrong for this machine (fixed per-step costs
    /// that do not move with blocks, say), its predictions keep promising
    /// gains that never come; this bounds the moves it can make to a few
    /// instead of letting it move blocks back and forth.
    double threshold() const noexcept { return std::min(0.95, opt_.threshold * skepticism_); }
    /// Moves that delivered less than half their predicted gain.
    int failed_moves() const noexcept { return failed_moves_; }

private:
    struct LastMove {
        double before = 0;     // measured bottleneck before the move, seconds per step
        double predicted = 0;  // predicted after it
    };

    // The first window after a move's cooldown: did the measured bottleneck
    // (the mean of the windows since) fall by at least half the predicted gain?
    void check_last_move(const Plan& plan) {
        if (!last_move_) return;
        const auto n = static_cast<std::size_t>(std::max(1, opt_.patience));
        double now = 0;
        for (const auto& st : plan.stages) {
            const auto t = monitor_.recent_mean(st.device, n);
            if (!t) return;  // not measured yet: check at the next window
            now = std::max(now, *t);
        }
        const auto m = *last_move_;
        last_move_.reset();
        const double predicted_gain = m.before - m.predicted, realized_gain = m.before - now;
        if (realized_gain < 0.5 * predicted_gain) {
            ++failed_moves_;
            if (opt_.learn_from_moves) skepticism_ *= 2;
        } else {
            skepticism_ = std::max(1.0, skepticism_ / 2);
        }
    }

    struct Evaluation {
        std::vector<DeviceId> devices;
        std::vector<double> speed;  // cost units per second
        double current = 0;         // the current plan's bottleneck, seconds per step
        SplitResult best;
        double gain = 0;            // (current - best) / current
    };

    static std::string fmt_ms(double s) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2f", s * 1e3);
        return buf;
    }

    // Speeds from the step times `time_of` gives, and the best split under them.
    template <typename TimeOf>
    std::optional<Evaluation> evaluate(const Plan& plan, const std::map<DeviceId, double>& budget,
                                       const std::map<DeviceId, double>& standby, TimeOf time_of) const {
        Evaluation e;
        std::vector<double> mem;
        for (const auto& st : plan.stages) {
            const auto t = time_of(st.device);
            if (!t || *t <= 0) return std::nullopt;  // not measured (in this window)
            double c = 0;
            for (auto b = st.blocks.begin; b < st.blocks.end; ++b) c += cost_[static_cast<std::size_t>(b)];
            if (c <= 0) return std::nullopt;
            e.devices.push_back(st.device);
            e.speed.push_back(c / *t);
            const auto bi = budget.find(st.device);
            mem.push_back(bi == budget.end() ? std::numeric_limits<double>::infinity() : bi->second);
            e.current = std::max(e.current, *t);
        }
        for (const auto& [d, speed] : standby) {
            if (plan.stage_of_device(d) || !(speed > 0) || !std::isfinite(speed)) continue;
            e.devices.push_back(d);
            e.speed.push_back(speed);
            const auto bi = budget.find(d);
            mem.push_back(bi == budget.end() ? std::numeric_limits<double>::infinity() : bi->second);
        }
        auto best = best_split(cost_, memory_, e.devices, e.speed, mem);
        if (!best || best->plan == plan) return std::nullopt;
        e.best = std::move(*best);
        e.gain = e.current > 0 ? (e.current - e.best.bottleneck) / e.current : 0;
        return e;
    }

    BalancerOptions opt_;
    Monitor monitor_;
    std::vector<double> cost_, memory_;
    int streak_ = 0;
    int cooldown_ = 0;
    int moves_ = 0;
    std::size_t windows_ = 0;
    std::optional<LastMove> last_move_;
    double skepticism_ = 1;
    int failed_moves_ = 0;
};

}  // namespace tandem
