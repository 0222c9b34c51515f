// A worker device: listens for a coordinator, receives its blocks (weights
// from its cache, a local GGUF, or streamed), then runs the device loop over
// TCP, sending its output straight to the next device of the ring.
//
// Threads: the network thread (run() or a thread of its own) owns every socket
// and answers heartbeats even while the compute thread is busy; the compute
// thread runs the DeviceLoop of the current session. One coordinator at a
// time; when it leaves (Stop, or its link is lost), the session's state is
// dropped and the worker waits for the next one.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include "tandem/emulation/emulated_device.hpp"
#include "tandem/runtime/device_loop.hpp"
#include "tandem/runtime/kv_transfer.hpp"
#include "tandem/runtime/profile_service.hpp"
#include "tandem/runtime/trace.hpp"
#include "tandem/runtime/weights.hpp"
#include "tandem/scheduler/fifo_scheduler.hpp"
#include "tandem/segment/model_segment.hpp"
#include "tandem/transport/listener.hpp"

namespace tandem {

struct WorkerOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;  // 0: any free port (see Worker::port())
    std::string name = "worker";
    std::uint64_t memory_limit = std::numeric_limits<std::uint64_t>::max();
    unsigned threads = 0;
    std::string cache_dir;   // weight cache; required unless model_path serves every tensor
    std::string model_path;  // a local copy of the model, memory-mapped instead of receiving weights
    TlsConfig* tls = nullptr;  // null: plaintext (--insecure)
    LinkOptions link{};
    std::chrono::milliseconds heartbeat{1000};
    std::function<void(const std::string&)> log;
    /// Emulate a slower device (a phone on a desktop): compute slowdown and a
    /// schedule of extra slowdowns. Its name, threads and memory are replaced
    /// by the fields above (`name`, `threads`, `memory_limit`).
    EmulationProfile emulation{};
};

/// The Transport a session's device loop sees: sends go out over TCP,
/// receives come from the session's own inbox (fed by the worker's pump).
class SessionTransport {
public:
    SessionTransport(TcpTransport& tcp, asio::any_io_executor ex) : tcp_(tcp), inbox_(ex, 4096) {}
    DeviceId self() const noexcept { return tcp_.self(); }
    asio::awaitable<void> send(DeviceId to, Message m) { co_await tcp_.send(to, std::move(m)); }
    asio::awaitable<Message> receive() {
        try {
            co_return co_await inbox_.async_receive(asio::use_awaitable);
        } catch (const asio::system_error&) {
            throw PeerLostError("session", "ended");
        }
    }
    void close() { inbox_.close(); }
    asio::awaitable<void> deliver(Message m) {
        asio::error_code ec;
        co_await inbox_.async_send(asio::error_code{}, std::move(m), asio::redirect_error(asio::use_awaitable, ec));
    }

private:
    TcpTransport& tcp_;
    asio::experimental::concurrent_channel<void(asio::error_code, Message)> inbox_;
};
static_assert(Transport<SessionTransport>);

class Worker {
public:
    static constexpr DeviceId kCoordinator = 0;

    explicit Worker(WorkerOptions opt)
        : opt_(std::move(opt)),
          device_(device_profile(opt_)),
          tcp_(net_.get_executor(), 0,
               TcpTransportOptions{.link = opt_.link, .tls = opt_.tls, .heartbeat = opt_.heartbeat, .name = opt_.name,
                                   .memory_budget = opt_.memory_limit, .threads = device_.threads(),
                                   .log = opt_.log,
                                   .on_control = [this](DeviceId from, const Frame& f) { return on_control(from, f); }}),
          listener_(tcp_, opt_.host, opt_.port) {
        if (!opt_.cache_dir.empty()) cache_.emplace(opt_.cache_dir);
        if (!opt_.model_path.empty()) {
            local_ = GgufFile::open(opt_.model_path);
            local_id_ = model_identity(*local_);
        }
        compute_thread_ = std::thread([this] { compute_.run(); });
        listener_.start([this](const wire::Hello& h, std::shared_ptr<Connection> c) { return admit(h, std::move(c)); });
        asio::co_spawn(net_, pump(), asio::detached);
    }

