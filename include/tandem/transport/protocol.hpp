// The payloads of tandem's frames (see wire.hpp for the framing and
// docs/protocol.md for the conversation): handshake, control and data.
//
// Activations travel as F32 (exact, the default), F16 or Q8_0; the encoding is
// chosen per link and recorded in each tensor, so a receiver always knows how
// to decode what it got. Decoded tensors must be finite: a frame carrying NaN
// or infinity is refused.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <string>
#include <vector>

#include "tandem/core/half.hpp"
#include "tandem/gguf/types.hpp"
#include "tandem/transport/message.hpp"
#include "tandem/transport/wire.hpp"

namespace tandem::wire {

// Prober: a worker (or coordinator) measuring a link; it may only send Echo
// frames (placement, docs/protocol.md section 4).
enum class Role : std::uint8_t { Coordinator = 1, Worker = 2, Peer = 3, Prober = 4 };

struct Hello {
    std::uint16_t version = kProtocolVersion;
    std::uint8_t role = static_cast<std::uint8_t>(Role::Coordinator);
    std::uint64_t model_id = 0;     // hash of the GGUF metadata and tensor table (0: not yet known)
    std::uint32_t device_id = 0;    // the sender's id in the pipeline
    std::string name;
    template <class A>
    void serialize(A& ar) {
        ar(version, role, model_id, device_id);
        str(ar, name);
    }
};

struct HelloAck {
    bool accepted = false;
    std::string reason;             // why not, when refused
    std::string name;               // the listener's name
    std::uint64_t memory_budget = 0;
    std::uint32_t threads = 0;
    template <class A>
    void serialize(A& ar) {
        boolean(ar, accepted);
        str(ar, reason);
        str(ar, name);
        ar(memory_budget, threads);
    }
};

struct TensorDesc {
    std::string name;
    std::uint32_t type = 0;            // GgmlType
    std::vector<std::uint64_t> shape;  // ggml order
    std::uint64_t hash = 0;            // xxh64 of its bytes: the cache key
    std::uint64_t bytes = 0;
    template <class A>
    void serialize(A& ar) {
        str(ar, name);
        ar(type);
        vec(ar, shape);
        ar(hash, bytes);
    }
};

/// A device of the pipeline: where to reach it and which blocks it runs.
struct PeerAddr {
    std::uint32_t device_id = 0;
    std::string host;
    std::uint16_t port = 0;
    std::int64_t block_begin = 0;
    std::int64_t block_end = 0;
    template <class A>
    void serialize(A& ar) {
        ar(device_id);
        str(ar, host);
        ar(port, block_begin, block_end);
    }
};

enum class Encoding : std::uint8_t { F32 = 0, F16 = 1, Q8_0 = 2 };

inline const char* encoding_name(Encoding e) noexcept {
    switch (e) {
        case Encoding::F32: return "f32";
        case Encoding::F16: return "f16";
        case Encoding::Q8_0: return "q8_0";
    }
    return "?";
}

struct Assign {
    std::uint32_t device_id = 0;
    std::int64_t block_begin = 0;
    std::int64_t block_end = 0;
    std::uint64_t model_id = 0;
    std::vector<std::uint8_t> metadata;  // a tensor-less GGUF image: the model's metadata
    std::vector<TensorDesc> tensors;     // what the blocks need
    std::vector<PeerAddr> peers;         // every device: address and blocks (the plan), for direct sends
    std::uint8_t encoding = static_cast<std::uint8_t>(Encoding::F32);
    std::uint32_t max_in_flight = 1;
    std::uint32_t max_batch = 1;
    template <class A>
    void serialize(A& ar) {
        ar(device_id, block_begin, block_end, model_id);
        vec(ar, metadata);
        list(ar, tensors, 8 + 4 + 8 + 8 + 8);  // TensorDesc: name, type, shape, hash, bytes
        list(ar, peers, 4 + 8 + 2 + 8 + 8);     // PeerAddr: id, host, port, blocks
        ar(encoding, max_in_flight, max_batch);
    }
};

struct NeedTensors {
    std::vector<std::uint64_t> hashes;
    template <class A>
    void serialize(A& ar) {
        vec(ar, hashes);
    }
};

struct TensorChunk {
    std::uint64_t hash = 0;
    std::uint64_t offset = 0;
    std::uint64_t total = 0;
    std::vector<std::uint8_t> data;
    template <class A>
    void serialize(A& ar) {
        ar(hash, offset, total);
        vec(ar, data);
    }
};

struct Ready {
    std::uint64_t weight_bytes = 0;      // bytes of weights the segment uses
    std::uint64_t bytes_received = 0;    // tensor bytes that came over the network
    std::uint64_t bytes_from_cache = 0;  // tensor bytes found in the local cache or file
    template <class A>
    void serialize(A& ar) {
        ar(weight_bytes, bytes_received, bytes_from_cache);
    }
};

struct Ping {
    std::uint64_t nonce = 0;
    std::uint64_t sent_us = 0;  // sender's clock, echoed back in Pong
    template <class A>
    void serialize(A& ar) {
        ar(nonce, sent_us);
    }
};

struct Stats {
    std::uint64_t steps = 0, batches = 0, tokens = 0, errors = 0;
    double busy_seconds = 0, send_seconds = 0;
    std::uint64_t bytes_in = 0, bytes_out = 0, frames_in = 0, frames_out = 0;
    std::uint64_t weight_bytes_received = 0, weight_bytes_cached = 0;
    std::uint64_t rejected_frames = 0;
    std::uint64_t activation_bytes_out = 0;   // encoded tensor bytes in Data frames sent
    std::uint64_t activation_tokens_out = 0;  // token positions those frames carried
    double queue_seconds = 0;  // steps complete but waiting for the device, summed over steps (version 3)
    /// Wall seconds per block of the model computed in the current session
    /// (indexed by block id; the emulated stretch not included), version 3.
    std::vector<double> block_seconds;
    template <class A>
    void serialize(A& ar) {
        ar(steps, batches, tokens, errors, busy_seconds, send_seconds, bytes_in, bytes_out, frames_in, frames_out,
           weight_bytes_received, weight_bytes_cached, rejected_frames, activation_bytes_out, activation_tokens_out,
           queue_seconds);
        vec(ar, block_seconds);
    }
};

/// Live migration (coordinator -> worker), see docs/protocol.md section 4.
/// Export: send the KV caches of `layers` for every sequence as KvChunk
/// frames, then a Migrate{Exported} marker. Commit: every KvChunk of the new
/// layers has been sent; answer Ready once they are imported.
enum class MigrateOp : std::uint8_t { Export = 1, Exported = 2, Commit = 3 };
struct Migrate {
    std::uint8_t op = 0;
    std::vector<std::int64_t> layers;
    template <class A>
    void serialize(A& ar) {
        ar(op);
        vec(ar, layers);
    }
};

/// The KV cache of one layer of one sequence: K and V, each (n_positions,
/// kv_dim) little-endian f32.
struct KvChunk {
    std::uint64_t seq = 0;
    std::int64_t layer = 0;
    std::int64_t n_positions = 0;
    std::int64_t kv_dim = 0;
    std::vector<std::uint8_t> k, v;
    template <class A>
    void serialize(A& ar) {
        ar(seq, layer, n_positions, kv_dim);
        vec(ar, k);
        vec(ar, v);
    }
};

/// Tracing a remote pipeline (docs/protocol.md section 4): Begin turns the
/// worker's span recorder on; Sync asks for the worker's clock only (a small
/// Trace frame, for the clock offset); Collect asks for every span recorded
/// since the last Collect. Sync and Collect are answered by a Trace frame.
enum class TraceOp : std::uint8_t { Begin = 1, Collect = 2, Sync = 3 };
struct TraceRequest {
    std::uint8_t op = 0;
    template <class A>
    void serialize(A& ar) {
        ar(op);
    }
};

/// One span of a worker's trace: track (the device id), name ("compute",
/// "send", "receive", "idle"), start and length in microseconds on the
/// worker's clock, and a JSON object body of arguments.
struct TraceSpan {
    std::uint32_t track = 0;
    std::string name;
    double start_us = 0, dur_us = 0;
    std::string args;
    template <class A>
    void serialize(A& ar) {
        ar(track);
        str(ar, name);
        ar(start_us, dur_us);
        str(ar, args);
    }
};
struct Trace {
    double now_us = 0;         // the worker's clock when it answered (for the offset)
    std::uint64_t dropped = 0; // spans not kept (over the worker's cap)
    std::string track_name;    // e.g. "device 2 (phone-low)"
    std::vector<TraceSpan> spans;
    template <class A>
    void serialize(A& ar) {
        ar(now_us, dropped);
        str(ar, track_name);
        list(ar, spans, 4 + 8 + 16 + 8);
    }
};

/// The longest a worker keeps recording before a Collect: bounded memory
/// and a Trace frame well under the frame limit (about 64 bytes a span).
inline constexpr std::size_t kMaxWorkerTraceSpans = 200000;

struct ErrorMsg {
    std::string reason;
    template <class A>
    void serialize(A& ar) {
        str(ar, reason);
    }
};

/// A tensor as it travels: encoded bytes plus what is needed to decode them.
struct WireTensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::uint8_t encoding = 0;
    std::vector<std::uint8_t> bytes;
    template <class A>
    void serialize(A& ar) {
        str(ar, name);
        vec(ar, shape);
        ar(encoding);
        vec(ar, bytes);
    }
};

