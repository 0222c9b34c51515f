// The coordinator's half of two control conversations that both the live
// profiler (runtime/live_profile.hpp, before a plan) and the pipeline
// (runtime/remote_pipeline.hpp, while it runs) hold with a worker:
//
//   streaming the tensors a worker asked for (NeedTensors -> TensorChunk x M),
//   each distinct content once, in chunks;
//
//   timing the worker's compute on this model's blocks:
//     ProfileRequest{measure = true, the sampled blocks' tensors}
//       -> NeedTensors -> TensorChunk x M -> Profile
//
// The worker's half is runtime/profile_service.hpp. Both are templates over
// the transport (anything with `awaitable send_control(id, type, msg)`) and
// over how the caller waits for a worker's next control frame, since each
// caller has its own inboxes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>

#include "tandem/placement/profile.hpp"
#include "tandem/runtime/placement_plan.hpp"
#include "tandem/runtime/profiler.hpp"
#include "tandem/runtime/weights.hpp"
#include "tandem/transport/protocol.hpp"

namespace tandem {

/// The tensors a worker needs to profile `model`: those of the blocks
/// profiled_blocks() samples, each once.
inline std::vector<wire::TensorDesc> profile_tensors(const Model& model, const ProfilerOptions& opt = {}) {
    std::vector<wire::TensorDesc> out;
    std::set<std::string> seen;
    for (const auto b : profiled_blocks(model.config(), opt))
        for (auto& d : describe_tensors(model, BlockRange{b, b + 1}))
            if (seen.insert(d.name).second) out.push_back(std::move(d));
    return out;
}

namespace detail {

inline KindTimes kind_times_from_wire(const std::vector<double>& v, const std::string& who) {
    if (v.size() != wire::kProfileKinds)
        throw ProtocolError(who, "profile holds " + std::to_string(v.size()) + " times per kind, not " +
                                     std::to_string(wire::kProfileKinds));
    KindTimes t;
    for (std::size_t k = 0; k < wire::kProfileKinds; ++k) {
        if (!(v[k] >= 0) || !std::isfinite(v[k]) || v[k] > 3600)
            throw ProtocolError(who, "profile holds a block time that is not a finite number of seconds");
        t.s[k] = v[k];
    }
    return t;
}

}  // namespace detail

/// A worker's Profile frame, decoded and checked: a usable name, a memory
/// budget, and times exactly when `measured` (ProtocolError otherwise).
inline wire::Profile check_profile_reply(std::span<const std::byte> payload, const std::string& who, bool measured) {
    auto p = wire::decode<wire::Profile>(payload, who);
    if (p.name.empty() || p.name.size() > 256) throw ProtocolError(who, "profile without a usable name");
    if (p.fingerprint.size() > 256) throw ProtocolError(who, "profile fingerprint too long");
    if (p.memory_bytes == 0) throw ProtocolError(who, "profile with no memory");
    if (p.measured != measured)
        throw ProtocolError(who, measured ? "profile without the times asked for" : "times that were not asked for");
    return p;
}

/// Sends worker `id` exactly the tensors of `all` whose hashes it asked for
/// (`wanted`; each distinct content once), in chunks of `chunk_bytes`.
/// `progress(sent, total)` after each chunk, when given. A hash that is not
/// in `all` is a ProtocolError. Returns the bytes sent.
template <typename Transport>
asio::awaitable<std::uint64_t> stream_asked_tensors(Transport& tcp, DeviceId id, const GgufFile& file,
                                                    const std::vector<wire::TensorDesc>& all,
                                                    const std::vector<std::uint64_t>& wanted, std::size_t chunk_bytes,
                                                    const std::string& who,
                                                    std::function<void(std::uint64_t, std::uint64_t)> progress = {}) {
    std::vector<const wire::TensorDesc*> todo;
    std::set<std::uint64_t> seen;
    std::uint64_t total = 0, sent = 0;
    for (const auto h : wanted) {
        if (!seen.insert(h).second) continue;  // equal contents travel once
        const auto it = std::find_if(all.begin(), all.end(), [h](const wire::TensorDesc& d) { return d.hash == h; });
        if (it == all.end()) throw ProtocolError(who, "asked for a tensor it was not offered");
        todo.push_back(&*it);
        total += it->bytes;
    }
    if (progress) progress(0, total);
    for (const auto* d : todo) {
        const auto& t = file.tensor(d->name);
        for (std::uint64_t off = 0; off < t.n_bytes(); off += chunk_bytes) {
            const auto n = std::min<std::uint64_t>(chunk_bytes, t.n_bytes() - off);
            wire::TensorChunk c;
            c.hash = d->hash;
            c.offset = off;
            c.total = t.n_bytes();
            c.data.resize(static_cast<std::size_t>(n));
            std::memcpy(c.data.data(), t.data.data() + off, static_cast<std::size_t>(n));
            co_await tcp.send_control(id, wire::FrameType::TensorChunk, c);
            sent += n;
            if (progress) progress(sent, total);
        }
    }
    co_return sent;
}

/// What a worker measured of itself for one model.
struct MeasuredProfile {
    DeviceProfile profile;         // its times per block kind, name, threads and memory
    double seconds = 0;            // the worker's measurement took
    std::uint64_t bytes_sent = 0;  // tensor bytes streamed to it for the measurement
};

/// Has worker `id` time `model`'s sampled blocks on its own device and
/// threads (emulated slowdown included), streaming it the tensors it lacks.
/// `expect(id, type)` is the caller's wait for the worker's next control
/// frame of that type (a coroutine returning the Frame; it throws on an
/// Error frame or a lost link).
template <typename Transport, typename Expect>
asio::awaitable<MeasuredProfile> request_profile(Transport& tcp, DeviceId id, const Model& model,
                                                 const ProfilerOptions& opt, std::size_t chunk_bytes, Expect expect,
                                                 const std::string& who) {
    wire::ProfileRequest req;
    req.measure = true;
    req.model_id = model_identity(model.file());
    req.metadata = metadata_image(model.file(), model.config());
    req.tensors = profile_tensors(model, opt);
    req.reps = static_cast<std::uint32_t>(opt.reps);
    req.prefill_tokens = opt.prefill_tokens;
    req.decode_position = opt.decode_position;
    req.max_layers = opt.max_layers;
    req.min_run_seconds = opt.min_run_seconds;
    co_await tcp.send_control(id, wire::FrameType::ProfileRequest, req);
    const auto need_frame = co_await expect(id, wire::FrameType::NeedTensors);
    const auto need = wire::decode<wire::NeedTensors>(need_frame.payload, who);
    MeasuredProfile out;
    const std::function<void(std::uint64_t, std::uint64_t)> no_progress;  // named: GCC 12 and temporaries in co_await
    out.bytes_sent = co_await stream_asked_tensors(tcp, id, model.file(), req.tensors, need.hashes, chunk_bytes, who,
                                                   no_progress);
    const auto reply_frame = co_await expect(id, wire::FrameType::Profile);
    const auto reply = check_profile_reply(reply_frame.payload, who, true);
    out.seconds = reply.seconds;
    out.profile.name = reply.name;
    out.profile.threads = reply.threads;
    out.profile.memory_bytes = reply.memory_bytes;
    out.profile.decode = detail::kind_times_from_wire(reply.decode_s, who);
    out.profile.prefill = detail::kind_times_from_wire(reply.prefill_s, who);
    out.profile.model = model_identity(model);
    co_return out;
}

/// Seconds per decode step that `profile` predicts for `blocks` of `shape`.
inline double predicted_decode_seconds(const DeviceProfile& profile, const ModelShape& shape, BlockRange blocks) {
    double t = 0;
    for (auto b = blocks.begin; b < blocks.end; ++b) t += profile.decode[shape.blocks[static_cast<std::size_t>(b)].kind];
    return t;
}

}  // namespace tandem