    ~Worker() {
        stop();
        compute_guard_.reset();
        compute_.stop();
        if (compute_thread_.joinable()) compute_thread_.join();
    }

    std::uint16_t port() const { return listener_.port(); }

    /// Serves until stop(); runs the network on the calling thread.
    void run() {
        auto guard = asio::make_work_guard(net_);
        stop_guard_ = [&guard] { guard.reset(); };
        net_.run();
    }

    /// Stops serving (thread-safe).
    void stop() {
        if (stopped_.exchange(true)) return;
        asio::post(net_, [this] {
            listener_.stop();
            end_session("worker stopping");
            tcp_.close();
            if (stop_guard_) stop_guard_();
            net_.stop();
        });
    }

    const TcpTransport& transport() const noexcept { return tcp_; }

    /// When the device's schedule clock started (its slowdowns count from here).
    void restart_emulation_clock() { device_.restart_clock(); }

private:
    static EmulationProfile device_profile(const WorkerOptions& o) {
        EmulationProfile p = o.emulation;
        p.name = o.name;
        p.threads = o.threads;
        p.memory_bytes = o.memory_limit;
        return p;
    }

    struct Session {
        std::unique_ptr<SessionTransport> transport;
        std::shared_ptr<const Model> model;
        std::unique_ptr<ModelSegment> segment;
        std::unique_ptr<FifoScheduler> scheduler;
        std::unique_ptr<Routing> routing;
        std::unique_ptr<DeviceLoop<ModelSegment, EmulatedDevice, SessionTransport, FifoScheduler>> loop;
        wire::Assign assign;
        std::vector<wire::TensorDesc> missing;
        std::uint64_t bytes_received = 0;
        std::uint64_t bytes_from_cache = 0;
        std::uint64_t reserved = 0;
        bool started = false;
        std::optional<wire::Assign> next;  // a new assignment while serving (live migration, failover)
        std::vector<wire::KvChunk> kv_in;  // KV caches received for the new layers, imported on Commit
    };

    void log(const std::string& s) const {
        if (opt_.log) opt_.log(s);
    }

    asio::awaitable<std::string> admit(const wire::Hello& h, std::shared_ptr<Connection> c) {
        const auto role = static_cast<wire::Role>(h.role);
        if (role == wire::Role::Prober) co_return co_await profiles_.admit_prober(std::move(c));  // placement
        if (role == wire::Role::Coordinator) {
            if (h.device_id != kCoordinator) co_return "a coordinator is device 0, not " + std::to_string(h.device_id);
            if (session_ && tcp_.connected(kCoordinator)) co_return "busy: serving another coordinator";
            end_session("a new coordinator arrived");
            log("coordinator '" + h.name + "' connected");
            co_return "";
        }
        if (role == wire::Role::Peer) {
            if (!session_) co_return "no session: this worker has no assignment yet";
            if (h.model_id != session_->assign.model_id) co_return "peer serves a different model";
            // A peer is another device of this session's plan: it may not take
            // the coordinator's link or this worker's own id.
            bool in_plan = false;
            for (const auto& p : session_->assign.peers) in_plan = in_plan || p.device_id == h.device_id;
            if (h.device_id == kCoordinator || h.device_id == session_->assign.device_id || !in_plan)
                co_return "device " + std::to_string(h.device_id) + " is not a peer of this session";
            co_return "";
        }
        co_return "unknown role " + std::to_string(h.role);
    }

    // Moves messages from the TCP inbox to the current session.
    asio::awaitable<void> pump() {
        for (;;) {
            Message m;
            try {
                m = co_await tcp_.receive();
            } catch (const std::exception&) {
                co_return;
            }
            if (m.kind == MessageKind::Error && m.request == 0) {
                log(m.text);
                if (m.from == 0) end_session("coordinator lost");
                continue;
            }
            if (session_ && session_->started) co_await session_->transport->deliver(std::move(m));
        }
    }