/// A pipeline Message on the wire.
struct DataMsg {
    std::uint8_t kind = 0;
    std::uint32_t from = 0;
    std::uint64_t request = 0;
    std::uint64_t step = 0;
    std::int64_t first_block = 0;
    std::vector<std::int32_t> positions;
    std::vector<std::int32_t> tokens;
    std::vector<WireTensor> tensors;
    std::string text;
    std::uint32_t lost_device = 0;  // Error: the device the sender could not reach
    template <class A>
    void serialize(A& ar) {
        ar(kind, from, request, step, first_block);
        vec(ar, positions);
        vec(ar, tokens);
        list(ar, tensors, 8 + 8 + 1 + 8);
        str(ar, text);
        ar(lost_device);
    }
};

// ---- live profiling (placement) ----
//
// Bounds a receiver enforces (docs/protocol.md, section 4, "Profiles and
// link probes"): a worker refuses a ProfileRequest or ProbeRequest outside
// them with an Error frame; an echo target refuses an Echo asking for more
// than kMaxEchoBytes and closes the probe link.

inline constexpr std::uint32_t kMaxProfileReps = 64;
inline constexpr std::int64_t kMaxProfileTokens = 4096;      // prefill step; decode position
inline constexpr std::int64_t kMaxProfileLayers = 64;
inline constexpr double kMaxProfileRunSeconds = 1.0;         // one timed run
inline constexpr std::uint32_t kMaxProbeRounds = 64;
inline constexpr std::uint32_t kMaxEchoBytes = 16u << 20;    // 16 MiB, one echo's padding either way
inline constexpr std::size_t kMaxProbeHost = 255;            // a DNS name's length
inline constexpr std::size_t kProfileKinds = 4;              // embedding, attention, ffn, head

