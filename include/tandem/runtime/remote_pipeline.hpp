// The coordinator's side of a networked pipeline: connects to the workers,
// assigns their blocks, streams each exactly the tensors it lacks, starts
// them, and then generates with the same Coordinator as the in-process
// pipeline, over TCP.
//
// Topology: a ring. The coordinator sends each step to the first worker; every
// worker sends its output straight to the next; the last sends logits back to
// the coordinator. Nothing is relayed through the coordinator.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <limits>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>

#include "tandem/runtime/balancer.hpp"
#include "tandem/runtime/profile_client.hpp"
#include "tandem/runtime/coordinator.hpp"
#include "tandem/runtime/weights.hpp"
#include "tandem/scheduler/fifo_scheduler.hpp"
#include "tandem/transport/tcp_transport.hpp"

namespace tandem {

struct WorkerEndpoint {
    std::string host;
    std::uint16_t port = 0;
    std::string str() const { return host + ":" + std::to_string(port); }

    /// Parses "host:port" (port 0 only where `allow_any_port`, for listening).
    static WorkerEndpoint parse(const std::string& s, bool allow_any_port = false) {
        const auto colon = s.rfind(':');
        if (colon == std::string::npos || colon == 0) throw ConfigError("'" + s + "' is not HOST:PORT");
        WorkerEndpoint e;
        e.host = s.substr(0, colon);
        try {
            const auto p = std::stoul(s.substr(colon + 1));
            if ((p == 0 && !allow_any_port) || p > 65535) throw std::out_of_range("port");
            e.port = static_cast<std::uint16_t>(p);
        } catch (const std::exception&) {
            throw ConfigError("'" + s + "' has no valid port");
        }
        return e;
    }
};

/// What the balancer's monitor measured for one device of the plan, from
/// its workers' counters over real traffic (RemotePipeline::monitor()).
struct DeviceMonitor {
    DeviceId device = 0;
    BlockRange blocks{};
    std::uint64_t steps = 0;                   // steps the device has computed, all told
    std::uint64_t windows = 0;                 // windows the monitor closed for it
    std::optional<double> step_ewma_seconds;   // compute per step, smoothed (what the trigger reads)
    std::optional<double> step_last_seconds;   // compute per step over the newest window
    double queue_per_step_seconds = 0;         // waiting for the device, per step, between the last two polls
    double send_per_step_seconds = 0;          // sending its outputs, per step, between the last two polls
    double speed = 0;  // its blocks' cost (weight bytes) per second of smoothed step time; 0 until measured
    /// Seconds per step of each of its blocks: the smoothed step time split
    /// by each block's share of the wall time the worker measured per block
    /// between the last two polls (over its whole session when it computed
    /// nothing in between; by the blocks' cost when no block time came);
    /// empty until the first window.
    std::vector<double> block_seconds;
    bool block_seconds_measured = false;  // split by measured block times, not by cost
};

struct RemoteOptions {
    TlsConfig* tls = nullptr;  // null: plaintext (only with an explicit --insecure)
    wire::Encoding encoding = wire::Encoding::F32;
    LinkOptions link{};
    std::chrono::milliseconds heartbeat{1000};
    std::size_t max_in_flight = 1;
    std::size_t max_batch = 1;
    std::size_t chunk_bytes = 4u << 20;
    std::function<void(const std::string&)> log;
    /// Weight streaming progress: device, bytes sent so far, bytes to send.
    std::function<void(DeviceId, std::uint64_t, std::uint64_t)> progress;
    TraceRecorder* trace = nullptr;
    /// Failover: when a worker is lost, re-plan over the survivors with this
    /// (default: an even split) and replay every active request. Off when false.
    bool failover = false;
    /// The re-plan: the devices to use (survivors, then those on standby)
    /// and every device profile the pipeline knows (RemotePipeline::profiles()).
    std::function<Plan(const std::vector<DeviceId>& alive, const std::map<DeviceId, DeviceProfile>& profiles)> replan;
    /// With failover: dial a lost worker's address again every
    /// `rejoin_interval`; a worker that answers there joins as a new device
    /// on standby (see RemotePipeline::add_worker). 0: never. Off by default
    /// in the library: an address can be reused by a different worker, which
    /// a cluster key (TLS) tells apart and --insecure does not.
    std::chrono::milliseconds rejoin_interval{0};
    /// Runtime load balancing: every `balance_interval`, read each worker's
    /// step times, and move blocks when the measured bottleneck drifts from
    /// the plan (see runtime/balancer.hpp).
    bool balance = false;
    BalancerOptions balancer{};
    std::chrono::milliseconds balance_interval{250};
    /// Device profiles known before the run (by device id; e.g. from live
    /// profiling). A worker that stands by -- left out by the plan, or joined
    /// later -- is measured when it connects, with `standby_profiler`, if
    /// failover or balance could use it: the balancer then counts it as a
    /// device of that speed, and the re-plan gets its profile. The
    /// standby profile is short (a short prefill: the balancer reads only
    /// the decode times): the worker may share a machine with running ones.
    std::map<DeviceId, DeviceProfile> profiles;
    ProfilerOptions standby_profiler{.reps = 3, .prefill_tokens = 8, .min_run_seconds = 1e-3};
    /// Rebalancing and failover events as they happen (also logged).
    std::function<void(const std::string&)> on_event;
};

class RemotePipeline {
public:
    static constexpr DeviceId kCoordinator = 0;

