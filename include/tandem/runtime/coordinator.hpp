// The coordinator: the pipeline's "header" device. It owns the requests
// (prompt and generated tokens, sampler state), admits them under the
// scheduler's limit of K in flight, sends each step to the device running the
// embedding, samples from the logits that come back from the last device, and
// runs actions (moving blocks) at step boundaries when asked.
//
// A request has at most one step in the pipeline at a time (decoding is
// autoregressive); K requests in flight keep up to K devices busy at once.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <asio/awaitable.hpp>

#include "tandem/model/sampler.hpp"
#include "tandem/runtime/routing.hpp"
#include "tandem/runtime/trace.hpp"
#include "tandem/scheduler/scheduler.hpp"
#include "tandem/transport/transport.hpp"

namespace tandem {

struct RequestSpec {
    std::vector<std::int32_t> prompt;   // token ids, BOS included where the model wants it
    std::int32_t max_tokens = 64;
    SamplerConfig sampler{};
    std::vector<std::int32_t> stop_tokens;
    /// Sees each generated token as soon as it is sampled; return false to stop.
    std::function<bool(RequestId, std::int32_t)> on_token;
    /// Sees the logits (n_vocab) of every step before sampling (tests, tools).
    std::function<void(RequestId, std::span<const float>)> on_logits;
};

/// One device loss the coordinator recovered from.
struct RecoveryEvent {
    DeviceId lost = 0;
    std::string why;
    std::uint64_t at_token = 0;      // tokens sampled (all requests) when the loss was seen
    std::size_t requests = 0;        // active requests replayed
    std::uint64_t replayed_steps = 0;
    double replan_seconds = 0;       // detection -> pipeline runnable without the device
    double recovery_seconds = 0;     // detection -> every replayed request sampled its next token
};

struct RequestResult {
    RequestId id = 0;
    std::vector<std::int32_t> tokens;   // generated (not the prompt)
    std::string error;                  // empty on success
    double first_token_seconds = 0;     // from admission to the first sampled token
    double seconds = 0;                 // from admission to the last token
};

template <Transport T, Scheduler Sch>
class Coordinator {
public:
    using clock = std::chrono::steady_clock;
    /// An action run when no step is in the pipeline (e.g. moving blocks).
    using BoundaryAction = std::function<asio::awaitable<void>()>;
    /// Makes the pipeline runnable without a lost device (new plan in the
    /// routing, survivors holding their new blocks). Throwing ends run().
    using RecoveryHandler = std::function<asio::awaitable<void>(DeviceId lost, const std::string& why)>;

    Coordinator(T& transport, Sch& scheduler, Routing& routing, TraceRecorder* trace = nullptr)
        : transport_(transport), scheduler_(scheduler), routing_(routing), trace_(trace) {
        if (trace_) trace_->name_track(transport_.self(), "coordinator");
    }

    /// Queues a request; it starts when the scheduler admits it.
    RequestId submit(RequestSpec spec) {
        if (spec.prompt.empty()) throw ConfigError("a request needs at least one prompt token");
        const RequestId id = next_id_++;
        auto r = std::make_unique<Request>();
        r->id = id;
        r->spec = std::move(spec);
        r->sampler.emplace(r->spec.sampler);
        for (auto t : r->spec.prompt) r->sampler->accept(t);
        tokens_left_ += static_cast<std::uint64_t>(std::max<std::int32_t>(0, r->spec.max_tokens));
        waiting_.push_back(id);
        requests_.emplace(id, std::move(r));
        return id;
    }

    /// Runs `action` at the next step boundary: new steps are held back until
    /// every in-flight step has returned, then the action runs, then the held
    /// steps go out. `after_steps` delays it until that many tokens were sampled.
    void at_boundary(BoundaryAction action, std::uint64_t after_steps = 0) {
        boundary_actions_.push_back({std::move(action), sampled_ + after_steps});
    }