/// Coordinator -> worker. measure = false: answer with your identity only
/// (a cache lookup at the coordinator); true: time the blocks whose tensors
/// are listed (the embedding, attention and FFN of a few layers, the head),
/// after asking for the ones you lack with NeedTensors.
struct ProfileRequest {
    bool measure = false;
    std::uint64_t model_id = 0;
    std::vector<std::uint8_t> metadata;  // a tensor-less GGUF image, as in Assign
    std::vector<TensorDesc> tensors;     // the sampled blocks' tensors
    std::uint32_t reps = 7;              // runs per measurement (median kept)
    std::int64_t prefill_tokens = 64;    // tokens of the timed prefill step
    std::int64_t decode_position = 64;   // position a decode step is timed at
    std::int64_t max_layers = 4;         // layers sampled, spread over the model
    double min_run_seconds = 2e-3;       // a run repeats its block until this long
    template <class A>
    void serialize(A& ar) {
        boolean(ar, measure);
        ar(model_id);
        vec(ar, metadata);
        list(ar, tensors, 8 + 4 + 8 + 8 + 8);
        ar(reps, prefill_tokens, decode_position, max_layers, min_run_seconds);
    }
};

/// Worker -> coordinator: who it is, and (when measured) seconds per token
/// per block of each kind (embedding, attention, ffn, head).
struct Profile {
    std::string name;
    std::string fingerprint;          // hex digest of host, CPU, threads, memory, emulation
    std::uint32_t threads = 0;
    std::uint64_t memory_bytes = 0;   // its budget, or its RAM when it has none
    bool measured = false;
    std::vector<double> decode_s;     // kProfileKinds values when measured, else empty
    std::vector<double> prefill_s;
    double seconds = 0;               // wall time the measurement took
    std::uint64_t bytes_received = 0; // tensor bytes it had to receive for it
    template <class A>
    void serialize(A& ar) {
        str(ar, name);
        str(ar, fingerprint);
        ar(threads, memory_bytes);
        boolean(ar, measured);
        vec(ar, decode_s);
        vec(ar, prefill_s);
        ar(seconds, bytes_received);
    }
};

