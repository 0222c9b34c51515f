// Live profiles (placement, issue 6): before it plans, the coordinator
// measures the workers it will plan over -- each worker's compute speed on
// this model's own blocks, run by the worker on its own device and threads
// (an emulated slowdown included), and the latency and bandwidth of the link
// between every pair of nodes, coordinator included, over the real transport
// -- and returns the Cluster the solver plans with (device i = workers[i]).
//
// The conversation, one worker at a time (docs/protocol.md, section 4):
//
//   Hello(coordinator) -> HelloAck
//   ProfileRequest{measure = false} -> Profile          identity: the cache key
//   on a cache miss, or when refreshing:
//     ProfileRequest{measure = true, the sampled blocks' tensors}
//       -> NeedTensors -> TensorChunk x M -> Profile     times per block kind
//   links:
//     coordinator <-> worker i   a probe link of its own (transport/link_probe.hpp)
//     worker i <-> worker j      ProbeRequest{j's address} to i -> ProbeResult
//   Bye
//
// Workers are measured one after another, never at once: emulated devices
// sharing one machine would otherwise slow each other down, and the probes
// would see each other's traffic. The ring order is the solver's to choose,
// so every pair of workers is probed, both directions (latency = half the
// small echoes' round trip; bandwidth per direction from the large ones).
//
// Device profiles are cached (runtime/profiler.hpp's ProfileCache) under the
// model's identity, the worker's name plus its fingerprint (host, CPU,
// threads, memory budget, emulation), and its thread count; `refresh`
// measures again. Links are measured every time: a probe takes well under a
// second, and links change more often than devices.
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/concurrent_channel.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_future.hpp>

#include "tandem/placement/profile.hpp"
#include "tandem/runtime/placement_plan.hpp"
#include "tandem/runtime/profile_client.hpp"
#include "tandem/runtime/profiler.hpp"
#include "tandem/runtime/remote_pipeline.hpp"
#include "tandem/runtime/weights.hpp"
#include "tandem/transport/link_probe.hpp"

namespace tandem {

struct LiveProfileOptions {
    TlsConfig* tls = nullptr;  // null: plaintext (only with an explicit --insecure)
    LinkOptions link{};
    std::chrono::milliseconds heartbeat{1000};
    ProfilerOptions profiler{};
    wire::ProbeRequest probe{};  // rounds, max_bytes, target_seconds (host and port are filled in)
    std::string cache_path;      // profile cache file; empty: no cache
    bool refresh = false;        // measure every worker even when its profile is cached
    std::size_t chunk_bytes = 4u << 20;
    std::function<void(const std::string&)> log;
};

/// What the coordinator learned about one worker.
struct LiveWorker {
    WorkerEndpoint endpoint;
    std::string name;              // as the worker calls itself
    std::string fingerprint;
    bool cached = false;           // its profile came from the cache
    double profile_seconds = 0;    // the worker's measurement took (0 when cached)
    std::uint64_t bytes_sent = 0;  // tensor bytes streamed to it for the profile
};

struct LiveProfile {
    Cluster cluster;  // device i is workers[i]; node kCoordinator is this process
    std::vector<LiveWorker> workers;
    double seconds = 0;  // the whole measurement
};

namespace detail {

inline Link link_from_probe(const wire::ProbeResult& r, double bytes_per_s, const std::string& who) {
    if (!(r.rtt_s >= 0) || !std::isfinite(r.rtt_s) || r.rtt_s > 3600 || !(bytes_per_s > 0) || !std::isfinite(bytes_per_s))
        throw ProtocolError(who, "probe result with an impossible round trip or bandwidth");
    return Link{r.rtt_s / 2, bytes_per_s};
}

}  // namespace detail

class LiveProfiler {
public:
    LiveProfiler(const Model& model, std::vector<WorkerEndpoint> workers, LiveProfileOptions opt)
        : model_(model), workers_(std::move(workers)), opt_(std::move(opt)),
          tcp_(net_.get_executor(), 0,
               TcpTransportOptions{.link = opt_.link, .tls = opt_.tls, .heartbeat = opt_.heartbeat,
                                   .model_id = model_identity(model_.file()), .name = "coordinator",
                                   .log = [this](const std::string& l) { if (!closing_) log(l); },
                                   .on_control = [this](DeviceId from, const Frame& f) { return on_control(from, f); },
                                   .on_lost = [this](DeviceId id, const std::string& why) { on_lost(id, why); }}) {
        if (workers_.empty()) throw ConfigError("live profiling needs at least one worker");
        check_profiler_options(model_.config(), opt_.profiler);
        for (std::size_t i = 0; i < workers_.size(); ++i)
            control_.emplace(static_cast<DeviceId>(i + 1), std::make_unique<Inbox>(net_.get_executor(), 64));
    }
    LiveProfiler(const LiveProfiler&) = delete;
    LiveProfiler& operator=(const LiveProfiler&) = delete;
    ~LiveProfiler() { stop(); }