    /// Survive lost devices: when one is lost (its link fails, or a device
    /// reports it unreachable), `handler` re-plans without it, then every
    /// active request is replayed from its token history, with the same batch
    /// structure as the first time (the prompt as one step, then one step per
    /// generated token), so each request's text is exactly what it would have
    /// been. Without a handler, a lost device that holds blocks ends run() with
    /// PeerLostError; one on standby (no blocks, so no step) is only dropped.
    void on_device_lost(RecoveryHandler handler) { recovery_ = std::move(handler); }
    const std::vector<RecoveryEvent>& recoveries() const noexcept { return recoveries_; }

    /// Runs until every submitted request has finished; returns them by id order.
    asio::awaitable<std::vector<RequestResult>> run() {
        for (;;) {
            co_await maybe_run_boundary();
            while (!pausing() && scheduler_.admit(active_, waiting_.size())) co_await admit_one();
            // Done; boundary actions whose step count was never reached lapse.
            if (active_ == 0 && waiting_.empty()) break;
            if (in_pipeline_ == 0) {
                if (pausing()) continue;  // everything is held: the action runs next
                throw ConfigError("coordinator stalled with nothing in flight");
            }
            Message m = co_await transport_.receive();
            co_await on_message(std::move(m));
        }
        std::vector<RequestResult> out;
        for (auto& [id, r] : requests_) out.push_back(std::move(r->result));
        requests_.clear();
        co_return out;
    }

    std::uint64_t sampled_tokens() const noexcept { return sampled_; }
    /// Tokens still to generate over all requests (at most; a stop token ends
    /// a request early). Safe to read from any thread.
    std::uint64_t tokens_left() const noexcept { return tokens_left_.load(std::memory_order_relaxed); }

private:
    struct Request {
        RequestId id = 0;
        RequestSpec spec;
        std::optional<Sampler> sampler;
        RequestResult result;
        std::int32_t next_pos = 0;
        std::uint64_t step = 0;
        clock::time_point admitted;
        bool started = false;         // admitted
        bool finished = false;
        bool in_flight = false;       // a step is in the pipeline
        std::uint64_t awaiting = 0;   // the step whose output is expected; older ones are stale
        std::optional<Message> held;  // next step, held during a boundary action
        std::deque<Message> replay;   // steps still to replay after a device loss
    };
    struct PendingAction {
        BoundaryAction action;
        std::uint64_t at_sampled;
    };

    bool pausing() const noexcept {
        return !boundary_actions_.empty() && sampled_ >= boundary_actions_.front().at_sampled;
    }

    asio::awaitable<void> maybe_run_boundary() {
        while (pausing() && in_pipeline_ == 0) {
            auto action = std::move(boundary_actions_.front().action);
            boundary_actions_.erase(boundary_actions_.begin());
            const auto t0 = clock::now();
            co_await action();
            if (trace_) trace_->span(transport_.self(), "boundary action", t0, clock::now());
            if (pausing()) continue;
            for (auto& [id, r] : requests_)
                if (r->held) {
                    Message m = std::move(*r->held);
                    r->held.reset();
                    co_await send_step(std::move(m));
                }
        }
    }

    asio::awaitable<void> admit_one() {
        const RequestId id = waiting_.front();
        waiting_.pop_front();
        auto& r = *requests_.at(id);
        r.admitted = clock::now();
        r.started = true;
        ++active_;
        Message m;
        m.kind = MessageKind::Activations;
        m.request = id;
        m.step = 0;
        m.first_block = 0;
        m.tokens = r.spec.prompt;
        for (std::size_t i = 0; i < r.spec.prompt.size(); ++i) m.positions.push_back(static_cast<std::int32_t>(i));
        r.next_pos = static_cast<std::int32_t>(r.spec.prompt.size());
        co_await send_step(std::move(m));
    }