    asio::awaitable<void> on_control(DeviceId from, const Frame& f) {
        const std::string who = "device " + std::to_string(from);
        if (from != kCoordinator) {
            // Peers exchange only data and heartbeats; only the coordinator steers.
            log(who + ": ignored " + wire::frame_type_name(f.type) + " frame from a peer");
            co_return;
        }
        std::string failure;
        try {
            if (co_await profiles_.on_control(f, who)) co_return;  // placement: profiles and link probes
            switch (f.type) {
                case wire::FrameType::Assign: co_await on_assign(wire::decode<wire::Assign>(f.payload, who)); break;
                case wire::FrameType::TensorChunk: co_await on_chunk(wire::decode<wire::TensorChunk>(f.payload, who), who); break;
                case wire::FrameType::Start: on_start(); break;
                case wire::FrameType::Stop: end_session("coordinator said stop"); break;
                case wire::FrameType::Migrate: co_await on_migrate(wire::decode<wire::Migrate>(f.payload, who), who); break;
                case wire::FrameType::KvChunk: on_kv_chunk(wire::decode<wire::KvChunk>(f.payload, who), who); break;
                case wire::FrameType::TraceRequest: co_await on_trace_request(wire::decode<wire::TraceRequest>(f.payload, who)); break;
                case wire::FrameType::StatsRequest: {
                    const auto st = stats();  // named: GCC 12 mishandles temporaries in co_await
                    co_await tcp_.send_control(kCoordinator, wire::FrameType::Stats, st);
                    break;
                }
                default: log(who + ": ignored " + wire::frame_type_name(f.type) + " frame"); break;
            }
        } catch (const ProtocolError&) {
            // A malformed or out-of-place frame: the transport refuses it and
            // closes the link (which ends the session).
            throw;
        } catch (const std::exception& e) {
            failure = e.what();
        }
        if (failure.empty()) co_return;
        // A failed assignment is reported to the coordinator, not fatal to the worker.
        log(who + ": " + failure);
        end_session("assignment failed");
        try {
            const wire::ErrorMsg err{opt_.name + ": " + failure};  // named: GCC 12 mishandles temporaries in co_await
            co_await tcp_.send_control(0, wire::FrameType::Error, err);
        } catch (const std::exception&) {
        }
    }

    asio::awaitable<void> on_assign(wire::Assign a) {
        if (session_ && session_->started && session_->assign.model_id == a.model_id &&
            session_->assign.device_id == a.device_id) {
            co_await on_reassign(a);  // new blocks while serving: keep the caches
            co_return;
        }
        if (from_coordinator_session_active()) end_session("reassigned");
        auto s = std::make_shared<Session>();
        s->assign = std::move(a);
        const auto& as = s->assign;
        if (as.encoding > static_cast<std::uint8_t>(wire::Encoding::Q8_0))
            throw ProtocolError("device 0", "assignment names unknown activation encoding " + std::to_string(as.encoding));
        if (as.device_id == kCoordinator) throw ProtocolError("device 0", "assignment names this worker device 0");
        tcp_.set_self(as.device_id);
        tcp_.set_model_id(as.model_id);
        tcp_.set_encoding(static_cast<wire::Encoding>(as.encoding));  // for the links this worker writes
        for (const auto& p : as.peers)
            if (p.device_id != as.device_id) tcp_.set_address(p.device_id, p.host, p.port);
        // Weights we can get locally: a matching local model file, or the cache.
        const bool local_ok = local_ && local_id_ == as.model_id;
        if (local_ && !local_ok) log("local model file does not match the coordinator's model; receiving weights");
        for (const auto& d : as.tensors) {
            if (local_ok) continue;
            if (!cache_) throw ConfigError("no --cache-dir and no matching local model: nowhere to keep weights");
            if (cache_->has(d))
                s->bytes_from_cache += d.bytes;
            else
                s->missing.push_back(d);
        }
        std::uint64_t weight_bytes = 0;
        for (const auto& d : as.tensors) weight_bytes += d.bytes;
        device_.reserve(weight_bytes);  // MemoryLimitError when over the budget
        s->reserved = weight_bytes;
        session_ = std::move(s);
        const auto need = need_of(session_->missing);
        log("assigned blocks " + std::to_string(as.block_begin) + ":" + std::to_string(as.block_end) + " as device " +
            std::to_string(as.device_id) + "; " + std::to_string(need.hashes.size()) + " of " +
            std::to_string(as.tensors.size()) + " tensors to receive");
        co_await tcp_.send_control(0, wire::FrameType::NeedTensors, need);
        if (session_->missing.empty()) co_await build();
    }

