// The worker's side of live profiling (placement, issue 6): a coordinator
// measures each worker's compute speed and every link before it plans.
//
//   ProfileRequest{measure = false}  -> Profile: name, threads, memory and a
//                                       fingerprint of the device (the key of
//                                       the coordinator's profile cache)
//   ProfileRequest{measure = true}   -> NeedTensors (the sampled blocks'
//                                       tensors it lacks), TensorChunk x M,
//                                       then Profile with seconds per token of
//                                       each block kind, timed by profile_blocks()
//                                       on this worker's own device (emulated
//                                       slowdown included) and threads
//   ProbeRequest{host, port}         -> ProbeResult: this worker opens a probe
//                                       link to that worker and measures it
//                                       (transport/link_probe.hpp)
//   a probe link from another device -> served: Echo answered with EchoReply
//
// Profiling runs on the compute thread (between steps of a running session,
// if any); the network thread keeps answering heartbeats. Received tensors
// go to the worker's weight cache, so a later assignment of those blocks
// streams nothing again. While it profiles, the worker reserves the largest
// sampled block's weights against its memory limit: the profiler touches
// one block at a time, and a device that cannot hold one block cannot run it.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/use_awaitable.hpp>

#include "tandem/core/hash.hpp"
#include "tandem/emulation/emulated_device.hpp"
#include "tandem/runtime/profiler.hpp"
#include "tandem/runtime/weights.hpp"
#include "tandem/transport/link_probe.hpp"
#include "tandem/transport/tcp_transport.hpp"

namespace tandem {

/// Probe links a worker serves at once; more are refused ("busy").
inline constexpr int kMaxProbeLinks = 8;

/// The profiler options a ProfileRequest carries, checked against the
/// protocol's bounds (ConfigError outside them).
inline ProfilerOptions profiler_options_from(const wire::ProfileRequest& r) {
    if (r.reps < 1 || r.reps > wire::kMaxProfileReps)
        throw ConfigError("profile: reps must be 1.." + std::to_string(wire::kMaxProfileReps));
    if (r.prefill_tokens < 1 || r.prefill_tokens > wire::kMaxProfileTokens || r.decode_position < 0 ||
        r.decode_position >= wire::kMaxProfileTokens)
        throw ConfigError("profile: prefill tokens and decode position must be below " +
                          std::to_string(wire::kMaxProfileTokens));
    if (r.max_layers < 1 || r.max_layers > wire::kMaxProfileLayers)
        throw ConfigError("profile: max_layers must be 1.." + std::to_string(wire::kMaxProfileLayers));
    if (!(r.min_run_seconds >= 0) || r.min_run_seconds > wire::kMaxProfileRunSeconds)
        throw ConfigError("profile: min_run_seconds must be in [0, 1]");
    ProfilerOptions o;
    o.reps = static_cast<int>(r.reps);
    o.prefill_tokens = r.prefill_tokens;
    o.decode_position = r.decode_position;
    o.max_layers = r.max_layers;
    o.min_run_seconds = r.min_run_seconds;
    return o;
}

class ProfileService {
public:
    /// References stay owned by the worker, which outlives this service.
    ProfileService(TcpTransport& tcp, EmulatedDevice& device, asio::any_io_executor compute,
                   std::optional<WeightCache>& cache, const std::optional<GgufFile>& local, const std::uint64_t& local_id,
                   std::function<void(const std::string&)> log)
        : tcp_(tcp), device_(device), compute_(std::move(compute)), cache_(cache), local_(local), local_id_(local_id),
          log_(std::move(log)) {}

    /// Handles a placement frame from the coordinator's link; false for any
    /// other frame (a TensorChunk only when it belongs to a profile). A
    /// request that cannot be served is answered with an Error frame; a
    /// malformed one throws ProtocolError (the transport closes the link).
    asio::awaitable<bool> on_control(const Frame& f, const std::string& who) {
        std::string failure;
        try {
            switch (f.type) {
                case wire::FrameType::ProfileRequest:
                    co_await on_request(wire::decode<wire::ProfileRequest>(f.payload, who));
                    co_return true;
                case wire::FrameType::TensorChunk: {
                    if (!job_) co_return false;
                    auto c = wire::decode<wire::TensorChunk>(f.payload, who);
                    if (!job_->wants(c.hash)) co_return false;
                    co_await on_chunk(std::move(c), who);
                    co_return true;
                }
                case wire::FrameType::ProbeRequest:
                    co_await on_probe(wire::decode<wire::ProbeRequest>(f.payload, who));
                    co_return true;
                default: co_return false;
            }
        } catch (const ProtocolError&) {
            job_.reset();
            if (cache_) cache_->drop_partials();
            throw;
        } catch (const std::exception& e) {
            failure = e.what();
        }
        job_.reset();
        log("profile request failed: " + failure);
        const wire::ErrorMsg err{tcp_.options().name + ": " + failure};  // named: GCC 12 and co_await temporaries
        co_await tcp_.send_control(0, wire::FrameType::Error, err);
        co_return true;
    }