    /// `plan` names devices 1..N for workers[0..N-1].
    RemotePipeline(std::shared_ptr<const Model> model, std::vector<WorkerEndpoint> workers, Plan plan, RemoteOptions opt)
        : model_(std::move(model)), workers_(workers.begin(), workers.end()), n_workers_(workers_.size()),
          opt_(std::move(opt)),
          scheduler_(opt_.max_in_flight, opt_.max_batch),
          routing_(plan, kCoordinator, model_->config().n_blocks()),
          tcp_(net_.get_executor(), kCoordinator,
               TcpTransportOptions{.link = opt_.link, .tls = opt_.tls, .encoding = opt_.encoding,
                                   .heartbeat = opt_.heartbeat, .model_id = model_identity(model_->file()),
                                   .name = "coordinator", .log = opt_.log,
                                   .on_control = [this](DeviceId from, const Frame& f) { return on_control(from, f); },
                                   .on_lost = [this](DeviceId id, const std::string& why) { on_lost(id, why); }}) {
        for (const auto& st : plan.stages)
            if (st.device == kCoordinator || st.device > workers_.size())
                throw ConfigError("plan names device " + std::to_string(st.device) + " but there are " +
                                  std::to_string(workers_.size()) + " workers");
        for (std::size_t i = 0; i < workers_.size(); ++i)
            control_.emplace(static_cast<DeviceId>(i + 1), std::make_unique<ControlInbox>(net_.get_executor(), 64));
        shape_ = model_shape(*model_);
        profiles_ = opt_.profiles;
        net_thread_ = std::thread([this] { net_.run(); });
        try {
            asio::co_spawn(net_, setup(), asio::use_future).get();
        } catch (...) {
            shutdown();
            throw;
        }
        coordinator_ = std::make_unique<Coordinator<TcpTransport, FifoScheduler>>(tcp_, scheduler_, routing_, opt_.trace);
        if (opt_.failover) enable_failover();
        if (opt_.balance) start_balancer();
    }

    RemotePipeline(const RemotePipeline&) = delete;
    RemotePipeline& operator=(const RemotePipeline&) = delete;
    ~RemotePipeline() { shutdown(); }

    RequestId submit(RequestSpec spec) { return coordinator_->submit(std::move(spec)); }

    /// Moves the balancer made (0 without RemoteOptions::balance).
    int rebalances() const noexcept { return balancer_ ? balancer_->moves() : 0; }

    /// The balancer's monitor, per device of the plan, as of its last poll
    /// (empty without RemoteOptions::balance, or before the first poll).
    /// With RemoteOptions::trace, the same numbers are counter tracks.
    std::vector<DeviceMonitor> monitor() const {
        std::lock_guard lock(monitor_mutex_);
        return monitor_;
    }

    /// Generates every submitted request; blocks the calling thread. A worker
    /// that vanishes surfaces as PeerLostError within the link's idle timeout.
    std::vector<RequestResult> run() {
        std::vector<RequestResult> results;
        std::exception_ptr error;
        asio::co_spawn(coord_io_, coordinator_->run(), [&](std::exception_ptr e, std::vector<RequestResult> r) {
            error = e;
            results = std::move(r);
        });
        coord_io_.restart();
        coord_io_.run();
        if (opt_.trace) {
            try {
                collect_trace();
            } catch (const std::exception& e) {  // the results matter more than the trace
                log(std::string("trace: collecting the workers' spans failed: ") + e.what());
            }
        }
        if (error) std::rethrow_exception(error);
        return results;
    }

    /// Adds every worker's spans recorded so far to RemoteOptions::trace (one
    /// track per device, on the coordinator's clock); run() does this when
    /// it returns. Workers that are gone are skipped.
    void collect_trace() {
        if (!opt_.trace) return;
        asio::co_spawn(net_, [this]() -> asio::awaitable<void> {
            co_await lock_control();
            ControlUnlock unlock{this};
            for (const auto& st : routing_.plan().stages)
                if (tcp_.connected(st.device)) co_await collect_trace_from(st.device);
        }, asio::use_future).get();
    }

    /// What each worker reported when its weights were loaded.
    const std::map<DeviceId, wire::Ready>& ready() const noexcept { return ready_; }
    const std::map<DeviceId, wire::HelloAck>& workers_info() const noexcept { return acks_; }

    /// Asks a worker for its statistics.
    wire::Stats stats(DeviceId id) {
        return asio::co_spawn(net_, [this, id]() -> asio::awaitable<wire::Stats> {
                   co_await lock_control();
                   ControlUnlock unlock{this};
                   co_return co_await ask_stats(id);
               }, asio::use_future).get();
    }

    TcpLinkStats link_stats() const { return tcp_.stats(); }
    const Plan plan() const { return routing_.plan(); }

