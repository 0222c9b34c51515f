// The loop every device runs: await work, let the scheduler pick, compute the
// segment, send each result straight to the device that needs it.
//
// Two coroutines share the device's executor (one thread): `receive_loop`
// moves messages from the transport into a local queue, joining a step's
// hidden state with any extra tensors sent straight from non-adjacent
// producers; `compute_loop` waits until the queue holds a complete step, runs
// the scheduler's pick as one batch, and sends the outputs. Waiting is an Asio
// timer wait, so an idle device costs nothing (no busy-waiting).
//
// Generic over the four concepts: the same loop runs in-process over channels
// and in a worker process over TCP.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include "tandem/device/device.hpp"
#include "tandem/runtime/routing.hpp"
#include "tandem/runtime/trace.hpp"
#include "tandem/scheduler/scheduler.hpp"
#include "tandem/segment/segment.hpp"
#include "tandem/transport/transport.hpp"

namespace tandem {

struct DeviceLoopStats {
    std::uint64_t steps = 0;       // work items computed
    std::uint64_t batches = 0;     // forward passes (a batch may hold several steps)
    std::uint64_t tokens = 0;
    double busy_seconds = 0;       // inside Device::compute
    double send_seconds = 0;
    double queue_seconds = 0;      // steps waiting, complete, for the device (summed over steps)
    /// Wall time of each block of the model computed here (indexed by block
    /// id; sized once, never resized, so a stats reader never sees it move).
    /// Without an emulated device's stretching: shares, not device time.
    std::vector<double> block_seconds;
    std::uint64_t relayed = 0;     // messages passed on because blocks moved
    std::uint64_t errors = 0;
};

/// Converts a step's message into the rows of a batch, and back.
namespace detail {

inline void append_to_batch(const Message& m, Batch& b, std::int64_t dim, bool first_stage) {
    const auto n = static_cast<std::int64_t>(m.positions.size());
    // Positions index the KV cache: a step needs at least one, none negative
    // (the context-length bound is the cache's own check).
    if (n == 0)
        throw ProtocolError("device " + std::to_string(m.from), "step of request " + std::to_string(m.request) +
                                                                     " has no positions");
    for (const auto p : m.positions)
        if (p < 0)
            throw ProtocolError("device " + std::to_string(m.from),
                                "step of request " + std::to_string(m.request) + " has position " + std::to_string(p));
    if (first_stage) {
        if (static_cast<std::int64_t>(m.tokens.size()) != n)
            throw ProtocolError("device " + std::to_string(m.from), "step carries " + std::to_string(m.tokens.size()) +
                                                                         " tokens for " + std::to_string(n) + " positions");
        b.tokens.insert(b.tokens.end(), m.tokens.begin(), m.tokens.end());
    } else {
        const Tensor* h = m.find("hidden");
        if (h == nullptr || h->shape.size() != 2 || h->shape[0] != n || h->shape[1] != dim ||
            static_cast<std::int64_t>(h->data.size()) != n * dim)
            throw ProtocolError("device " + std::to_string(m.from),
                                "step of request " + std::to_string(m.request) + " lacks a (" + std::to_string(n) +
                                    ", " + std::to_string(dim) + ") hidden state");
        const auto r0 = b.hidden.rows();
        b.hidden.conservativeResize(r0 + n, dim);
        b.hidden.bottomRows(n) = Eigen::Map<const Activations>(h->data.data(), n, dim);
    }
    for (const auto& t : m.tensors) {
        if (t.name == "hidden") continue;
        if (t.shape.size() != 2 || t.shape[0] != n || static_cast<std::int64_t>(t.data.size()) != t.n_elements())
            throw ProtocolError("device " + std::to_string(m.from), "extra tensor '" + t.name + "' has a bad shape");
        auto& e = b.extras[t.name];
        const auto r0 = e.rows();
        e.conservativeResize(r0 + n, t.shape[1]);
        e.bottomRows(n) = Eigen::Map<const Activations>(t.data.data(), n, t.shape[1]);
    }
    b.positions.insert(b.positions.end(), m.positions.begin(), m.positions.end());
    b.seq_ids.insert(b.seq_ids.end(), static_cast<std::size_t>(n), m.request);
}

inline Tensor rows_tensor(const std::string& name, const Activations& a, std::int64_t r0, std::int64_t n) {
    Tensor t;
    t.name = name;
    t.shape = {n, a.cols()};
    t.data.resize(static_cast<std::size_t>(n * a.cols()));
    Eigen::Map<Activations>(t.data.data(), n, a.cols()) = a.middleRows(r0, n);
    return t;
}

}  // namespace detail

template <Segment S, Device D, Transport T, Scheduler Sch>
class DeviceLoop {
public:
    DeviceLoop(S& segment, D& device, T& transport, Sch& scheduler, const Routing& routing, std::int64_t dim,
               TraceRecorder* trace = nullptr)
        : segment_(segment), device_(device), transport_(transport), scheduler_(scheduler), routing_(routing),
          dim_(dim), trace_(trace) {
        stats_.block_seconds.assign(static_cast<std::size_t>(std::max<std::int64_t>(0, routing_.n_blocks())), 0.0);
        if (trace_) trace_->name_track(transport_.self(), "device " + std::to_string(transport_.self()) + " (" +
                                                                std::string(device_.name()) + ")");
    }