    asio::awaitable<void> send_step(Message m) {
        auto& r = *requests_.at(m.request);
        r.awaiting = m.step;
        r.in_flight = true;
        ++in_pipeline_;
        DeviceId to = 0;
        std::string failure;
        const auto t0 = clock::now();
        const auto args = trace_ ? "\"request\":" + std::to_string(m.request) + ",\"step\":" + std::to_string(m.step)
                                 : std::string();
        try {
            to = routing_.device_of_block(0);
            co_await transport_.send(to, std::move(m));
        } catch (const NetworkError& e) {
            failure = e.what();
        }
        if (trace_) trace_->span(transport_.self(), "send", t0, clock::now(), args);
        if (!failure.empty()) co_await handle_loss(to, failure);
    }

    // The steps that rebuild a request's state on the devices: its prompt, then
    // each generated token; the last one's logits give the next token.
    std::deque<Message> history_steps(Request& r) {
        std::deque<Message> q;
        Message pre;
        pre.kind = MessageKind::Activations;
        pre.request = r.id;
        pre.step = ++r.step;
        pre.tokens = r.spec.prompt;
        for (std::size_t i = 0; i < r.spec.prompt.size(); ++i) pre.positions.push_back(static_cast<std::int32_t>(i));
        q.push_back(std::move(pre));
        for (std::size_t i = 0; i < r.result.tokens.size(); ++i) {
            Message s;
            s.kind = MessageKind::Activations;
            s.request = r.id;
            s.step = ++r.step;
            s.tokens = {r.result.tokens[i]};
            s.positions = {static_cast<std::int32_t>(r.spec.prompt.size() + i)};
            q.push_back(std::move(s));
        }
        return q;
    }

    asio::awaitable<void> handle_loss(DeviceId lost, std::string why) {
        if (lost_.count(lost)) co_return;  // already recovered from (a late report)
        // A device on standby holds no blocks and no step: its loss costs nothing.
        if (!routing_.plan().stage_of_device(lost)) {
            lost_.insert(lost);
            co_return;
        }
        if (!recovery_) throw PeerLostError("device " + std::to_string(lost), why);
        lost_.insert(lost);
        const auto t0 = clock::now();
        RecoveryEvent ev;
        ev.lost = lost;
        ev.why = why;
        ev.at_token = sampled_;
        co_await recovery_(lost, why);
        ev.replan_seconds = std::chrono::duration<double>(clock::now() - t0).count();
        // Every step in the pipeline is lost with it: replay each active request.
        const auto epoch = ++recovery_epoch_;
        in_pipeline_ = 0;
        std::vector<Request*> active;
        for (auto& [id, r] : requests_) {
            if (!r->started || r->finished) continue;
            r->held.reset();
            r->in_flight = false;
            r->replay = history_steps(*r);
            ev.replayed_steps += r->replay.size();
            active.push_back(r.get());
        }
        ev.requests = active.size();
        recovering_.clear();
        for (auto* r : active) recovering_.insert(r->id);
        recovery_started_ = t0;
        recoveries_.push_back(ev);
        for (auto* r : active) {
            Message first = std::move(r->replay.front());
            r->replay.pop_front();
            co_await send_step(std::move(first));
            if (recovery_epoch_ != epoch) co_return;  // another loss during the replay restarted it
        }
    }