/// Coordinator -> worker: open a probe link to host:port and measure it.
struct ProbeRequest {
    std::string host;
    std::uint16_t port = 0;
    std::uint32_t rounds = 5;         // echoes per measurement (median kept)
    std::uint32_t max_bytes = 1u << 20;  // the large echoes' size at most
    double target_seconds = 0.05;     // a large echo should last about this long
    template <class A>
    void serialize(A& ar) {
        str(ar, host);
        ar(port, rounds, max_bytes, target_seconds);
    }
};

/// Worker -> coordinator (and what probe_link() returns): the round trip of
/// a small echo, and the bandwidth each way measured with large ones.
struct ProbeResult {
    double rtt_s = 0;
    double out_bytes_per_s = 0;       // prober -> target
    double in_bytes_per_s = 0;        // target -> prober
    std::uint32_t probe_bytes = 0;    // size of the large echoes
    template <class A>
    void serialize(A& ar) {
        ar(rtt_s, out_bytes_per_s, in_bytes_per_s, probe_bytes);
    }
};

/// Echo (prober -> target) and EchoReply (target -> prober, reply_bytes 0,
/// padding of the size asked for, the same nonce).
struct Echo {
    std::uint64_t nonce = 0;
    std::uint32_t reply_bytes = 0;
    std::vector<std::uint8_t> padding;
    template <class A>
    void serialize(A& ar) {
        ar(nonce, reply_bytes);
        vec(ar, padding);
    }
};

// ---- activation encodings ----
//
// Tensor bytes are little-endian whatever the host (the cereal archive
// around them swaps only typed fields, not these raw bytes): F32 is 4 bytes
// per value, F16 2 bytes, Q8_0 34-byte blocks of 32 values (F16 scale, then 32
// int8), the GGUF block layout.