    /// Runs until the transport closes. Spawn it on the device's executor.
    asio::awaitable<void> run() {
        auto ex = co_await asio::this_coro::executor;
        wake_.emplace(ex);
        asio::co_spawn(ex, receive_loop(), asio::detached);
        co_await compute_loop();
    }

    const DeviceLoopStats& stats() const noexcept { return stats_; }
    S& segment() noexcept { return segment_; }
    D& device() noexcept { return device_; }
    bool idle() const noexcept { return ready_.empty() && pending_.empty() && !computing_; }

private:
    using clock = std::chrono::steady_clock;
    struct Key {
        RequestId request;
        std::uint64_t step;
        bool operator<(const Key& o) const { return request != o.request ? request < o.request : step < o.step; }
    };
    struct Pending {
        Message main;          // carries tokens or the hidden state
        bool has_main = false;
        std::vector<Tensor> extras;
    };
    struct Ready {
        Message msg;
        std::uint64_t arrival;
        clock::time_point since;  // when the step became complete (all its inputs here)
    };

    // Extra tensors this segment needs from other devices.
    std::set<std::string> needed_extras() const {
        std::set<std::string> need;
        for (auto& n : segment_.consumes()) need.insert(n);
        for (auto& n : segment_.produces()) need.erase(n);
        return need;
    }

    asio::awaitable<void> receive_loop() {
        for (;;) {
            Message m;
            try {
                m = co_await transport_.receive();
            } catch (const Error&) {
                closed_ = true;
                wake_->cancel();
                co_return;
            }
            if (trace_ && m.received != clock::time_point{} && m.kind == MessageKind::Activations)
                trace_->span(transport_.self(), "receive", m.receive_began, m.received,
                             "\"request\":" + std::to_string(m.request) + ",\"step\":" + std::to_string(m.step) +
                                 ",\"from\":" + std::to_string(m.from));
            on_message(std::move(m));
            wake_->cancel();
        }
    }

    void on_message(Message m) {
        switch (m.kind) {
            case MessageKind::Release:
                segment_.release(m.request);
                return;
            case MessageKind::Activations: break;
            default: return;  // control is handled by the program that owns the loop
        }
        const bool is_extra = m.text == "extra";
        Key key{m.request, m.step};
        auto& p = pending_[key];
        if (is_extra) {
            for (auto& t : m.tensors) p.extras.push_back(std::move(t));
        } else {
            p.main = std::move(m);
            p.has_main = true;
        }
        if (!p.has_main) return;
        const auto need = needed_extras();
        std::size_t have = 0;
        for (const auto& t : p.extras) have += need.count(t.name);
        if (have < need.size()) return;
        Message full = std::move(p.main);
        for (auto& t : p.extras) full.tensors.push_back(std::move(t));
        pending_.erase(key);
        ready_.push_back({std::move(full), arrivals_++, clock::now()});
    }