    // One request per distinct content: tensors with equal bytes (e.g. norm
    // weights that are all ones) share a cache entry and travel once.
    static wire::NeedTensors need_of(const std::vector<wire::TensorDesc>& missing) {
        wire::NeedTensors need;
        std::set<std::uint64_t> asked;
        for (const auto& d : missing)
            if (asked.insert(d.hash).second) need.hashes.push_back(d.hash);
        return need;
    }

    bool from_coordinator_session_active() const { return session_ != nullptr; }

    asio::awaitable<void> on_chunk(const wire::TensorChunk& c, const std::string& who) {
        if (!session_ || !cache_) throw ProtocolError(who, "tensor chunk without an assignment");
        bool expected = false;
        for (const auto& d : session_->missing) expected = expected || d.hash == c.hash;
        if (!expected) throw ProtocolError(who, "tensor chunk for a tensor that was not asked for");
        session_->bytes_received += c.data.size();
        if (cache_->write_chunk(c, who)) {
            auto& m = session_->missing;
            m.erase(std::remove_if(m.begin(), m.end(), [&](const wire::TensorDesc& d) { return d.hash == c.hash; }), m.end());
            if (m.empty()) {
                if (session_->next)
                    co_await rebuild();
                else
                    co_await build();
            }
        }
    }

    // ---- live reassignment (migration and failover) ----
    //
    // The coordinator sends a new Assign at a step boundary (no step in the
    // pipeline). The segment keeps the KV caches of the layers it keeps; the
    // weights of new blocks come from the cache, the local file, or the
    // coordinator (NeedTensors, as at setup); the caches of new layers arrive
    // as KvChunk frames before a Commit.
    asio::awaitable<void> on_reassign(const wire::Assign& a) {
        auto& s = *session_;
        if (a.encoding != s.assign.encoding) throw ProtocolError("device 0", "a reassignment may not change the encoding");
        for (const auto& p : a.peers)
            if (p.device_id != a.device_id) tcp_.set_address(p.device_id, p.host, p.port);
        const bool local_ok = local_ && local_id_ == a.model_id;
        s.missing.clear();
        s.bytes_received = 0;
        s.bytes_from_cache = 0;
        s.kv_in.clear();
        std::uint64_t weight_bytes = 0;
        for (const auto& d : a.tensors) {
            weight_bytes += d.bytes;
            if (local_ok) continue;
            if (!cache_) throw ConfigError("no --cache-dir and no matching local model: nowhere to keep weights");
            if (cache_->has(d))
                s.bytes_from_cache += d.bytes;
            else
                s.missing.push_back(d);
        }
        if (weight_bytes > s.reserved)
            device_.reserve(weight_bytes - s.reserved);  // MemoryLimitError when over the budget
        else
            device_.unreserve(s.reserved - weight_bytes);
        s.reserved = weight_bytes;
        s.next = a;
        const auto need = need_of(s.missing);
        log("reassigned to blocks " + std::to_string(s.next->block_begin) + ":" + std::to_string(s.next->block_end) +
            "; " + std::to_string(need.hashes.size()) + " tensors to receive");
        co_await tcp_.send_control(0, wire::FrameType::NeedTensors, need);
        if (s.missing.empty()) co_await rebuild();
    }