    /// Measures every worker and link; blocks the calling thread. Throws
    /// PeerLostError (a worker unreachable or gone), ProtocolError (a worker
    /// that answers nonsense), ConfigError (a worker that refused, with its
    /// reason: e.g. not enough memory for one block).
    LiveProfile run() {
        net_thread_ = std::thread([this] { net_.run(); });
        std::exception_ptr error;
        LiveProfile out;
        try {
            out = asio::co_spawn(net_, measure_all(), asio::use_future).get();
        } catch (...) {
            error = std::current_exception();
        }
        stop();
        if (error) std::rethrow_exception(error);
        return out;
    }

private:
    using Inbox = asio::experimental::concurrent_channel<void(asio::error_code, Frame)>;

    void log(const std::string& s) const {
        if (opt_.log) opt_.log(s);
    }
    std::string who(DeviceId id) const { return "worker " + workers_[id - 1].str(); }

    asio::awaitable<void> on_control(DeviceId from, const Frame& f) {
        const auto it = control_.find(from);
        if (it == control_.end()) co_return;
        asio::error_code ec;
        co_await it->second->async_send(asio::error_code{}, f, asio::redirect_error(asio::use_awaitable, ec));
    }

    void on_lost(DeviceId id, const std::string& why) {
        const auto it = control_.find(id);
        if (it == control_.end()) return;
        Frame f;
        f.type = wire::FrameType::Bye;
        f.payload = wire::encode(wire::ErrorMsg{why});
        it->second->try_send(asio::error_code{}, std::move(f));
    }

    // The next control frame from `id` of type `want`: an Error frame becomes
    // ConfigError with the worker's reason, a lost link PeerLostError.
    asio::awaitable<Frame> expect(DeviceId id, wire::FrameType want) {
        const auto w = who(id);
        for (;;) {
            auto f = co_await control_.at(id)->async_receive(asio::use_awaitable);
            if (f.type == want) co_return f;
            if (f.type == wire::FrameType::Bye) throw PeerLostError(w, wire::decode<wire::ErrorMsg>(f.payload, w).reason);
            if (f.type == wire::FrameType::Error)
                throw ConfigError(w + ": " + wire::decode<wire::ErrorMsg>(f.payload, w).reason);
            throw ProtocolError(w, std::string("sent ") + wire::frame_type_name(f.type) + " while " +
                                       wire::frame_type_name(want) + " was due");
        }
    }

    asio::awaitable<LiveProfile> measure_all() {
        const auto t0 = std::chrono::steady_clock::now();
        const auto n = workers_.size();
        LiveProfile out;
        std::vector<DeviceProfile> devices;
        std::optional<ProfileCache> cache;
        if (!opt_.cache_path.empty()) cache.emplace(opt_.cache_path);
        const auto model_id = model_identity(model_);
        for (std::size_t i = 0; i < n; ++i) {
            const auto id = static_cast<DeviceId>(i + 1);
            const auto& w = workers_[i];
            auto [conn, ack] = co_await tcp_.dial(w.host, w.port, wire::Role::Coordinator);
            tcp_.attach(id, conn);
            LiveWorker lw;
            lw.endpoint = w;
            wire::ProfileRequest ask;  // measure = false: who are you?
            co_await tcp_.send_control(id, wire::FrameType::ProfileRequest, ask);
            const auto ident_frame = co_await expect(id, wire::FrameType::Profile);
            const auto ident = check_profile_reply(ident_frame.payload, who(id), false);
            lw.name = ident.name;
            lw.fingerprint = ident.fingerprint;
            const auto key = ProfileCache::key(model_id, ident.name + "#" + ident.fingerprint, ident.threads);
            std::optional<DeviceProfile> p;
            if (cache && !opt_.refresh) p = cache->find(key);
            if (p) {
                lw.cached = true;
                log(who(id) + " ('" + ident.name + "'): cached profile");
            } else {
                p = co_await measure_worker(id, lw);
                if (cache) {
                    cache->put(key, *p);
                    cache->save();
                }
            }
            p->memory_bytes = ident.memory_bytes;  // the budget now, whatever it was when cached
            p->threads = ident.threads;
            p->model = model_id;
            devices.push_back(*p);
            out.workers.push_back(std::move(lw));
        }
        // Names must be unique in a cluster: two workers called the same get their addresses.
        for (std::size_t i = 0; i < n; ++i) {
            bool dup = devices[i].name == "coordinator";
            for (std::size_t j = 0; j < n; ++j) dup = dup || (j != i && out.workers[j].name == out.workers[i].name);
            devices[i].name = dup ? out.workers[i].name + "@" + workers_[i].str() : out.workers[i].name;
        }
        out.cluster = Cluster(devices);

        // Links: the coordinator's own, then every pair of workers.
        for (std::size_t i = 0; i < n; ++i) {
            const auto& w = workers_[i];
            auto req = opt_.probe;
            req.host = w.host;
            req.port = w.port;
            const auto r = co_await measure_link(tcp_, w.host, w.port, req);
            const auto d = static_cast<int>(i);
            out.cluster.set_link(Cluster::kCoordinator, d, detail::link_from_probe(r, r.out_bytes_per_s, w.str()));
            out.cluster.set_link(d, Cluster::kCoordinator, detail::link_from_probe(r, r.in_bytes_per_s, w.str()));
            log_link("coordinator", devices[i].name, r);
        }
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = i + 1; j < n; ++j) {
                const auto id = static_cast<DeviceId>(i + 1);
                auto req = opt_.probe;
                req.host = workers_[j].host;
                req.port = workers_[j].port;
                co_await tcp_.send_control(id, wire::FrameType::ProbeRequest, req);
                const auto f = co_await expect(id, wire::FrameType::ProbeResult);
                const auto r = wire::decode<wire::ProbeResult>(f.payload, who(id));
                const auto a = static_cast<int>(i), b = static_cast<int>(j);
                out.cluster.set_link(a, b, detail::link_from_probe(r, r.out_bytes_per_s, who(id)));
                out.cluster.set_link(b, a, detail::link_from_probe(r, r.in_bytes_per_s, who(id)));
                log_link(devices[i].name, devices[j].name, r);
            }

