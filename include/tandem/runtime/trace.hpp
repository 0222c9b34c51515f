// Chrome / Perfetto trace-event recorder: one track per device, with spans for
// compute, send, receive and idle, written as JSON that chrome://tracing and
// ui.perfetto.dev open directly.
//
// Thread-safe; recording is a mutex and a vector push (a few hundred ns), so it
// can stay on in benchmarks. Disabled recorders cost one branch. A recorder
// keeps at most `max_events` spans (later ones are counted as dropped), so a
// worker that records for a long session has bounded memory.
//
// Traces of several processes merge into one: a worker's recorder hands its
// spans over with take() (times relative to its own origin), and the
// coordinator adds them with add_foreign() after shifting them onto its own
// clock (runtime/remote_pipeline.hpp estimates the offset from the shortest
// of a few small round trips).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tandem/core/error.hpp"

namespace tandem {

class TraceRecorder {
public:
    using clock = std::chrono::steady_clock;

    static constexpr std::size_t kDefaultMaxEvents = 1u << 20;

    explicit TraceRecorder(bool enabled = true, std::size_t max_events = kDefaultMaxEvents)
        : enabled_(enabled), max_events_(max_events), origin_(clock::now()) {}

    bool enabled() const noexcept { return enabled_.load(std::memory_order_relaxed); }
    /// Starts or stops recording (a worker records only when its coordinator asks).
    void set_enabled(bool on) noexcept { enabled_.store(on, std::memory_order_relaxed); }
    clock::time_point origin() const noexcept { return origin_; }
    /// Microseconds from the origin to `t` (the time base of every span).
    double micros(clock::time_point t) const {
        return std::chrono::duration<double, std::micro>(t - origin_).count();
    }

    /// Names track `tid` (e.g. "device 1 (phone-low)"), recording or not.
    void name_track(std::uint32_t tid, std::string name) {
        std::lock_guard lock(mutex_);
        tracks_[tid] = std::move(name);
    }
    std::map<std::uint32_t, std::string> tracks() const {
        std::lock_guard lock(mutex_);
        return tracks_;
    }

    /// A complete span [t0, t1) on track `tid`; `args` is a JSON object body
    /// such as "\"request\":3,\"step\":7" (may be empty).
    void span(std::uint32_t tid, const char* name, clock::time_point t0, clock::time_point t1, std::string args = {}) {
        if (!enabled()) return;
        push({tid, name, micros(t0), micros(t1) - micros(t0), std::move(args)});
    }

    /// A counter sample at `t`: `args` is a JSON object body of numeric
    /// series, such as "\"d1\":12.5,\"d2\":3.1"; each series is one line
    /// of the counter track `name`.
    void counter(const char* name, clock::time_point t, std::string args) {
        if (!enabled()) return;
        Span s{0, name, micros(t), 0, std::move(args)};
        s.counter = true;
        push(std::move(s));
    }

    /// One recorded span, as take() hands it over and add_foreign() takes it.
    struct Span {
        std::uint32_t tid = 0;
        std::string name;
        double ts_us = 0;   // from the recorder's origin
        double dur_us = 0;
        std::string args;   // JSON object body
        bool counter = false;  // a counter sample (ph "C"), not a span
    };

    /// Removes and returns every span recorded so far (and how many were
    /// dropped over the cap since the last take).
    std::vector<Span> take(std::uint64_t* dropped = nullptr) {
        std::lock_guard lock(mutex_);
        std::vector<Span> out = std::move(events_);
        events_.clear();
        if (dropped) *dropped = dropped_;
        dropped_ = 0;
        return out;
    }

    /// Adds spans recorded elsewhere; `shift_us` moves their times onto this
    /// recorder's origin. Spans are recorded even when this recorder is off.
    void add_foreign(std::vector<Span> spans, double shift_us) {
        for (auto& sp : spans) {
            sp.ts_us += shift_us;
            push(std::move(sp));
        }
    }

    /// Records a span from construction to destruction.
    class Scope {
    public:
        Scope(TraceRecorder* r, std::uint32_t tid, const char* name, std::string args = {})
            : r_(r), tid_(tid), name_(name), args_(std::move(args)), t0_(clock::now()) {}
        ~Scope() {
            if (r_) r_->span(tid_, name_, t0_, clock::now(), std::move(args_));
        }
        Scope(const Scope&) = delete;
        Scope& operator=(const Scope&) = delete;

    private:
        TraceRecorder* r_;
        std::uint32_t tid_;
        const char* name_;
        std::string args_;
        clock::time_point t0_;
    };

    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return events_.size();
    }

    /// Total microseconds of spans named `name` on track `tid`.
    double total_us(std::uint32_t tid, const std::string& name) const {
        std::lock_guard lock(mutex_);
        double t = 0;
        for (const auto& e : events_)
            if (e.tid == tid && name == e.name) t += e.dur_us;
        return t;
    }

    std::string json() const {
        std::lock_guard lock(mutex_);
        std::string out = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
        bool first = true;
        auto sep = [&] {
            if (!first) out += ",\n";
            first = false;
        };
        sep();
        out += R"({"name":"process_name","ph":"M","pid":1,"args":{"name":"tandem pipeline"}})";
        for (const auto& [tid, name] : tracks_) {
            sep();
            out += R"({"name":"thread_name","ph":"M","pid":1,"tid":)" + std::to_string(tid) +
                   R"(,"args":{"name":")" + escape(name) + "\"}}";
            sep();
            out += R"({"name":"thread_sort_index","ph":"M","pid":1,"tid":)" + std::to_string(tid) +
                   R"(,"args":{"sort_index":)" + std::to_string(tid) + "}}";
        }
        for (const auto& e : events_) {
            sep();
            if (e.counter) {
                out += R"({"name":")" + escape(e.name) + R"(","ph":"C","pid":1,"ts":)" + fmt(e.ts_us) + ",\"args\":{" +
                       e.args + "}}";
                continue;
            }
            out += R"({"name":")" + escape(e.name) + R"(","cat":"pipeline","ph":"X","pid":1,"tid":)" +
                   std::to_string(e.tid) + ",\"ts\":" + fmt(e.ts_us) + ",\"dur\":" + fmt(e.dur_us) +
                   ",\"args\":{" + e.args + "}}";
        }
        out += "\n]}\n";
        return out;
    }

    void write(const std::string& path) const {
        std::ofstream f(path, std::ios::binary);
        if (!f) throw IoError(path + ": cannot write trace");
        f << json();
        if (!f) throw IoError(path + ": error writing trace");
    }

private:
    using Event = Span;

    void push(Event e) {
        std::lock_guard lock(mutex_);
        if (events_.size() >= max_events_) {
            ++dropped_;
            return;
        }
        events_.push_back(std::move(e));
    }
    static std::string fmt(double v) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3f", v);
        return buf;
    }
    static std::string escape(const std::string& s) {
        std::string o;
        for (char c : s) {
            if (c == '"' || c == '\\') o += '\\';
            if (static_cast<unsigned char>(c) >= 0x20) o += c;
        }
        return o;
    }

    std::atomic<bool> enabled_;
    std::size_t max_events_;
    clock::time_point origin_;
    mutable std::mutex mutex_;
    std::map<std::uint32_t, std::string> tracks_;
    std::vector<Event> events_;
    std::uint64_t dropped_ = 0;
};

}  // namespace tandem