    // The new blocks' weights are here: switch the segment and the routing on
    // the compute thread, between two steps of the device loop.
    asio::awaitable<void> rebuild() {
        auto keep = session_;
        auto& s = *keep;
        auto a = std::move(*s.next);
        s.next.reset();
        const BlockRange blocks{a.block_begin, a.block_end};
        auto model = load_model(a, blocks);
        const auto plan = plan_of(a);
        auto switch_blocks = [&]() -> asio::awaitable<void> {
            s.segment->set_blocks(blocks, model);
            s.routing->set_plan(plan);
            co_return;
        };
        co_await asio::co_spawn(compute_, switch_blocks, asio::use_awaitable);
        s.model = std::move(model);
        s.assign = std::move(a);
        wire::Ready r;
        r.weight_bytes = s.segment->weight_bytes();
        r.bytes_received = s.bytes_received;
        r.bytes_from_cache = s.bytes_from_cache;
        totals_.weight_bytes_received += s.bytes_received;
        log("now serving blocks " + to_string(blocks) + " (" + std::to_string(s.bytes_received) + " weight bytes received)");
        co_await tcp_.send_control(0, wire::FrameType::Ready, r);
    }

    asio::awaitable<void> on_migrate(const wire::Migrate& mg, const std::string& who) {
        if (!session_ || !session_->started || session_->next) throw ProtocolError(who, "Migrate outside a running session");
        auto keep = session_;
        auto& s = *keep;
        const auto kv_dim = s.model->config().kv_dim();
        if (mg.op == static_cast<std::uint8_t>(wire::MigrateOp::Export)) {
            // Copy the caches out on the compute thread, then send them.
            std::vector<wire::KvChunk> out;
            std::string bad;
            auto export_caches = [&]() -> asio::awaitable<void> {
                const auto [first, end] = s.segment->kv_layers();
                for (const auto layer : mg.layers) {
                    if (layer < first || layer >= end) {
                        bad = "export of layer " + std::to_string(layer) + ", which this device does not hold";
                        break;
                    }
                    for (const auto seq : s.segment->sequences())
                        out.push_back(kv_to_chunk(seq, layer, kv_dim, s.segment->export_kv(seq, layer)));
                }
                co_return;
            };
            co_await asio::co_spawn(compute_, export_caches, asio::use_awaitable);
            if (!bad.empty()) throw ProtocolError(who, bad);
            for (const auto& c : out) co_await tcp_.send_control(0, wire::FrameType::KvChunk, c);
            wire::Migrate done;
            done.op = static_cast<std::uint8_t>(wire::MigrateOp::Exported);
            done.layers = mg.layers;
            co_await tcp_.send_control(0, wire::FrameType::Migrate, done);
            co_return;
        }
        if (mg.op == static_cast<std::uint8_t>(wire::MigrateOp::Commit)) {
            std::vector<std::pair<wire::KvChunk, LayerKv>> in;
            const auto ctx = s.model->config().context_length;
            for (auto& c : s.kv_in) {
                auto kv = kv_from_chunk(c, kv_dim, ctx, who);
                in.emplace_back(std::move(c), std::move(kv));
            }
            s.kv_in.clear();
            std::string bad;
            auto import_caches = [&]() -> asio::awaitable<void> {
                const auto [first, end] = s.segment->kv_layers();
                for (const auto& [c, kv] : in) {
                    if (c.layer < first || c.layer >= end) {
                        bad = "KV of layer " + std::to_string(c.layer) + ", which this device does not hold";
                        break;
                    }
                    s.segment->import_kv(c.seq, c.layer, kv);
                }
                co_return;
            };
            co_await asio::co_spawn(compute_, import_caches, asio::use_awaitable);
            if (!bad.empty()) throw ProtocolError(who, bad);
            wire::Ready r;
            r.weight_bytes = s.segment->weight_bytes();
            co_await tcp_.send_control(0, wire::FrameType::Ready, r);
            co_return;
        }
        throw ProtocolError(who, "unknown Migrate op " + std::to_string(mg.op));
    }

