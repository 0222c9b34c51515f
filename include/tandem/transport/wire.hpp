// tandem's wire format: length-prefixed frames whose payloads are cereal
// portable binary archives (byte-order clean, so an arm64 phone and an x86-64
// coordinator read each other).
//
// Frame = 16-byte header + payload:
//   u32 magic  "TNDM" (0x4d444e54 little-endian)
//   u16 protocol version (kProtocolVersion)
//   u16 frame type (FrameType)
//   u64 payload length (<= the receiver's frame limit)
// All header fields are little-endian on the wire whatever the host.
//
// Decoding hostile payloads: every length read from a payload (vector sizes,
// string sizes) is checked against the bytes actually left before anything is
// allocated, so a lying frame costs at most its own (bounded) size.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <istream>
#include <ostream>
#include <span>
#include <sstream>
#include <streambuf>
#include <string>
#include <type_traits>
#include <vector>

#include <cereal/archives/portable_binary.hpp>
#include <cereal/cereal.hpp>

#include "tandem/core/error.hpp"

namespace tandem::wire {

inline constexpr std::uint32_t kMagic = 0x4d444e54;  // "TNDM"
// 2: migration (16-17), placement (32-37) and trace (18-19) frames.
// 3: Stats.queue_seconds and Stats.block_seconds.
inline constexpr std::uint16_t kProtocolVersion = 3;
inline constexpr std::size_t kHeaderSize = 16;
inline constexpr std::uint64_t kDefaultMaxFrame = 64ull << 20;  // 64 MiB

enum class FrameType : std::uint16_t {
    Hello = 1,        // first frame on every connection, both ways
    HelloAck = 2,     // the listener's answer: accepted or refused, and why
    Assign = 3,       // coordinator -> worker: your blocks, model metadata, tensor list, peers
    NeedTensors = 4,  // worker -> coordinator: the tensor hashes it lacks
    TensorChunk = 5,  // coordinator -> worker: part of one tensor's bytes
    Ready = 6,        // worker -> coordinator: weights loaded, segment built
    Start = 7,        // coordinator -> worker: begin serving
    Stop = 8,         // coordinator -> worker: stop serving (drop state)
    Ping = 9,
    Pong = 10,
    StatsRequest = 11,
    Stats = 12,
    Data = 13,        // a pipeline Message (activations, logits, release, control)
    Error = 14,       // a refusal or failure, with a reason
    Bye = 15,         // orderly close
    Migrate = 16,     // coordinator -> worker: new blocks; send/receive KV caches
    KvChunk = 17,     // worker <-> coordinator: KV cache of one layer of one sequence (migration)
    TraceRequest = 18,  // coordinator -> worker: start recording spans, or hand over those recorded
    Trace = 19,         // worker -> coordinator: the recorded spans and the worker's clock
    // Placement (32-37): live profiles of devices and links (docs/protocol.md).
    ProfileRequest = 32,  // coordinator -> worker: describe yourself, or time these blocks
    Profile = 33,         // worker -> coordinator: identity, and block times when asked
    ProbeRequest = 34,    // coordinator -> worker: measure your link to that worker
    ProbeResult = 35,     // worker -> coordinator: the link's round trip and bandwidths
    Echo = 36,            // prober -> target, on a probe link only: answer with N bytes
    EchoReply = 37,       // target -> prober
};

inline const char* frame_type_name(FrameType t) noexcept {
    switch (t) {
        case FrameType::Hello: return "Hello";
        case FrameType::HelloAck: return "HelloAck";
        case FrameType::Assign: return "Assign";
        case FrameType::NeedTensors: return "NeedTensors";
        case FrameType::TensorChunk: return "TensorChunk";
        case FrameType::Ready: return "Ready";
        case FrameType::Start: return "Start";
        case FrameType::Stop: return "Stop";
        case FrameType::Ping: return "Ping";
        case FrameType::Pong: return "Pong";
        case FrameType::StatsRequest: return "StatsRequest";
        case FrameType::Stats: return "Stats";
        case FrameType::Data: return "Data";
        case FrameType::Error: return "Error";
        case FrameType::Bye: return "Bye";
        case FrameType::Migrate: return "Migrate";
        case FrameType::KvChunk: return "KvChunk";
        case FrameType::TraceRequest: return "TraceRequest";
        case FrameType::Trace: return "Trace";
        case FrameType::ProfileRequest: return "ProfileRequest";
        case FrameType::Profile: return "Profile";
        case FrameType::ProbeRequest: return "ProbeRequest";
        case FrameType::ProbeResult: return "ProbeResult";
        case FrameType::Echo: return "Echo";
        case FrameType::EchoReply: return "EchoReply";
    }
    return nullptr;
}

struct FrameHeader {
    std::uint16_t version = kProtocolVersion;
    FrameType type = FrameType::Data;
    std::uint64_t length = 0;
};

inline std::array<std::byte, kHeaderSize> encode_header(const FrameHeader& h) {
    std::array<std::byte, kHeaderSize> out{};
    auto put = [&](std::size_t at, std::uint64_t v, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) out[at + i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
    };
    put(0, kMagic, 4);
    put(4, h.version, 2);
    put(6, static_cast<std::uint16_t>(h.type), 2);
    put(8, h.length, 8);
    return out;
}

/// Parses and validates a header: magic, version, known type, length within
/// `max_length`. Throws ProtocolError naming `peer` and what is wrong.
inline FrameHeader decode_header(std::span<const std::byte, kHeaderSize> b, std::uint64_t max_length,
                                 const std::string& peer) {
    auto get = [&](std::size_t at, std::size_t n) {
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(b[at + i]) << (8 * i);
        return v;
    };
    if (get(0, 4) != kMagic) throw ProtocolError(peer, "bad frame magic: not a tandem peer");
    FrameHeader h;
    h.version = static_cast<std::uint16_t>(get(4, 2));
    if (h.version != kProtocolVersion)
        throw ProtocolError(peer, "protocol version " + std::to_string(h.version) + " is not supported (this is " +
                                      std::to_string(kProtocolVersion) + ")");
    h.type = static_cast<FrameType>(get(6, 2));
    if (frame_type_name(h.type) == nullptr)
        throw ProtocolError(peer, "unknown frame type " + std::to_string(static_cast<unsigned>(h.type)));
    h.length = get(8, 8);
    if (h.length > max_length)
        throw ProtocolError(peer, "frame of " + std::to_string(h.length) + " bytes exceeds the limit of " +
                                      std::to_string(max_length));
    return h;
}

// ---- bounded decoding ----

/// A read-only streambuf over a byte span (no copy).
class SpanBuf : public std::streambuf {
public:
    explicit SpanBuf(std::span<const std::byte> s) {
        auto* p = const_cast<char*>(reinterpret_cast<const char*>(s.data()));
        setg(p, p, p + s.size());
    }
    std::size_t remaining() const noexcept { return static_cast<std::size_t>(egptr() - gptr()); }
};

namespace detail {
inline thread_local const SpanBuf* g_decoding = nullptr;
inline thread_local const std::string* g_peer = nullptr;

inline void check_available(std::uint64_t count, std::uint64_t elem_size) {
    if (g_decoding == nullptr) return;  // encoding, or decoding trusted data
    const auto left = g_decoding->remaining();
    if (elem_size != 0 && count > left / elem_size)
        throw ProtocolError(g_peer ? *g_peer : "peer", "payload claims " + std::to_string(count) + " items of " +
                                                           std::to_string(elem_size) + " bytes but holds " +
                                                           std::to_string(left));
}
}  // namespace detail

/// Serializes a vector of arithmetic values as a size plus raw bytes,
/// refusing sizes the payload cannot hold.
template <typename Archive, typename T>
void vec(Archive& ar, std::vector<T>& v) {
    static_assert(std::is_arithmetic_v<T>);
    if constexpr (Archive::is_loading::value) {
        cereal::size_type n = 0;
        ar(cereal::make_size_tag(n));
        detail::check_available(n, sizeof(T));
        v.resize(static_cast<std::size_t>(n));
    } else {
        ar(cereal::make_size_tag(static_cast<cereal::size_type>(v.size())));
    }
    if (!v.empty()) ar(cereal::binary_data(v.data(), v.size() * sizeof(T)));
}

template <typename Archive>
void str(Archive& ar, std::string& s) {
    if constexpr (Archive::is_loading::value) {
        cereal::size_type n = 0;
        ar(cereal::make_size_tag(n));
        detail::check_available(n, 1);
        s.resize(static_cast<std::size_t>(n));
    } else {
        ar(cereal::make_size_tag(static_cast<cereal::size_type>(s.size())));
    }
    if (!s.empty()) ar(cereal::binary_data(s.data(), s.size()));
}

/// A vector of structs with their own serialize(); each element takes at
/// least `min_size` bytes on the wire, which bounds the count. Elements are
/// appended as they decode (not allocated up front from the claimed count):
/// an in-memory element is larger than its wire minimum, so a lying count
/// would otherwise cost several times the frame's size.
template <typename Archive, typename T>
void list(Archive& ar, std::vector<T>& v, std::size_t min_size = 1) {
    if constexpr (Archive::is_loading::value) {
        cereal::size_type n = 0;
        ar(cereal::make_size_tag(n));
        detail::check_available(n, min_size);
        v.clear();
        v.reserve(static_cast<std::size_t>(std::min<cereal::size_type>(n, 64)));
        for (cereal::size_type i = 0; i < n; ++i) {
            T x{};
            ar(x);
            v.push_back(std::move(x));
        }
    } else {
        ar(cereal::make_size_tag(static_cast<cereal::size_type>(v.size())));
        for (auto& x : v) ar(x);
    }
}

/// A bool as one byte that must be 0 or 1 (loading any other byte straight
/// into a bool is undefined behaviour).
template <typename Archive>
void boolean(Archive& ar, bool& b) {
    std::uint8_t u = b ? 1 : 0;
    ar(u);
    if constexpr (Archive::is_loading::value) {
        if (u > 1)
            throw ProtocolError(detail::g_peer ? *detail::g_peer : "peer",
                                "boolean field holds " + std::to_string(u) + ", not 0 or 1");
        b = u == 1;
    }
}

template <typename T>
std::vector<std::byte> encode(const T& value) {
    std::ostringstream os(std::ios::binary);
    {
        cereal::PortableBinaryOutputArchive ar(os);
        ar(const_cast<T&>(value));
    }
    const auto s = os.str();
    std::vector<std::byte> out(s.size());
    std::memcpy(out.data(), s.data(), s.size());
    return out;
}

/// Decodes a payload; any malformation becomes ProtocolError naming `peer`.
template <typename T>
T decode(std::span<const std::byte> payload, const std::string& peer) {
    SpanBuf buf(payload);
    std::istream is(&buf);
    T value{};
    const auto* prev = detail::g_decoding;
    const auto* prev_peer = detail::g_peer;
    detail::g_decoding = &buf;
    detail::g_peer = &peer;
    try {
        cereal::PortableBinaryInputArchive ar(is);
        ar(value);
    } catch (const ProtocolError&) {
        detail::g_decoding = prev;
        detail::g_peer = prev_peer;
        throw;
    } catch (const std::exception& e) {
        detail::g_decoding = prev;
        detail::g_peer = prev_peer;
        throw ProtocolError(peer, std::string("malformed payload: ") + e.what());
    }
    detail::g_decoding = prev;
    detail::g_peer = prev_peer;
    if (buf.remaining() != 0)
        throw ProtocolError(peer, "payload has " + std::to_string(buf.remaining()) + " trailing bytes");
    return value;
}

}  // namespace tandem::wire