    asio::awaitable<void> compute_loop() {
        for (;;) {
            if (ready_.empty()) {
                if (closed_) co_return;
                const auto t0 = clock::now();
                wake_->expires_at(clock::time_point::max());
                asio::error_code ec;
                co_await wake_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
                if (trace_ && !ready_.empty()) trace_->span(transport_.self(), "idle", t0, clock::now());
                continue;
            }
            co_await run_batch();
        }
    }

    asio::awaitable<void> run_batch() {
        std::vector<WorkItem> items;
        for (const auto& r : ready_)
            items.push_back({r.msg.request, r.msg.step, static_cast<std::int64_t>(r.msg.positions.size()), r.arrival});
        auto picked = scheduler_.pick(items);
        if (picked.empty()) picked.push_back(0);
        std::vector<Message> work;
        std::set<std::size_t> taken(picked.begin(), picked.end());
        const auto picked_at = clock::now();
        for (auto i : picked) {
            stats_.queue_seconds += std::chrono::duration<double>(picked_at - ready_[i].since).count();
            work.push_back(std::move(ready_[i].msg));
        }
        std::deque<Ready> rest;
        for (std::size_t i = 0; i < ready_.size(); ++i)
            if (!taken.count(i)) rest.push_back(std::move(ready_[i]));
        ready_ = std::move(rest);

        // Steps for blocks this device no longer runs (the plan changed) go on
        // to the current owner.
        const auto blocks = segment_.blocks();
        std::vector<Message> mine;
        for (auto& m : work) {
            if (m.first_block != blocks.begin) {
                // A block outside the model, or inside this segment but not its
                // first, has no owner to relay to: the step fails.
                std::string bad;
                DeviceId to = 0;
                if (m.first_block < 0 || m.first_block >= routing_.n_blocks() || blocks.contains(m.first_block)) {
                    bad = "no device starts at block " + std::to_string(m.first_block);
                } else {
                    try {
                        to = routing_.device_of_block(m.first_block);
                    } catch (const Error& e) {
                        bad = e.what();
                    }
                }
                if (!bad.empty()) {
                    ++stats_.errors;
                    co_await report_failure(m, std::string(device_.name()) + ": step of request " +
                                                   std::to_string(m.request) + ": " + bad);
                    continue;
                }
                ++stats_.relayed;
                co_await send(to, std::move(m));
            } else {
                mine.push_back(std::move(m));
            }
        }
        if (mine.empty()) co_return;

        computing_ = true;
        Batch batch;
        std::vector<std::int64_t> row0;
        std::string failure;
        try {
            for (const auto& m : mine) {
                row0.push_back(batch.size());
                detail::append_to_batch(m, batch, dim_, blocks.begin == 0);
            }
            const auto t0 = clock::now();
            const double busy = device_.compute([&](ThreadPool& pool) {
                if constexpr (requires { segment_.forward(batch, pool, stats_.block_seconds.data()); }) {
                    if (static_cast<std::int64_t>(stats_.block_seconds.size()) >= blocks.end)
                        segment_.forward(batch, pool, stats_.block_seconds.data());
                    else
                        segment_.forward(batch, pool);
                } else {
                    segment_.forward(batch, pool);
                }
            });
            if (trace_)
                trace_->span(transport_.self(), "compute", t0, clock::now(),
                             "\"steps\":" + std::to_string(mine.size()) + ",\"tokens\":" + std::to_string(batch.size()) +
                                 ",\"request\":" + std::to_string(mine.front().request) +
                                 ",\"step\":" + std::to_string(mine.front().step));
            stats_.busy_seconds += busy;
            ++stats_.batches;
            stats_.steps += mine.size();
            stats_.tokens += static_cast<std::uint64_t>(batch.size());
        } catch (const Error& e) {
            failure = std::string(device_.name()) + ": " + e.what();
        }
        if (!failure.empty()) {
            // The step cannot run here: tell the coordinator, request by request.
            computing_ = false;
            ++stats_.errors;
            for (const auto& m : mine) co_await report_failure(m, failure);
            co_return;
        }
        computing_ = false;

        // Outputs: the hidden state to the owner of the next block (or logits to
        // the coordinator), and extras straight to the devices that consume them.
        const bool last = blocks.end == routing_.n_blocks();
        const auto next = routing_.device_of_block(blocks.end);
        const auto produced = segment_.produces();
        std::int64_t logit_row = 0;
        for (std::size_t i = 0; i < mine.size(); ++i) {
            const auto& in = mine[i];
            const auto n = static_cast<std::int64_t>(in.positions.size());
            Message out;
            out.request = in.request;
            out.step = in.step;
            out.positions = in.positions;
            out.first_block = blocks.end;
            if (last) {
                out.kind = MessageKind::Logits;
                out.tensors.push_back(detail::rows_tensor("logits", batch.logits, logit_row, 1));
                ++logit_row;
            } else {
                out.kind = MessageKind::Activations;
                out.tensors.push_back(detail::rows_tensor("hidden", batch.hidden, row0[i], n));
                // Extras this device received and that later blocks still need
                // were sent to them directly by the producer: nothing to relay.
            }
            for (const auto& name : produced) {
                const auto it = batch.extras.find(name);
                if (it == batch.extras.end()) continue;
                for (const auto consumer : routing_.consumers(name)) {
                    if (consumer == transport_.self()) continue;
                    Message x;
                    x.kind = MessageKind::Activations;
                    x.text = "extra";
                    x.request = in.request;
                    x.step = in.step;
                    x.tensors.push_back(detail::rows_tensor(name, it->second, row0[i], n));
                    co_await send(consumer, std::move(x));
                }
            }
            co_await send(next, std::move(out));
        }
    }