    asio::awaitable<void> on_message(Message m) {
        if (m.kind == MessageKind::Error && (m.request == 0 || m.lost_device != 0)) {
            // A device failed (its link), or a device could not reach another.
            co_await handle_loss(m.request == 0 ? m.from : m.lost_device, m.text);
            co_return;
        }
        const auto it = requests_.find(m.request);
        if (it == requests_.end() || (m.kind != MessageKind::Logits && m.kind != MessageKind::Error)) co_return;
        auto& r = *it->second;
        if (r.finished || !r.in_flight || m.step != r.awaiting) co_return;  // stale: from before a recovery
        r.in_flight = false;
        --in_pipeline_;
        if (m.kind == MessageKind::Error) {
            r.result.error = m.text;
            co_await finish(r);
            co_return;
        }
        const Tensor* logits = m.find("logits");
        if (logits == nullptr || logits->data.empty()) {
            r.result.error = "device " + std::to_string(m.from) + " returned no logits";
            co_await finish(r);
            co_return;
        }
        if (!r.replay.empty()) {  // rebuilding after a device loss: this output is already known
            Message next = std::move(r.replay.front());
            r.replay.pop_front();
            co_await send_step(std::move(next));
            co_return;
        }
        if (r.spec.on_logits) r.spec.on_logits(r.id, logits->data);
        const auto t_sample = clock::now();
        const auto tok = r.sampler->sample(logits->data);
        if (trace_)
            trace_->span(transport_.self(), "sample", t_sample, clock::now(),
                         "\"request\":" + std::to_string(r.id) + ",\"step\":" + std::to_string(m.step));
        ++sampled_;
        if (tokens_left_ > 0) --tokens_left_;
        if (recovering_.erase(r.id) && recovering_.empty() && !recoveries_.empty())
            recoveries_.back().recovery_seconds = std::chrono::duration<double>(clock::now() - recovery_started_).count();
        r.result.tokens.push_back(tok);
        if (r.result.tokens.size() == 1)
            r.result.first_token_seconds = std::chrono::duration<double>(clock::now() - r.admitted).count();
        const bool keep_going = !r.spec.on_token || r.spec.on_token(r.id, tok);
        const bool stop = std::find(r.spec.stop_tokens.begin(), r.spec.stop_tokens.end(), tok) != r.spec.stop_tokens.end();
        if (!keep_going || stop || static_cast<std::int32_t>(r.result.tokens.size()) >= r.spec.max_tokens) {
            co_await finish(r);
            co_return;
        }
        Message next;
        next.kind = MessageKind::Activations;
        next.request = r.id;
        next.step = ++r.step;
        next.first_block = 0;
        next.tokens = {tok};
        next.positions = {r.next_pos++};
        if (pausing()) {
            r.held = std::move(next);
        } else {
            co_await send_step(std::move(next));
        }
    }

    asio::awaitable<void> finish(Request& r) {
        r.finished = true;
        recovering_.erase(r.id);
        const auto unused = static_cast<std::uint64_t>(
            std::max<std::int64_t>(0, r.spec.max_tokens - static_cast<std::int64_t>(r.result.tokens.size())));
        tokens_left_ -= std::min<std::uint64_t>(unused, tokens_left_);
        r.result.id = r.id;
        r.result.seconds = std::chrono::duration<double>(clock::now() - r.admitted).count();
        --active_;
        // Every device drops the request's caches.
        const auto stages = routing_.plan().stages;
        for (const auto& s : stages) {
            Message rel;
            rel.kind = MessageKind::Release;
            rel.request = r.id;
            try {
                co_await transport_.send(s.device, std::move(rel));
            } catch (const NetworkError&) {
                // A device that is gone has nothing left to release.
            }
        }
    }

    T& transport_;
    Sch& scheduler_;
    Routing& routing_;
    TraceRecorder* trace_;
    std::map<RequestId, std::unique_ptr<Request>> requests_;
    std::deque<RequestId> waiting_;
    std::vector<PendingAction> boundary_actions_;
    RequestId next_id_ = 1;
    std::size_t active_ = 0;       // admitted, not finished
    std::size_t in_pipeline_ = 0;  // steps sent whose logits have not come back
    std::uint64_t sampled_ = 0;
    std::atomic<std::uint64_t> tokens_left_{0};
    RecoveryHandler recovery_;
    std::set<DeviceId> lost_;
    std::vector<RecoveryEvent> recoveries_;
    std::set<RequestId> recovering_;  // replayed requests that have not sampled again yet
    clock::time_point recovery_started_{};
    std::uint64_t recovery_epoch_ = 0;
};

}  // namespace tandem