    /// Moves blocks to `next` (over the same or fewer workers) at the first
    /// step boundary after `after_tokens` more sampled tokens: each block's
    /// new owner gets its weights (cache, file or streamed) and the KV caches
    /// of its layers for every active sequence; no request is lost or changed.
    void migrate_at(Plan next, std::uint64_t after_tokens) {
        coordinator_->at_boundary([this, next]() -> asio::awaitable<void> {
            const Plan target = next;
            co_await switch_plan(target, 0);
        }, after_tokens);
    }
    /// From a running step boundary (inside a boundary action), move now.
    // (Plans by reference and named lambdas: GCC 12 double-destroys
    // non-trivial temporaries inside co_await expressions.)
    asio::awaitable<void> switch_plan(const Plan& next, DeviceId gone) {
        const auto t0 = std::chrono::steady_clock::now();
        const Plan old = routing_.plan();
        auto on_net = [this, &old, &next, gone]() -> asio::awaitable<void> {
            co_await lock_control();
            ControlUnlock unlock{this};
            co_await reconfigure(old, next, gone);
            plan_seen_by_net_ = next;
        };
        co_await asio::co_spawn(net_, on_net, asio::use_awaitable);
        routing_.set_plan(next);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (gone == 0) {
            migration_seconds_.push_back(secs);
            if (balancer_) {
                const auto ms = secs;
                asio::post(net_, [this, ms] { balancer_->set_migration_seconds(ms); });
            }
        }
        event((gone ? "failover: re-planned to " : "migration: moved to ") + next.describe() + " in " +
              std::to_string(static_cast<int>(secs * 1000)) + " ms");
    }
    /// Pause of each live migration (seconds, from the boundary to resuming).
    const std::vector<double>& migration_seconds() const noexcept { return migration_seconds_; }
    const std::vector<RecoveryEvent>& recoveries() const noexcept { return coordinator_->recoveries(); }
    Coordinator<TcpTransport, FifoScheduler>& coordinator() noexcept { return *coordinator_; }

    /// Connects one more worker while the pipeline runs: a new device, or one
    /// that came back after it was lost (under a new device id). It stands by,
    /// holding no blocks, until a re-plan uses it: the next failover re-plans
    /// over the surviving devices and every device on standby, and
    /// migrate_at may name it. Returns its device id. Throws what the first
    /// connection would (AuthError, ProtocolError, PeerLostError). Call it
    /// from any thread but the pipeline's own network thread.
    DeviceId add_worker(const WorkerEndpoint& w) {
        auto joining = join(w);  // named: GCC 12 mishandles temporaries in co_spawn/co_await
        return asio::co_spawn(net_, std::move(joining), asio::use_future).get();
    }

    /// Connected workers that hold no blocks of the current plan: joined
    /// with add_worker (or by coming back), or left out by a move.
    std::vector<DeviceId> standby() const {
        const auto plan = routing_.plan();
        std::vector<DeviceId> out;
        for (DeviceId id = 1; id <= n_workers_.load(); ++id)
            if (!plan.stage_of_device(id) && tcp_.connected(id)) out.push_back(id);
        return out;
    }

    /// Every device profile the pipeline knows: RemoteOptions::profiles and
    /// those measured when a worker came to stand by.
    std::map<DeviceId, DeviceProfile> profiles() const {
        std::lock_guard lock(profiles_mutex_);
        return profiles_;
    }

    /// Survive lost workers (see RemoteOptions::failover).
    void enable_failover() {
        coordinator_->on_device_lost([this](DeviceId lost, const std::string& why) -> asio::awaitable<void> {
            event("failover: device " + std::to_string(lost) + " lost (" + why + ")");
            std::vector<DeviceId> alive;
            for (const auto& st : routing_.plan().stages)
                if (st.device != lost) alive.push_back(st.device);
            for (const auto id : standby())
                if (id != lost) alive.push_back(id);
            if (alive.empty()) throw PeerLostError("device " + std::to_string(lost), "no worker left to run the model");
            const Plan next = opt_.replan ? opt_.replan(alive, profiles()) : Plan::even(model_->config(), alive);
            co_await switch_plan(next, lost);
        });
    }

private:
    using ControlInbox = asio::experimental::concurrent_channel<void(asio::error_code, Frame)>;

    void log(const std::string& s) const {
        if (opt_.log) opt_.log(s);
    }

    asio::awaitable<void> on_control(DeviceId from, const Frame& f) {
        const auto it = control_.find(from);
        if (it == control_.end()) co_return;
        asio::error_code ec;
        co_await it->second->async_send(asio::error_code{}, f, asio::redirect_error(asio::use_awaitable, ec));
    }

    // A lost link wakes whoever waits for that worker's control frames (setup,
    // stats): a Bye frame in its control inbox carries why (Bye itself never
    // reaches on_control).
    // With failover and a rejoin interval, the lost worker's address is
    // dialled again until a worker answers there.
    void on_lost(DeviceId id, const std::string& why) {
        const auto it = control_.find(id);
        if (it == control_.end()) return;
        Frame f;
        f.type = wire::FrameType::Bye;
        f.payload = wire::encode(wire::ErrorMsg{why});
        it->second->try_send(asio::error_code{}, std::move(f));
        if (opt_.failover && opt_.rejoin_interval.count() > 0 && !shut_ && id >= 1 && id <= workers_.size())
            asio::co_spawn(net_, rejoin_loop(workers_[id - 1]), asio::detached);
    }

    // ---- devices joining ----
    // Runs on the network thread. workers_ is a deque: references that
    // install() and expect_one_of() hold across co_awaits stay valid.
    asio::awaitable<DeviceId> join(WorkerEndpoint w) {
        auto [conn, ack] = co_await tcp_.dial(w.host, w.port, wire::Role::Coordinator);
        // The id is taken after the dial, with no co_await in between: two
        // joins dialling at once get different ids.
        workers_.push_back(w);
        const auto id = static_cast<DeviceId>(workers_.size());
        control_.emplace(id, std::make_unique<ControlInbox>(net_.get_executor(), 64));
        file_worker(id, w, std::move(conn), ack);
        n_workers_.store(workers_.size());
        event("join: device " + std::to_string(id) + " = " + w.str() + " ('" + ack.name + "', " +
              std::to_string(ack.threads) + " threads) stands by for the next re-plan");
        co_await profile_standby(id);
        co_return id;
    }