    void on_kv_chunk(wire::KvChunk c, const std::string& who) {
        if (!session_ || !session_->started) throw ProtocolError(who, "KV chunk outside a running session");
        // Bounded: at most one chunk per layer and sequence in flight.
        const auto& cfg = session_->model->config();
        if (session_->kv_in.size() >= static_cast<std::size_t>(cfg.n_layers) * 4096)
            throw ProtocolError(who, "too many KV chunks");
        session_->kv_in.push_back(std::move(c));
    }

    // All weights are here: build the model slice and the device loop.
    asio::awaitable<void> build() {
        auto& s = *session_;
        const auto& as = s.assign;
        const bool local_ok = local_ && local_id_ == as.model_id;
        const BlockRange blocks{as.block_begin, as.block_end};
        s.model = load_model(as, blocks);
        const auto& c = s.model->config();
        s.segment = std::make_unique<ModelSegment>(s.model, blocks);
        s.scheduler = std::make_unique<FifoScheduler>(std::max<std::uint32_t>(1, as.max_in_flight),
                                                      std::max<std::uint32_t>(1, as.max_batch));
        s.routing = std::make_unique<Routing>(plan_of(as), 0, c.n_blocks());
        s.transport = std::make_unique<SessionTransport>(tcp_, compute_.get_executor());
        device_.restart_clock();  // scheduled slowdowns count from the assignment
        s.loop = std::make_unique<DeviceLoop<ModelSegment, EmulatedDevice, SessionTransport, FifoScheduler>>(
            *s.segment, device_, *s.transport, *s.scheduler, *s.routing, c.dim, &trace_);
        wire::Ready r;
        r.weight_bytes = s.segment->weight_bytes();
        r.bytes_received = s.bytes_received;
        r.bytes_from_cache = local_ok ? r.weight_bytes : s.bytes_from_cache;
        totals_.weight_bytes_received += s.bytes_received;
        totals_.weight_bytes_cached += r.bytes_from_cache;
        log("ready: " + std::to_string(r.weight_bytes) + " weight bytes (" + std::to_string(r.bytes_received) +
            " received, " + std::to_string(r.bytes_from_cache) + " from cache or file)");
        co_await tcp_.send_control(0, wire::FrameType::Ready, r);
    }

    std::shared_ptr<const Model> load_model(const wire::Assign& as, BlockRange blocks) const {
        if (local_ && local_id_ == as.model_id) return Model::from_file(GgufFile(*local_), blocks);
        std::vector<std::byte> meta(as.metadata.size());
        std::memcpy(meta.data(), as.metadata.data(), meta.size());
        auto file = GgufFile::from_owned(std::move(meta), "assignment from the coordinator");
        for (const auto& d : as.tensors) {
            auto mapped = cache_->open(d.hash);
            GgufTensorInfo t;
            t.name = d.name;
            t.shape = d.shape;
            t.type = static_cast<GgmlType>(d.type);
            t.data = mapped->bytes();
            file.add_tensor(std::move(t), mapped);
        }
        return Model::from_file(std::move(file), blocks);
    }

    // The plan an assignment describes: every device's blocks, in block order.
    static Plan plan_of(const wire::Assign& as) {
        Plan plan;
        for (const auto& p : as.peers) plan.stages.push_back({p.device_id, {p.block_begin, p.block_end}});
        std::sort(plan.stages.begin(), plan.stages.end(),
                  [](const Stage& x, const Stage& y) { return x.blocks.begin < y.blocks.begin; });
        return plan;
    }

    void on_start() {
        if (!session_ || !session_->loop) throw ConfigError("start before the weights are loaded");
        if (session_->started) return;
        session_->started = true;
        auto* loop = session_->loop.get();
        ++running_loops_;
        // The completion handler owns the session until its loop has finished.
        asio::co_spawn(compute_, loop->run(), [this, keep = session_](std::exception_ptr) { --running_loops_; });
    }

