// A pipeline of simulated devices inside one process.
//
// Each device gets its own thread running its own Asio io_context, its own
// thread pool and its own segment; devices talk over in-process channels. The
// coordinator runs on the caller's thread. This is the real pipeline machinery
// (the same DeviceLoop and Coordinator a networked deployment runs), with
// channels in place of sockets.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>

#include "tandem/runtime/coordinator.hpp"
#include "tandem/runtime/device_loop.hpp"
#include "tandem/transport/channel_transport.hpp"

namespace tandem {

template <Segment S, Device D, Scheduler Sch>
class InProcessPipeline {
public:
    static constexpr DeviceId kCoordinator = 0;

    /// segments[i] runs on devices[i], which gets DeviceId i + 1; `plan` names
    /// those ids and must match the segments' ranges. Every device and the
    /// coordinator get a copy of `scheduler`.
    InProcessPipeline(std::vector<std::unique_ptr<S>> segments, std::vector<std::unique_ptr<D>> devices, Plan plan,
                      Sch scheduler, std::int64_t dim, std::int64_t n_blocks, TraceRecorder* trace = nullptr)
        : segments_(std::move(segments)), devices_(std::move(devices)), scheduler_(scheduler),
          routing_(plan, kCoordinator, n_blocks), trace_(trace) {
        if (segments_.size() != devices_.size())
            throw ConfigError("pipeline needs one device per segment");
        for (const auto& st : plan.stages) {
            if (st.device == kCoordinator || st.device > segments_.size())
                throw ConfigError("plan names device " + std::to_string(st.device) + ", which does not exist");
            if (segments_[st.device - 1]->blocks() != st.blocks)
                throw ConfigError("segment of device " + std::to_string(st.device) + " runs " +
                                  to_string(segments_[st.device - 1]->blocks()) + " but the plan says " +
                                  to_string(st.blocks));
        }
        update_consumers();
        for (std::size_t i = 0; i < segments_.size(); ++i) nodes_.push_back(std::make_unique<Node>());
        // Each inbox lives on its receiver's executor.
        std::vector<asio::any_io_executor> executors{coord_io_.get_executor()};
        for (auto& n : nodes_) executors.push_back(n->io.get_executor());
        hub_ = std::make_shared<ChannelHub>(executors);
        coord_transport_ = std::make_unique<ChannelTransport>(hub_, kCoordinator);
        coordinator_ = std::make_unique<Coordinator<ChannelTransport, Sch>>(*coord_transport_, scheduler_, routing_, trace_);
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
            auto& n = *nodes_[i];
            n.transport = std::make_unique<ChannelTransport>(hub_, static_cast<DeviceId>(i + 1));
            n.scheduler = std::make_unique<Sch>(scheduler);
            n.loop = std::make_unique<DeviceLoop<S, D, ChannelTransport, Sch>>(
                *segments_[i], *devices_[i], *n.transport, *n.scheduler, routing_, dim, trace_);
        }
        for (auto& n : nodes_) {
            asio::co_spawn(n->io, n->loop->run(), asio::detached);
            n->thread = std::thread([&io = n->io] { io.run(); });
        }
    }

    InProcessPipeline(const InProcessPipeline&) = delete;
    InProcessPipeline& operator=(const InProcessPipeline&) = delete;

    ~InProcessPipeline() {
        hub_->close_all();
        for (auto& n : nodes_) {
            n->guard.reset();
            if (n->thread.joinable()) n->thread.join();
        }
        // The inboxes live in the hub but are registered with the devices'
        // io_contexts (members of nodes_, destroyed before hub_): destroy
        // the hub, and everything holding it, first.
        for (auto& n : nodes_) {
            n->loop.reset();
            n->transport.reset();
        }
        coordinator_.reset();
        coord_transport_.reset();
        hub_.reset();
    }

    /// Queues a request; run() generates it.
    RequestId submit(RequestSpec spec) { return coordinator_->submit(std::move(spec)); }

    /// Generates every submitted request; blocks the calling thread.
    std::vector<RequestResult> run() {
        std::vector<RequestResult> results;
        std::exception_ptr error;
        asio::co_spawn(coord_io_, coordinator_->run(), [&](std::exception_ptr e, std::vector<RequestResult> r) {
            error = e;
            results = std::move(r);
        });
        coord_io_.restart();
        coord_io_.run();
        if (error) std::rethrow_exception(error);
        return results;
    }

    /// Moves blocks to match `next` once `after_tokens` more tokens have been
    /// sampled, at the first step boundary after that: every device finishes
    /// its in-flight steps, KV caches of moving layers go to their new owners,
    /// then generation resumes under the new plan.
    void move_blocks(Plan next, std::uint64_t after_tokens = 0) {
        next.validate(routing_.n_blocks());
        coordinator_->at_boundary([this, next]() -> asio::awaitable<void> { co_await migrate(next); }, after_tokens);
    }

    /// Unplugs device i (0-based): its inbox closes, so every send to it fails
    /// and its loop ends. For failover tests and benchmarks.
    void kill_device(std::size_t i) { hub_->inbox(static_cast<DeviceId>(i + 1)).close(); }