    // A worker on standby has no measured step time: with failover or the
    // balancer on, time its compute on this model's blocks now (it computes
    // nothing else), so that the balancer and the re-plan know its speed.
    // A failure costs only the profile.
    asio::awaitable<void> profile_standby(DeviceId id) {
        if (!opt_.balance && !opt_.failover) co_return;
        {
            std::lock_guard lock(profiles_mutex_);
            if (profiles_.count(id)) co_return;
        }
        const std::string who = "device " + std::to_string(id) + " (" + workers_[id - 1].str() + ")";
        try {
            co_await lock_control();
            ControlUnlock unlock{this};
            auto expect_frame = [this](DeviceId d, wire::FrameType t) { return expect(d, t); };
            const auto m = co_await request_profile(tcp_, id, *model_, opt_.standby_profiler, opt_.chunk_bytes,
                                                    expect_frame, who);
            const double step = predicted_decode_seconds(m.profile, shape_, BlockRange{0, model_->config().n_blocks()});
            {
                std::lock_guard lock(profiles_mutex_);
                profiles_[id] = m.profile;
            }
            char buf[160];
            std::snprintf(buf, sizeof buf, "profiled in %.2f s: %.3f ms per token for the whole model (%llu tensor bytes sent)",
                          m.seconds, step * 1e3, static_cast<unsigned long long>(m.bytes_sent));
            event("standby: device " + std::to_string(id) + " " + buf);
        } catch (const std::exception& e) {
            log(who + ": profiling on standby failed, so no re-plan can weigh it: " + e.what());
        }
    }

    asio::awaitable<void> rejoin_loop(WorkerEndpoint w) {
        if (!rejoining_.insert(w.str()).second) co_return;  // already dialling there
        log("rejoin: dialling " + w.str() + " every " + std::to_string(opt_.rejoin_interval.count()) +
            " ms until a worker answers there");
        asio::steady_timer t(net_);
        while (!shut_) {
            t.expires_after(opt_.rejoin_interval);
            asio::error_code ec;
            co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (ec || shut_) break;
            try {
                co_await join(w);
                break;
            } catch (const std::exception&) {  // not back yet (refused), or not ours (wrong key, model)
            }
        }
        rejoining_.erase(w.str());
    }

    // The next control frame from `id`, which must be of type `want` (an Error
    // frame from the worker becomes an exception carrying its reason; a lost
    // link, PeerLostError).
    asio::awaitable<Frame> expect(DeviceId id, wire::FrameType want) { co_return co_await expect_one_of(id, want, want); }

    // One control conversation with the workers at a time (a migration must
    // not take a Stats answer meant for the balancer's poll, or the reverse).
    // Runs on the network thread. Waiters sleep on a timer that never expires
    // by itself: the holder's unlock hands the lock to the first of them by
    // cancelling its timer (first come, first served; no polling).
    asio::awaitable<void> lock_control() {
        if (!control_busy_) {
            control_busy_ = true;
            co_return;
        }
        auto t = std::make_shared<asio::steady_timer>(net_, asio::steady_timer::time_point::max());
        control_waiters_.push_back(t);
        asio::error_code ec;
        co_await t->async_wait(asio::redirect_error(asio::use_awaitable, ec));
        // Woken by unlock_control(), which left control_busy_ set for us.
    }
    void unlock_control() {
        if (control_waiters_.empty()) {
            control_busy_ = false;
            return;
        }
        auto next = std::move(control_waiters_.front());
        control_waiters_.pop_front();
        next->cancel();
    }
    struct ControlUnlock {
        RemotePipeline* p;
        ~ControlUnlock() { p->unlock_control(); }
    };

    asio::awaitable<wire::Stats> ask_stats(DeviceId id) {
        const wire::ErrorMsg empty;  // named: GCC 12 mishandles temporaries in co_await
        co_await tcp_.send_control(id, wire::FrameType::StatsRequest, empty);
        const auto f = co_await expect(id, wire::FrameType::Stats);
        co_return wire::decode<wire::Stats>(f.payload, "device " + std::to_string(id));
    }

    // ---- runtime load balancing ----
    void start_balancer() {
        const auto& c = model_->config();
        std::vector<double> cost, memory;
        for (std::int64_t b = 0; b < c.n_blocks(); ++b) {
            const auto bytes = static_cast<double>(model_->block_weight_bytes(b));
            memory.push_back(bytes);
            // Decode reads every weight of a block once, except the embedding
            // (one row per token).
            cost.push_back(b == 0 ? bytes / static_cast<double>(std::max<std::int64_t>(1, c.n_vocab)) : bytes);
        }
        balancer_ = std::make_unique<Balancer>(opt_.balancer, std::move(cost), std::move(memory));
        plan_seen_by_net_ = routing_.plan();
        asio::co_spawn(net_, balance_loop(), asio::detached);
    }