    /// Admits a probe link (Role::Prober): answers its Hello and serves its
    /// echoes on its own, outside the transport. Returns the listener's
    /// "taken", or a refusal.
    asio::awaitable<std::string> admit_prober(std::shared_ptr<Connection> c) {
        if (probers_->load() >= kMaxProbeLinks)
            co_return "busy: " + std::to_string(kMaxProbeLinks) + " probe links already open";
        wire::HelloAck ack;
        ack.accepted = true;
        ack.name = tcp_.options().name;
        ack.memory_budget = tcp_.options().memory_budget;
        ack.threads = tcp_.options().threads;
        co_await c->send(wire::FrameType::HelloAck, ack);
        ++*probers_;
        asio::co_spawn(c->executor(), [c, n = probers_]() -> asio::awaitable<void> {
            co_await serve_echoes(c);
            --*n;
        }, asio::detached);
        co_return "taken";
    }

    /// A digest of what makes this device's times what they are: host, CPU
    /// model, threads, memory budget and emulation (slowdown and schedule).
    std::string fingerprint() const {
        std::string s;
        char host[256] = {};
        if (::gethostname(host, sizeof host - 1) == 0) s += host;
        s += "|" + cpu_model();
        const auto& e = device_.profile();
        s += "|t" + std::to_string(device_.threads()) + "|m" + std::to_string(device_.memory_budget()) + "|x" +
             std::to_string(e.slowdown);
        for (const auto& st : e.schedule.steps()) s += "|" + std::to_string(st.at_seconds) + ":" + std::to_string(st.factor);
        return hex64(xxh64(s.data(), s.size(), 0));
    }

private:
    struct Job {
        wire::ProfileRequest request;
        ProfilerOptions options;
        std::vector<wire::TensorDesc> missing;
        std::uint64_t bytes_received = 0;
        bool wants(std::uint64_t hash) const {
            for (const auto& d : missing)
                if (d.hash == hash) return true;
            return false;
        }
    };

    void log(const std::string& s) const {
        if (log_) log_(s);
    }

    static std::string cpu_model() {
        std::ifstream in("/proc/cpuinfo");
        std::string line;
        while (std::getline(in, line))
            if (line.rfind("model name", 0) == 0 || line.rfind("Hardware", 0) == 0) return line.substr(line.find(':') + 1);
        return "?";
    }

    wire::Profile identity() const {
        wire::Profile p;
        p.name = tcp_.options().name;
        p.fingerprint = fingerprint();
        p.threads = device_.threads();
        p.memory_bytes = device_.memory_budget() == std::numeric_limits<std::uint64_t>::max() ? physical_memory_bytes()
                                                                                              : device_.memory_budget();
        return p;
    }

    bool local_ok(std::uint64_t model_id) const { return local_ && local_id_ == model_id; }

    asio::awaitable<void> on_request(wire::ProfileRequest r) {
        job_.reset();
        if (!r.measure) {
            const auto p = identity();  // named: GCC 12 and co_await temporaries
            co_await tcp_.send_control(0, wire::FrameType::Profile, p);
            co_return;
        }
        auto job = std::make_unique<Job>();
        job->options = profiler_options_from(r);
        if (r.tensors.empty()) throw ConfigError("profile: no tensors to time");
        std::set<std::uint64_t> asked;
        wire::NeedTensors need;
        if (!local_ok(r.model_id)) {
            if (!cache_) throw ConfigError("no --cache-dir and no matching local model: nowhere to keep weights");
            cache_->drop_partials();  // a transfer cut short earlier restarts from 0
            for (const auto& d : r.tensors)
                if (!cache_->has(d)) {
                    job->missing.push_back(d);
                    if (asked.insert(d.hash).second) need.hashes.push_back(d.hash);
                }
        }
        job->request = std::move(r);
        job_ = std::move(job);
        log("profiling requested: " + std::to_string(job_->request.tensors.size()) + " tensors, " +
            std::to_string(need.hashes.size()) + " to receive");
        co_await tcp_.send_control(0, wire::FrameType::NeedTensors, need);
        if (job_->missing.empty()) co_await measure();
    }