    // Tracing (docs/protocol.md section 4): Begin starts recording this
    // device's spans; Sync answers with this worker's clock only (for the
    // coordinator's clock offset); Collect hands over what was recorded since
    // the last one, with the device's track name.
    asio::awaitable<void> on_trace_request(const wire::TraceRequest& r) {
        if (r.op == static_cast<std::uint8_t>(wire::TraceOp::Begin)) {
            trace_.set_enabled(true);
            log("tracing on");
            co_return;
        }
        wire::Trace t;
        if (r.op == static_cast<std::uint8_t>(wire::TraceOp::Collect)) {
            for (auto& sp : trace_.take(&t.dropped))
                t.spans.push_back({sp.tid, std::move(sp.name), sp.ts_us, sp.dur_us, std::move(sp.args)});
            if (session_) {
                const auto tracks = trace_.tracks();
                if (const auto it = tracks.find(session_->assign.device_id); it != tracks.end()) t.track_name = it->second;
            }
        } else if (r.op != static_cast<std::uint8_t>(wire::TraceOp::Sync)) {
            throw ConfigError("trace request: unknown op " + std::to_string(r.op));
        }
        t.now_us = trace_.micros(TraceRecorder::clock::now());
        co_await tcp_.send_control(kCoordinator, wire::FrameType::Trace, t);
    }

    // Drops the session; its loop ends once its inbox closes, and the loop's
    // completion handler releases the session's objects after that.
    void end_session(const std::string& why) {
        if (!session_) return;
        log("session ended: " + why);
        auto s = std::move(session_);
        trace_.set_enabled(false);  // the next coordinator asks again if it wants a trace
        trace_.take();
        device_.unreserve(s->reserved);
        if (cache_) cache_->drop_partials();  // a transfer cut short restarts from 0 next time
        if (s->loop) {
            const auto st = s->loop->stats();
            totals_.steps += st.steps;
            totals_.batches += st.batches;
            totals_.tokens += st.tokens;
            totals_.errors += st.errors;
            totals_.busy_seconds += st.busy_seconds;
            totals_.send_seconds += st.send_seconds;
            totals_.queue_seconds += st.queue_seconds;
        }
        if (s->transport) s->transport->close();
    }

    wire::Stats stats() const {
        wire::Stats st = totals_;
        if (session_ && session_->loop) {
            const auto& l = session_->loop->stats();
            st.steps += l.steps;
            st.batches += l.batches;
            st.tokens += l.tokens;
            st.errors += l.errors;
            st.busy_seconds += l.busy_seconds;
            st.send_seconds += l.send_seconds;
            st.queue_seconds += l.queue_seconds;
            st.block_seconds = l.block_seconds;
        }
        const auto t = tcp_.stats();
        st.bytes_in = t.bytes_in;
        st.bytes_out = t.bytes_out;
        st.frames_in = t.frames_in;
        st.frames_out = t.frames_out;
        st.rejected_frames = t.rejected_frames;
        st.activation_bytes_out = t.activation_bytes_out;
        st.activation_tokens_out = t.activation_tokens_out;
        return st;
    }

    WorkerOptions opt_;
    asio::io_context net_{1};
    asio::io_context compute_{1};
    asio::executor_work_guard<asio::io_context::executor_type> compute_guard_{compute_.get_executor()};
    std::thread compute_thread_;
    EmulatedDevice device_;  // slowdown 1: the machine itself
    TcpTransport tcp_;
    Listener listener_;
    std::optional<WeightCache> cache_;
    std::optional<GgufFile> local_;
    std::uint64_t local_id_ = 0;
    std::shared_ptr<Session> session_;
    wire::Stats totals_;
    TraceRecorder trace_{false, wire::kMaxWorkerTraceSpans};  // on while a coordinator asks for a trace
    std::atomic<int> running_loops_{0};
    std::atomic<bool> stopped_{false};
    std::function<void()> stop_guard_;
    ProfileService profiles_{tcp_, device_, compute_.get_executor(), cache_, local_, local_id_,
                             [this](const std::string& s) { log(s); }};
};

}  // namespace tandem