        const wire::ErrorMsg empty;  // named: GCC 12 mishandles temporaries in co_await
        closing_ = true;             // the workers close their ends on Bye: not worth a log line
        for (std::size_t i = 0; i < n; ++i) {
            try {
                co_await tcp_.send_control(static_cast<DeviceId>(i + 1), wire::FrameType::Bye, empty);
            } catch (const std::exception&) {
            }
        }
        asio::steady_timer flush(net_, std::chrono::milliseconds(50));  // let the writers flush before the links close
        co_await flush.async_wait(asio::use_awaitable);
        out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        co_return out;
    }

    void log_link(const std::string& a, const std::string& b, const wire::ProbeResult& r) const {
        log("link " + a + " <-> " + b + ": round trip " + std::to_string(r.rtt_s * 1e3) + " ms, " +
            std::to_string(r.out_bytes_per_s * 8 / 1e6) + " / " + std::to_string(r.in_bytes_per_s * 8 / 1e6) +
            " Mbit/s (echoes of " + std::to_string(r.probe_bytes) + " bytes)");
    }

    // Has worker `id` time the sampled blocks, streaming it the tensors it lacks.
    asio::awaitable<DeviceProfile> measure_worker(DeviceId id, LiveWorker& lw) {
        const auto w = who(id);
        log(w + ": profiling (sending the sampled blocks' tensors it lacks, then timing them)");
        auto expect_frame = [this](DeviceId d, wire::FrameType t) { return expect(d, t); };
        const auto m = co_await request_profile(tcp_, id, model_, opt_.profiler, opt_.chunk_bytes, expect_frame, w);
        lw.bytes_sent = m.bytes_sent;
        lw.profile_seconds = m.seconds;
        const auto& p = m.profile;
        log(w + " ('" + p.name + "'): attention " + format_ms(p.decode[CostKind::Attention]) + ", ffn " +
            format_ms(p.decode[CostKind::Ffn]) + ", head " + format_ms(p.decode[CostKind::Head]) + " per token (" +
            std::to_string(p.threads) + " threads, measured in " + std::to_string(m.seconds) + " s, " +
            std::to_string(m.bytes_sent) + " tensor bytes sent)");
        co_return p;
    }

    void stop() {
        if (stopped_) return;
        stopped_ = true;
        tcp_.close();
        for (auto& [id, c] : control_) c->close();
        guard_.reset();
        net_.stop();
        if (net_thread_.joinable()) net_thread_.join();
    }

    const Model& model_;
    std::vector<WorkerEndpoint> workers_;
    LiveProfileOptions opt_;
    asio::io_context net_{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard_{net_.get_executor()};
    TcpTransport tcp_;
    std::map<DeviceId, std::unique_ptr<Inbox>> control_;
    std::thread net_thread_;
    bool stopped_ = false;
    std::atomic<bool> closing_{false};
};

/// Measures `workers` for `model` (see the top of this file).
inline LiveProfile profile_live(const Model& model, const std::vector<WorkerEndpoint>& workers,
                                const LiveProfileOptions& opt = {}) {
    LiveProfiler p(model, workers, opt);
    return p.run();
}

}  // namespace tandem