namespace detail {
inline constexpr bool kLittleHost = std::endian::native == std::endian::little;

inline void put_le16(std::uint8_t* p, std::uint16_t v) noexcept {
    p[0] = static_cast<std::uint8_t>(v & 0xff);
    p[1] = static_cast<std::uint8_t>(v >> 8);
}
inline std::uint16_t get_le16(const std::uint8_t* p) noexcept {
    return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
inline void put_f32(std::uint8_t* p, const float* x, std::size_t n) noexcept {
    if constexpr (kLittleHost) {
        std::memcpy(p, x, n * 4);
    } else {
        for (std::size_t i = 0; i < n; ++i) {
            std::uint32_t u;
            std::memcpy(&u, x + i, 4);
            for (int b = 0; b < 4; ++b) p[4 * i + static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(u >> (8 * b));
        }
    }
}
inline void get_f32(float* x, const std::uint8_t* p, std::size_t n) noexcept {
    if constexpr (kLittleHost) {
        std::memcpy(x, p, n * 4);
    } else {
        for (std::size_t i = 0; i < n; ++i) {
            std::uint32_t u = 0;
            for (int b = 0; b < 4; ++b) u |= static_cast<std::uint32_t>(p[4 * i + static_cast<std::size_t>(b)]) << (8 * b);
            std::memcpy(x + i, &u, 4);
        }
    }
}
}  // namespace detail

inline constexpr std::size_t kQ8WireBlock = 2 + kQK8_0;  // 34 bytes, like BlockQ8_0

inline std::vector<std::uint8_t> encode_floats(const std::vector<float>& x, Encoding e) {
    std::vector<std::uint8_t> out;
    switch (e) {
        case Encoding::F32:
            out.resize(x.size() * 4);
            detail::put_f32(out.data(), x.data(), x.size());
            return out;
        case Encoding::F16:
            out.resize(x.size() * 2);
            for (std::size_t i = 0; i < x.size(); ++i) detail::put_le16(out.data() + 2 * i, fp32_to_fp16(x[i]));
            return out;
        case Encoding::Q8_0: {
            // Blocks of 32 along each row: F16 scale d = max|x| / 127, q = round(x / d).
            const std::size_t nb = x.size() / kQK8_0;
            out.resize(nb * kQ8WireBlock);
            for (std::size_t b = 0; b < nb; ++b) {
                const float* xb = x.data() + b * kQK8_0;
                std::uint8_t* ob = out.data() + b * kQ8WireBlock;
                float amax = 0;
                for (std::uint32_t j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(xb[j]));
                const float d = amax / 127.0f;
                const float id = d != 0.0f ? 1.0f / d : 0.0f;
                detail::put_le16(ob, fp32_to_fp16(d));
                for (std::uint32_t j = 0; j < kQK8_0; ++j)
                    ob[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::lround(xb[j] * id)));
            }
            return out;
        }
    }
    return out;
}

/// The encoding used for a tensor: Q8_0 needs rows that are whole blocks.
inline Encoding effective_encoding(Encoding want, std::int64_t row_length) {
    if (want == Encoding::Q8_0 && row_length % kQK8_0 != 0) return Encoding::F16;
    return want;
}

/// Encodes a tensor for the wire. Throws ProtocolError for a tensor holding
/// NaN or infinity: receivers refuse such frames, so a device whose output
/// went non-finite reports that step as failed instead of sending it.
inline WireTensor to_wire(const Tensor& t, Encoding want) {
    float amax = 0;
    for (const float v : t.data) {
        if (!std::isfinite(v))
            throw ProtocolError("local", "tensor '" + t.name + "' holds NaN or infinity; not sent");
        amax = std::max(amax, std::fabs(v));
    }
    WireTensor w;
    w.name = t.name;
    w.shape = t.shape;
    const std::int64_t row = t.shape.empty() ? 1 : t.shape.back();
    // Logits stay exact whatever the link's encoding: sampling reads them.
    Encoding e = t.name == "logits" ? Encoding::F32 : effective_encoding(want, row);
    // Values (or Q8_0 scales) past F16's range would arrive as infinity: such a
    // tensor travels as F32 instead.
    constexpr float kF16Max = 65504.0f;
    if ((e == Encoding::F16 && amax > kF16Max) || (e == Encoding::Q8_0 && amax / 127.0f > kF16Max)) e = Encoding::F32;
    w.encoding = static_cast<std::uint8_t>(e);
    w.bytes = encode_floats(t.data, e);
    return w;
}

inline Tensor from_wire(const WireTensor& w, const std::string& peer) {
    Tensor t;
    t.name = w.name;
    t.shape = w.shape;
    std::int64_t n = 1;
    for (const auto d : w.shape) {
        if (d < 0 || (d != 0 && n > (std::int64_t{1} << 40) / d))
            throw ProtocolError(peer, "tensor '" + w.name + "' has an absurd shape");
        n *= d;
    }
    const auto e = static_cast<Encoding>(w.encoding);
    std::size_t want = 0;
    switch (e) {
        case Encoding::F32: want = static_cast<std::size_t>(n) * 4; break;
        case Encoding::F16: want = static_cast<std::size_t>(n) * 2; break;
        case Encoding::Q8_0:
            if (n % kQK8_0 != 0) throw ProtocolError(peer, "Q8_0 tensor '" + w.name + "' is not whole blocks");
            want = static_cast<std::size_t>(n) / kQK8_0 * kQ8WireBlock;
            break;
        default: throw ProtocolError(peer, "tensor '" + w.name + "' has unknown encoding " + std::to_string(w.encoding));
    }
    if (w.bytes.size() != want)
        throw ProtocolError(peer, "tensor '" + w.name + "' holds " + std::to_string(w.bytes.size()) + " bytes, its shape needs " +
                                      std::to_string(want));
    t.data.resize(static_cast<std::size_t>(n));
    switch (e) {
        case Encoding::F32: detail::get_f32(t.data.data(), w.bytes.data(), t.data.size()); break;
        case Encoding::F16:
            for (std::size_t i = 0; i < t.data.size(); ++i) t.data[i] = fp16_to_fp32(detail::get_le16(w.bytes.data() + 2 * i));
            break;
        case Encoding::Q8_0:
            for (std::size_t b = 0; b < t.data.size() / kQK8_0; ++b) {
                const std::uint8_t* ib = w.bytes.data() + b * kQ8WireBlock;
                const float d = fp16_to_fp32(detail::get_le16(ib));
                for (std::uint32_t j = 0; j < kQK8_0; ++j)
                    t.data[b * kQK8_0 + j] = d * static_cast<float>(static_cast<std::int8_t>(ib[2 + j]));
            }
            break;
    }
    for (const float v : t.data)
        if (!std::isfinite(v)) throw ProtocolError(peer, "tensor '" + w.name + "' holds NaN or infinity");
    return t;
}

inline DataMsg to_wire(const Message& m, Encoding e) {
    DataMsg d;
    d.kind = static_cast<std::uint8_t>(m.kind);
    d.from = m.from;
    d.request = m.request;
    d.step = m.step;
    d.first_block = m.first_block;
    d.positions = m.positions;
    d.tokens = m.tokens;
    for (const auto& t : m.tensors) d.tensors.push_back(to_wire(t, e));
    d.text = m.text;
    d.lost_device = m.lost_device;
    return d;
}

inline Message from_wire(const DataMsg& d, const std::string& peer) {
    if (d.kind < static_cast<std::uint8_t>(MessageKind::Activations) || d.kind > static_cast<std::uint8_t>(MessageKind::Error))
        throw ProtocolError(peer, "unknown message kind " + std::to_string(d.kind));
    Message m;
    m.kind = static_cast<MessageKind>(d.kind);
    m.from = d.from;
    m.request = d.request;
    m.step = d.step;
    m.first_block = d.first_block;
    m.positions = d.positions;
    m.tokens = d.tokens;
    for (const auto& t : d.tensors) m.tensors.push_back(from_wire(t, peer));
    m.text = d.text;
    m.lost_device = d.lost_device;
    return m;
}

}  // namespace tandem::wire