    // Tells the coordinator that step `m` failed here.
    asio::awaitable<void> report_failure(const Message& m, std::string why) {
        Message err;
        err.kind = MessageKind::Error;
        err.request = m.request;
        err.step = m.step;
        err.text = std::move(why);
        co_await send(routing_.coordinator(), std::move(err));
    }

    // Sends one message; a link that fails is reported to the coordinator (for
    // the message's request) instead of ending the loop.
    asio::awaitable<void> send(DeviceId to, Message m) {
        const auto t0 = clock::now();
        const auto request = m.request;
        const auto step = m.step;
        const auto args = "\"to\":" + std::to_string(to) + ",\"request\":" + std::to_string(request) +
                          ",\"step\":" + std::to_string(step) + ",\"bytes\":" + std::to_string(m.payload_bytes());
        std::string failure;
        try {
            co_await transport_.send(to, std::move(m));
        } catch (const Error& e) {
            failure = e.what();
        }
        const auto t1 = clock::now();
        stats_.send_seconds += std::chrono::duration<double>(t1 - t0).count();
        if (trace_) trace_->span(transport_.self(), "send", t0, t1, args);
        if (failure.empty()) co_return;
        ++stats_.errors;
        if (to == routing_.coordinator() || request == 0) co_return;  // nobody left to tell
        Message err;
        err.kind = MessageKind::Error;
        err.request = request;
        err.step = step;
        err.text = std::string(device_.name()) + ": cannot send to device " + std::to_string(to) + ": " + failure;
        err.lost_device = to;  // the coordinator re-plans without it (or reports it lost)
        try {
            co_await transport_.send(routing_.coordinator(), std::move(err));
        } catch (const Error&) {
        }
    }

    S& segment_;
    D& device_;
    T& transport_;
    Sch& scheduler_;
    const Routing& routing_;
    std::int64_t dim_;
    TraceRecorder* trace_;
    std::optional<asio::steady_timer> wake_;
    std::map<Key, Pending> pending_;
    std::deque<Ready> ready_;
    std::uint64_t arrivals_ = 0;
    bool closed_ = false;
    bool computing_ = false;
    DeviceLoopStats stats_;
};

}  // namespace tandem