    asio::awaitable<void> on_chunk(wire::TensorChunk c, const std::string& who) {
        job_->bytes_received += c.data.size();
        if (!cache_->write_chunk(c, who)) co_return;
        auto& m = job_->missing;
        m.erase(std::remove_if(m.begin(), m.end(), [&](const wire::TensorDesc& d) { return d.hash == c.hash; }), m.end());
        if (m.empty()) co_await measure();
    }

    // Every tensor is here: bind the sampled blocks and time them.
    asio::awaitable<void> measure() {
        const auto job = std::shared_ptr<Job>(std::move(job_));
        const auto& r = job->request;
        GgufFile file = local_ok(r.model_id) ? GgufFile(*local_) : compose(r);
        auto sampled = std::make_shared<const SampledModel>(file, job->options);
        const auto need = sampled->largest_block_bytes();
        try {
            device_.reserve(need);
        } catch (const MemoryLimitError& e) {
            throw MemoryLimitError(std::string("profiling needs its largest sampled block in memory: ") + e.what(),
                                   e.requested(), e.available());
        }
        const auto t0 = std::chrono::steady_clock::now();
        auto& device = device_;
        // Released by hand, not by a destructor: a frame destroyed with the
        // worker's io_context must not touch the (already destroyed) device.
        // The lambda and the awaitable are named: GCC 12 destroys a capturing
        // temporary inside a co_await expression twice (ASan caught it here:
        // `sampled` released twice when profiling finished).
        DeviceProfile profile;
        try {
            auto time_blocks = [sampled, opt = job->options, &device]() -> asio::awaitable<DeviceProfile> {
                co_return profile_blocks(sampled->config(), sampled->arch_of(), "", device, opt);
            };
            auto timed = asio::co_spawn(compute_, std::move(time_blocks), asio::use_awaitable);
            profile = co_await std::move(timed);
        } catch (...) {
            device_.unreserve(need);
            throw;
        }
        device_.unreserve(need);
        auto p = identity();
        p.measured = true;
        for (std::size_t k = 0; k < wire::kProfileKinds; ++k) {
            p.decode_s.push_back(profile.decode.s[k]);
            p.prefill_s.push_back(profile.prefill.s[k]);
        }
        p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        p.bytes_received = job->bytes_received;
        log("profiled in " + std::to_string(p.seconds) + " s: attention " +
            std::to_string(profile.decode[CostKind::Attention] * 1e3) + " ms, ffn " +
            std::to_string(profile.decode[CostKind::Ffn] * 1e3) + " ms per token");
        co_await tcp_.send_control(0, wire::FrameType::Profile, p);
    }

    // The metadata image plus the tensors from the cache, as one file.
    GgufFile compose(const wire::ProfileRequest& r) const {
        std::vector<std::byte> meta(r.metadata.size());
        if (!meta.empty()) std::memcpy(meta.data(), r.metadata.data(), meta.size());
        auto file = GgufFile::from_owned(std::move(meta), "profile request from the coordinator");
        for (const auto& d : r.tensors) {  // add_tensor checks bytes against shape and type, and repeats
            auto mapped = cache_->open(d.hash);
            GgufTensorInfo t;
            t.name = d.name;
            t.shape = d.shape;
            t.type = static_cast<GgmlType>(d.type);
            t.data = mapped->bytes();
            file.add_tensor(std::move(t), mapped);
        }
        return file;
    }

    asio::awaitable<void> on_probe(wire::ProbeRequest r) {
        validate_probe_request(r);
        log("probing the link to " + r.host + ":" + std::to_string(r.port));
        const auto result = co_await measure_link(tcp_, r.host, r.port, r);
        co_await tcp_.send_control(0, wire::FrameType::ProbeResult, result);
    }

    TcpTransport& tcp_;
    EmulatedDevice& device_;
    asio::any_io_executor compute_;
    std::optional<WeightCache>& cache_;
    const std::optional<GgufFile>& local_;
    const std::uint64_t& local_id_;
    std::function<void(const std::string&)> log_;
    std::unique_ptr<Job> job_;
    std::shared_ptr<std::atomic<int>> probers_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace tandem