    /// Survive lost devices: re-plan over the devices still in the plan with
    /// `planner` (default: an even split of the layers), then the coordinator
    /// replays every active request (see Coordinator::on_device_lost).
    void enable_failover(std::function<Plan(const std::vector<DeviceId>&)> planner = {}) {
        if (!planner)
            planner = [this](const std::vector<DeviceId>& ids) {
                // Even split by blocks at layer boundaries, without needing the model's config.
                const std::int64_t n_layers = (routing_.n_blocks() - 2) / 2;
                ModelConfig c;
                c.n_layers = n_layers;
                return Plan::even(c, ids);
            };
        coordinator_->on_device_lost([this, planner](DeviceId lost, const std::string&) -> asio::awaitable<void> {
            std::vector<DeviceId> alive;
            for (const auto& st : routing_.plan().stages)
                if (st.device != lost) alive.push_back(st.device);
            if (alive.empty()) throw PeerLostError("device " + std::to_string(lost), "no device left to run the model");
            const Plan next = planner(alive);  // named: GCC 12 and temporaries in co_await
            co_await migrate(next, lost);
        });
    }
    const std::vector<RecoveryEvent>& recoveries() const noexcept { return coordinator_->recoveries(); }

    Plan plan() const { return routing_.plan(); }
    const ChannelHub& hub() const noexcept { return *hub_; }
    std::size_t size() const noexcept { return nodes_.size(); }
    const DeviceLoopStats& device_stats(std::size_t i) const noexcept { return nodes_[i]->loop->stats(); }
    S& segment(std::size_t i) noexcept { return *segments_[i]; }
    D& device(std::size_t i) noexcept { return *devices_[i]; }
    /// Microseconds the last migration took (the generation pause), or 0.
    double last_migration_us() const noexcept { return last_migration_us_; }

private:
    struct Node {
        asio::io_context io{1};
        asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
        std::unique_ptr<ChannelTransport> transport;
        std::unique_ptr<Sch> scheduler;
        std::unique_ptr<DeviceLoop<S, D, ChannelTransport, Sch>> loop;
        std::thread thread;
    };

    // Runs fn on device i's own thread and waits for it.
    template <typename F>
    asio::awaitable<void> on_device(std::size_t i, F fn) {
        // Named, not a temporary inside co_await (GCC 12 destroys those twice).
        auto run = [fn = std::move(fn)]() mutable -> asio::awaitable<void> {
            fn();
            co_return;
        };
        co_await asio::co_spawn(nodes_[i]->io, std::move(run), asio::use_awaitable);
    }

    // `gone`: a device whose state is lost (failover): nothing is read from it.
    asio::awaitable<void> migrate(Plan next, DeviceId gone = 0) {
        const auto t0 = std::chrono::steady_clock::now();
        auto new_range = [&](std::size_t i) {
            const auto* st = next.stage_of_device(static_cast<DeviceId>(i + 1));
            return st ? st->blocks : BlockRange{0, 0};
        };
        // 1. Every device exports the caches of layers it is about to lose.
        std::map<std::int64_t, std::map<SeqId, LayerKv>> moving;  // layer -> seq -> cache
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
            if (gone != 0 && i + 1 == gone) continue;
            co_await on_device(i, [&, i] {
                auto& seg = *segments_[i];
                const auto [f, e] = seg.kv_layers();
                const auto r = new_range(i);
                for (std::int64_t l = f; l < e; ++l) {
                    if (!r.empty() && l >= r.first_kv_layer() && l < kv_end(r)) continue;
                    for (const auto seq : seg.sequences()) moving[l][seq] = seg.export_kv(seq, l);
                }
            });
        }
        // 2. Every device takes its new range; 3. new owners import the caches.
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
            co_await on_device(i, [&, i] {
                auto& seg = *segments_[i];
                const auto r = new_range(i);
                seg.set_blocks(r);
                if (r.empty()) return;
                for (auto& [layer, per_seq] : moving) {
                    if (layer < r.first_kv_layer() || layer >= kv_end(r)) continue;
                    for (auto& [seq, kv] : per_seq) seg.import_kv(seq, layer, kv);
                }
            });
        }
        routing_.set_plan(std::move(next));
        update_consumers();
        last_migration_us_ = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    }

    // Layers [first_kv_layer, kv_end) keep a KV cache in range r.
    std::int64_t kv_end(BlockRange r) const {
        const std::int64_t n_layers = (routing_.n_blocks() - 2) / 2;
        return std::max(r.first_kv_layer(), std::min(r.end / 2, n_layers));
    }

    // Which devices need each extra tensor, straight from its producer.
    void update_consumers() {
        std::map<std::string, std::vector<DeviceId>> consumers;
        const auto plan = routing_.plan();
        for (const auto& st : plan.stages) {
            auto& seg = *segments_[st.device - 1];
            const auto produced = seg.produces();
            const std::set<std::string> own(produced.begin(), produced.end());
            for (const auto& name : seg.consumes())
                if (!own.count(name)) consumers[name].push_back(st.device);
        }
        for (auto& [name, devs] : consumers) routing_.set_consumers(name, devs);
    }

    std::vector<std::unique_ptr<S>> segments_;
    std::vector<std::unique_ptr<D>> devices_;
    Sch scheduler_;
    Routing routing_;
    TraceRecorder* trace_;
    asio::io_context coord_io_{1};
    std::shared_ptr<ChannelHub> hub_;
    std::unique_ptr<ChannelTransport> coord_transport_;
    std::unique_ptr<Coordinator<ChannelTransport, Sch>> coordinator_;
    std::vector<std::unique_ptr<Node>> nodes_;
    double last_migration_us_ = 0;
};

}  // namespace tandem