    // The monitor's view after a poll (`polled`: each device's Stats from
    // it): into monitor_ (for monitor()) and, when tracing, counter tracks.
    // Network thread.
    void publish_monitor(const Plan& plan, const std::map<DeviceId, wire::Stats>& polled) {
        const auto& cost = balancer_->block_cost();
        std::map<DeviceId, Monitor::DeviceStats> ms;
        for (const auto& x : balancer_->monitor().stats()) ms[x.device] = x;
        std::vector<DeviceMonitor> out;
        std::string step_args, last_args, queue_args, send_args;
        auto add = [](std::string& args, DeviceId d, double seconds) {
            if (!args.empty()) args += ',';
            char buf[64];
            std::snprintf(buf, sizeof buf, "\"d%u\":%.4f", d, seconds * 1e3);
            args += buf;
        };
        for (const auto& st : plan.stages) {
            DeviceMonitor m;
            m.device = st.device;
            m.blocks = st.blocks;
            if (const auto it = ms.find(st.device); it != ms.end()) {
                m.windows = it->second.windows;
                m.step_ewma_seconds = it->second.ewma_step_seconds;
                m.step_last_seconds = it->second.last_step_seconds;
            }
            const auto pi = polled.find(st.device);
            const wire::Stats* now = pi == polled.end() ? nullptr : &pi->second;
            const auto li = last_polled_.find(st.device);
            const wire::Stats* before = li == last_polled_.end() ? nullptr : &li->second;
            if (now) {
                m.steps = now->steps;
                if (before && now->steps > before->steps) {
                    const double n = static_cast<double>(now->steps - before->steps);
                    m.queue_per_step_seconds = std::max(0.0, now->queue_seconds - before->queue_seconds) / n;
                    m.send_per_step_seconds = std::max(0.0, now->send_seconds - before->send_seconds) / n;
                }
            }
            if (m.step_ewma_seconds) {
                double total = 0;
                for (auto b = st.blocks.begin; b < st.blocks.end; ++b) total += cost[static_cast<std::size_t>(b)];
                m.speed = *m.step_ewma_seconds > 0 ? total / *m.step_ewma_seconds : 0;
                // Each block's share of the wall time the worker measured per
                // block since the previous poll (of its session so far when it
                // computed nothing since), else of the blocks' cost.
                auto shares = [&](bool since_before) {
                    std::vector<double> share;
                    for (auto b = st.blocks.begin; b < st.blocks.end; ++b) {
                        const auto i = static_cast<std::size_t>(b);
                        double t = now->block_seconds[i];
                        if (since_before) t -= before->block_seconds[i];
                        share.push_back(std::isfinite(t) && t > 0 ? t : 0.0);  // < 0: a new session restarted them
                    }
                    return share;
                };
                auto sum = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); };
                std::vector<double> share;
                double measured = 0;
                if (now && now->block_seconds.size() == cost.size()) {
                    share = shares(before && before->block_seconds.size() == cost.size());
                    measured = sum(share);
                    if (measured <= 0) {
                        share = shares(false);
                        measured = sum(share);
                    }
                }
                m.block_seconds_measured = measured > 0;
                for (auto b = st.blocks.begin; b < st.blocks.end; ++b) {
                    const double f = m.block_seconds_measured ? share[static_cast<std::size_t>(b - st.blocks.begin)] / measured
                                     : total > 0            ? cost[static_cast<std::size_t>(b)] / total
                                                            : 0.0;
                    m.block_seconds.push_back(*m.step_ewma_seconds * f);
                }
                add(step_args, st.device, *m.step_ewma_seconds);
            }
            if (now) last_polled_[st.device] = *now;
            if (m.step_last_seconds) add(last_args, st.device, *m.step_last_seconds);
            add(queue_args, st.device, m.queue_per_step_seconds);
            add(send_args, st.device, m.send_per_step_seconds);
            out.push_back(std::move(m));
        }
        if (opt_.trace && opt_.trace->enabled()) {
            const auto t = TraceRecorder::clock::now();
            if (!step_args.empty()) opt_.trace->counter("monitor: step ms (EWMA)", t, step_args);
            if (!last_args.empty()) opt_.trace->counter("monitor: step ms (window)", t, last_args);
            opt_.trace->counter("monitor: queue ms/step", t, queue_args);
            opt_.trace->counter("monitor: send ms/step", t, send_args);
        }
        std::lock_guard lock(monitor_mutex_);
        monitor_ = std::move(out);
    }

    asio::awaitable<void> balance_loop() {
        asio::steady_timer timer(net_);
        while (!shut_) {
            timer.expires_after(opt_.balance_interval);
            asio::error_code ec;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (ec || shut_ || control_busy_ || moving_) continue;
            const auto plan = plan_seen_by_net_;
            std::map<DeviceId, DeviceSample> samples;
            std::map<DeviceId, wire::Stats> polled;
            std::map<DeviceId, double> budget;
            try {
                co_await lock_control();
                ControlUnlock unlock{this};
                for (const auto& st : plan.stages) {
                    if (!tcp_.connected(st.device)) co_return;  // a lost worker: failover's business
                    const auto s = co_await ask_stats(st.device);
                    samples[st.device] = {s.busy_seconds, s.steps, s.tokens};
                    polled[st.device] = s;
                    const auto it = acks_.find(st.device);
                    if (it != acks_.end()) budget[st.device] = static_cast<double>(it->second.memory_budget);
                }
            } catch (const std::exception& e) {
                log(std::string("balancer: stats poll failed: ") + e.what());
                continue;
            }
            const auto standby_speed = standby_speeds(plan);
            for (const auto& [id, speed] : standby_speed)
                if (const auto it = acks_.find(id); it != acks_.end())
                    budget[id] = static_cast<double>(it->second.memory_budget);
            const auto left = static_cast<double>(coordinator_->tokens_left());
            auto d = balancer_->window(plan, samples, budget, left, standby_speed);
            publish_monitor(plan, polled);
            if (!d) continue;
            event("rebalance: " + d->why + "; moving " + plan.describe() + " -> " + d->next.describe());
            moving_ = true;
            plan_seen_by_net_ = d->next;
            Plan next = d->next;
            asio::post(coord_io_, [this, next] {
                coordinator_->at_boundary([this, next]() -> asio::awaitable<void> {
                    const Plan target = next;
                    co_await switch_plan(target, 0);
                    asio::post(net_, [this] { moving_ = false; });
                });
            });
        }
    }

    // The speed of each connected device that `plan` leaves out, in the
    // balancer's units (block cost per second), from its profile's predicted
    // decode step over the whole model. Profiles time blocks alone; a device
    // of the plan that also has a profile shows how real steps compare
    // (measured step / predicted step), and the median of those ratios
    // scales the prediction. Network thread.
    std::map<DeviceId, double> standby_speeds(const Plan& plan) const {
        std::map<DeviceId, double> out;
        const auto known = profiles();
        if (known.empty()) return out;
        std::vector<double> ratios;
        for (const auto& st : plan.stages) {
            const auto pi = known.find(st.device);
            const auto t = balancer_->monitor().step_seconds(st.device);
            if (pi == known.end() || !t) continue;
            const double predicted = predicted_decode_seconds(pi->second, shape_, st.blocks);
            if (predicted > 0) ratios.push_back(*t / predicted);
        }
        double scale = 1;
        if (!ratios.empty()) {
            std::sort(ratios.begin(), ratios.end());
            scale = ratios[ratios.size() / 2];
        }
        const auto& cost = balancer_->block_cost();
        const double total_cost = std::accumulate(cost.begin(), cost.end(), 0.0);
        for (DeviceId id = 1; id <= workers_.size(); ++id) {
            if (plan.stage_of_device(id) || !tcp_.connected(id)) continue;
            const auto pi = known.find(id);
            if (pi == known.end()) continue;
            const double step = predicted_decode_seconds(pi->second, shape_, BlockRange{0, model_->config().n_blocks()});
            if (step > 0) out[id] = total_cost / (step * scale);
        }
        return out;
    }

    void event(const std::string& e) const {
        log(e);
        if (opt_.on_event) opt_.on_event(e);
    }

    // The layers holding a KV cache in a block range.
    std::pair<std::int64_t, std::int64_t> kv_span(BlockRange r) const {
        if (r.empty()) return {0, 0};
        return {r.first_kv_layer(), r.end_kv_layer(model_->config())};
    }

    wire::Assign assignment(const Plan& plan, const Stage& st) const {
        wire::Assign a;
        a.device_id = st.device;
        a.block_begin = st.blocks.begin;
        a.block_end = st.blocks.end;
        a.model_id = model_id_;
        a.metadata = metadata_;
        a.tensors = describe_tensors(*model_, st.blocks);
        for (const auto& p : plan.stages) {
            const auto& w = workers_[p.device - 1];
            a.peers.push_back({p.device, w.host, w.port, p.blocks.begin, p.blocks.end});
        }
        a.encoding = static_cast<std::uint8_t>(opt_.encoding);
        a.max_in_flight = static_cast<std::uint32_t>(opt_.max_in_flight);
        a.max_batch = static_cast<std::uint32_t>(opt_.max_batch);
        return a;
    }

    // Runs on the network thread at a step boundary: old owners export the
    // KV caches of layers that move (unless `gone`, a lost device, held them:
    // then the coordinator's replay rebuilds every cache), every worker of
    // `next` takes its new blocks, new owners import the caches, and workers
    // left out of `next` stop.
    asio::awaitable<void> reconfigure(const Plan& old, const Plan& next, DeviceId gone) {
        for (const auto& st : next.stages)
            if (st.device == kCoordinator || st.device > workers_.size() || st.device == gone)
                throw ConfigError("new plan names device " + std::to_string(st.device) + ", which cannot serve");
        std::map<DeviceId, std::vector<wire::KvChunk>> incoming;  // new owner -> caches
        if (gone == 0) {
            for (const auto& st : old.stages) {
                const auto [f, e] = kv_span(st.blocks);
                const auto* ns = next.stage_of_device(st.device);
                const auto [nf, ne] = ns ? kv_span(ns->blocks) : std::pair<std::int64_t, std::int64_t>{0, 0};
                wire::Migrate ex;
                ex.op = static_cast<std::uint8_t>(wire::MigrateOp::Export);
                for (auto l = f; l < e; ++l)
                    if (l < nf || l >= ne) ex.layers.push_back(l);
                if (ex.layers.empty()) continue;
                co_await tcp_.send_control(st.device, wire::FrameType::Migrate, ex);
                for (;;) {
                    auto fr = co_await expect_one_of(st.device, wire::FrameType::KvChunk, wire::FrameType::Migrate);
                    if (fr.type == wire::FrameType::Migrate) break;
                    auto c = wire::decode<wire::KvChunk>(fr.payload, "device " + std::to_string(st.device));
                    DeviceId owner = 0;
                    for (const auto& n : next.stages) {
                        const auto [a, b] = kv_span(n.blocks);
                        if (c.layer >= a && c.layer < b) owner = n.device;
                    }
                    if (owner == 0) throw ProtocolError("device " + std::to_string(st.device), "exported a layer nobody takes");
                    incoming[owner].push_back(std::move(c));
                }
            }
        }
        // New blocks for everyone in the new plan.
        for (const auto& st : next.stages) {
            const bool serving = old.stage_of_device(st.device) != nullptr;
            co_await install(next, st);
            if (!serving) {
                const wire::ErrorMsg empty;  // named: GCC 12 mishandles temporaries in co_await
                co_await tcp_.send_control(st.device, wire::FrameType::Start, empty);
            }
        }
        // Caches to their new owners.
        for (auto& [dev, chunks] : incoming) {
            for (const auto& c : chunks) co_await tcp_.send_control(dev, wire::FrameType::KvChunk, c);
            wire::Migrate commit;
            commit.op = static_cast<std::uint8_t>(wire::MigrateOp::Commit);
            co_await tcp_.send_control(dev, wire::FrameType::Migrate, commit);
            co_await expect(dev, wire::FrameType::Ready);
        }
        const wire::ErrorMsg empty;
        for (const auto& st : old.stages)
            if (st.device != gone && !next.stage_of_device(st.device) && tcp_.connected(st.device))
                co_await tcp_.send_control(st.device, wire::FrameType::Stop, empty);
    }

    // The next control frame from `id` of type `a` or `b` (see expect). Two
    // types, not an initializer_list: GCC 12 miscompiles those in coroutines.
    asio::awaitable<Frame> expect_one_of(DeviceId id, wire::FrameType a, wire::FrameType b) {
        const std::string who = "device " + std::to_string(id) + " (" + workers_[id - 1].str() + ")";
        for (;;) {
            auto f = co_await control_.at(id)->async_receive(asio::use_awaitable);
            if (f.type == a || f.type == b) co_return f;
            if (f.type == wire::FrameType::Bye)
                throw PeerLostError(who, wire::decode<wire::ErrorMsg>(f.payload, who).reason);
            if (f.type == wire::FrameType::Error)
                throw ConfigError(who + ": " + wire::decode<wire::ErrorMsg>(f.payload, who).reason);
            log(who + ": ignored " + wire::frame_type_name(f.type) + " while waiting for " + wire::frame_type_name(a) +
                (a == b ? "" : std::string(" or ") + wire::frame_type_name(b)));
        }
    }

    // Assign, NeedTensors, exactly the missing tensors, Ready: a device takes
    // its blocks of `plan` (at setup, and again when blocks move).
    asio::awaitable<void> install(const Plan& plan, const Stage& st) {
        const auto a = assignment(plan, st);
        const auto& w = workers_[st.device - 1];
        co_await tcp_.send_control(st.device, wire::FrameType::Assign, a);
        const auto need_frame = co_await expect(st.device, wire::FrameType::NeedTensors);
        const auto need = wire::decode<wire::NeedTensors>(need_frame.payload, w.str());
        co_await stream_tensors(st.device, a.tensors, need.hashes);
        const auto ready_frame = co_await expect(st.device, wire::FrameType::Ready);
        ready_[st.device] = wire::decode<wire::Ready>(ready_frame.payload, w.str());
        if (opt_.trace) {
            const wire::TraceRequest begin{static_cast<std::uint8_t>(wire::TraceOp::Begin)};
            co_await tcp_.send_control(st.device, wire::FrameType::TraceRequest, begin);
        }
    }

    // One worker's spans since the last collection, shifted onto the
    // coordinator's trace clock. The offset comes from small Sync exchanges
    // (NTP-like: the midpoint of the shortest of 3 round trips, so its error
    // is at most half that round trip), not from the Collect itself, whose
    // answer can take long to encode and decode; both clocks are monotonic.
    asio::awaitable<void> collect_trace_from(DeviceId id) {
        auto& trace = *opt_.trace;
        const std::string who = "device " + std::to_string(id);
        const wire::TraceRequest sync{static_cast<std::uint8_t>(wire::TraceOp::Sync)};
        double best_rtt = std::numeric_limits<double>::infinity(), shift = 0;
        for (int i = 0; i < 3; ++i) {
            const double t0 = trace.micros(TraceRecorder::clock::now());
            co_await tcp_.send_control(id, wire::FrameType::TraceRequest, sync);
            const auto f = co_await expect(id, wire::FrameType::Trace);
            const double t1 = trace.micros(TraceRecorder::clock::now());
            const auto s = wire::decode<wire::Trace>(f.payload, who);
            if (!(s.now_us >= 0) || !std::isfinite(s.now_us)) throw ProtocolError(who, "trace clock is not a finite time");
            if (t1 - t0 < best_rtt) {
                best_rtt = t1 - t0;
                shift = (t0 + t1) / 2 - s.now_us;
            }
        }
        const wire::TraceRequest collect{static_cast<std::uint8_t>(wire::TraceOp::Collect)};
        co_await tcp_.send_control(id, wire::FrameType::TraceRequest, collect);
        const auto f = co_await expect(id, wire::FrameType::Trace);
        auto t = wire::decode<wire::Trace>(f.payload, who);
        trace.name_track(id, t.track_name.empty() ? who : t.track_name);
        std::vector<TraceRecorder::Span> spans;
        spans.reserve(t.spans.size());
        for (auto& sp : t.spans) {
            if (!std::isfinite(sp.start_us) || !std::isfinite(sp.dur_us) || sp.dur_us < 0)
                throw ProtocolError(who, "trace span '" + sp.name + "' has no finite, non-negative time");
            // A worker speaks for its own track only, whatever the span says.
            spans.push_back({id, std::move(sp.name), sp.start_us, sp.dur_us, std::move(sp.args)});
        }
        trace.add_foreign(std::move(spans), shift);
        if (t.dropped > 0) log(who + ": " + std::to_string(t.dropped) + " trace spans dropped (over the worker's cap)");
    }

    // A dialled worker becomes device `id`: its address (for the others'
    // links), its link and what it said in its HelloAck.
    void file_worker(DeviceId id, const WorkerEndpoint& w, std::shared_ptr<Connection> conn, const wire::HelloAck& ack) {
        acks_[id] = ack;
        tcp_.set_address(id, w.host, w.port);
        tcp_.attach(id, std::move(conn));
    }

    asio::awaitable<void> setup() {
        const auto plan = routing_.plan();
        model_id_ = model_identity(model_->file());
        metadata_ = metadata_image(model_->file(), model_->config());
        for (const auto& st : plan.stages) {
            const DeviceId id = st.device;
            const auto& w = workers_[id - 1];
            auto [conn, ack] = co_await tcp_.dial(w.host, w.port, wire::Role::Coordinator);
            file_worker(id, w, std::move(conn), ack);
            log("device " + std::to_string(id) + " = " + w.str() + " ('" + ack.name + "', " + std::to_string(ack.threads) +
                " threads): blocks " + to_string(st.blocks));
            co_await install(plan, st);
        }
        const wire::ErrorMsg empty;  // named: GCC 12 mishandles temporaries in co_await
        for (const auto& st : plan.stages) co_await tcp_.send_control(st.device, wire::FrameType::Start, empty);
        // Workers the plan leaves out stand by (a failover re-plan can use
        // them). They are not needed to run: one that cannot be reached is
        // logged and left alone.
        for (DeviceId id = 1; id <= workers_.size(); ++id) {
            if (plan.stage_of_device(id)) continue;
            const auto& w = workers_[id - 1];
            try {
                auto [conn, ack] = co_await tcp_.dial(w.host, w.port, wire::Role::Coordinator);
                file_worker(id, w, std::move(conn), ack);
                log("device " + std::to_string(id) + " = " + w.str() + " ('" + ack.name + "') stands by (no blocks)");
            } catch (const std::exception& e) {
                log("device " + std::to_string(id) + " = " + w.str() + " left out and unreachable: " + e.what());
                continue;
            }
            co_await profile_standby(id);
        }
    }

    // Sends exactly the tensors the worker asked for, in chunks.
    asio::awaitable<void> stream_tensors(DeviceId id, const std::vector<wire::TensorDesc>& all,
                                         const std::vector<std::uint64_t>& wanted) {
        std::function<void(std::uint64_t, std::uint64_t)> progress;
        if (opt_.progress) progress = [this, id](std::uint64_t sent, std::uint64_t total) { opt_.progress(id, sent, total); };
        const std::string who = "device " + std::to_string(id);  // named: GCC 12 and temporaries in co_await
        co_await stream_asked_tensors(tcp_, id, model_->file(), all, wanted, opt_.chunk_bytes, who, progress);
    }

    void shutdown() {
        if (shut_) return;
        shut_ = true;
        if (net_thread_.joinable()) {
            try {
                asio::co_spawn(net_, [this]() -> asio::awaitable<void> {
                    const wire::ErrorMsg empty;
                    const auto stages = routing_.plan().stages;
                    for (const auto& st : stages)
                        if (tcp_.connected(st.device)) {
                            try {
                                co_await tcp_.send_control(st.device, wire::FrameType::Stop, empty);
                                co_await tcp_.send_control(st.device, wire::FrameType::Bye, empty);
                            } catch (const std::exception&) {
                            }
                        }
                    // Let the writers flush before the links close.
                    asio::steady_timer t(net_, std::chrono::milliseconds(50));
                    co_await t.async_wait(asio::use_awaitable);
                }, asio::use_future).get();
            } catch (const std::exception&) {
            }
        }
        tcp_.close();
        for (auto& [id, c] : control_) c->close();
        guard_.reset();
        net_.stop();
        if (net_thread_.joinable()) net_thread_.join();
    }

    std::shared_ptr<const Model> model_;
    std::deque<WorkerEndpoint> workers_;  // device id - 1; grows on the network thread (join)
    std::atomic<std::size_t> n_workers_{0};  // workers_.size() for other threads
    std::set<std::string> rejoining_;        // addresses being dialled again (network thread)
    RemoteOptions opt_;
    FifoScheduler scheduler_;
    Routing routing_;
    asio::io_context net_{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard_{net_.get_executor()};
    asio::io_context coord_io_{1};
    TcpTransport tcp_;
    std::map<DeviceId, std::unique_ptr<ControlInbox>> control_;
    std::thread net_thread_;
    std::map<DeviceId, wire::Ready> ready_;
    std::map<DeviceId, wire::HelloAck> acks_;
    ModelShape shape_;                          // block kinds and weights, for profiles' predictions
    mutable std::mutex profiles_mutex_;
    std::map<DeviceId, DeviceProfile> profiles_;  // guarded by profiles_mutex_
    std::unique_ptr<Coordinator<TcpTransport, FifoScheduler>> coordinator_;
    std::vector<double> migration_seconds_;
    std::uint64_t model_id_ = 0;          // set by setup(), before any Assign
    std::vector<std::uint8_t> metadata_;  // the model's metadata image, sent in every Assign
    std::unique_ptr<Balancer> balancer_;
    std::map<DeviceId, wire::Stats> last_polled_;     // the balancer's previous poll (network thread)
    mutable std::mutex monitor_mutex_;
    std::vector<DeviceMonitor> monitor_;              // guarded by monitor_mutex_
    Plan plan_seen_by_net_;     // the plan as the network thread knows it
    bool control_busy_ = false;  // network thread only
    std::deque<std::shared_ptr<asio::steady_timer>> control_waiters_;  // network thread only
    bool moving_ = false;        // a balancer move is queued or running (network thread)
    std::atomic<bool> shut_{false};
};

}  // namespace tandem
