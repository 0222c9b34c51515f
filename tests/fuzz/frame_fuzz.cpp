// libFuzzer target for tandem's frame decoder: the input is a byte stream as
// a Connection reads it (16-byte header + payload, repeated). Each header is
// decoded with a frame limit; each payload is decoded as the type its header
// names (and, when the header is refused, as the type its raw type field
// would name, so payload decoders are reached from any input). Everything a
// decoder accepts is then used the way tandem does: re-encoded (it must
// decode to the same bytes again), Data frames turned into Messages and sent
// on in every activation encoding (which must decode again). Only
// tandem::Error may escape; a crash, sanitizer report, leak, or broken
// invariant (__builtin_trap) is a finding. Run with tests/fuzz/run.sh.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <tandem/transport/protocol.hpp>

using namespace tandem;
using namespace tandem::wire;

namespace {

void require(bool ok) {
    if (!ok) __builtin_trap();
}

// Decoding what we encoded gives the same value (compared by its encoding).
template <typename T>
void check_stable(const T& v) {
    const auto enc = encode(v);
    T again;
    try {
        again = decode<T>(enc, "self");
    } catch (const Error&) {
        __builtin_trap();  // our own encoding must always decode
    }
    require(encode(again) == enc);
}

void use_message(const DataMsg& d) {
    Message m;
    try {
        m = from_wire(d, "fuzz");
    } catch (const Error&) {
        return;
    }
    // A decoded message holds only finite values and consistent shapes.
    for (const auto& t : m.tensors) {
        require(static_cast<std::int64_t>(t.data.size()) == t.n_elements());
        for (const float v : t.data) require(std::isfinite(v));
    }
    // Whatever was accepted can be sent on in every encoding and read again.
    for (const auto e : {Encoding::F32, Encoding::F16, Encoding::Q8_0}) {
        DataMsg out;
        try {
            out = to_wire(m, e);
        } catch (const Error&) {
            __builtin_trap();  // finite tensors always encode
        }
        Message back;
        try {
            back = from_wire(decode<DataMsg>(encode(out), "self"), "self");
        } catch (const Error&) {
            __builtin_trap();
        }
        require(back.tensors.size() == m.tensors.size());
        for (std::size_t i = 0; i < m.tensors.size(); ++i) {
            require(back.tensors[i].shape == m.tensors[i].shape);
            if (e == Encoding::F32) require(back.tensors[i].data == m.tensors[i].data);
        }
        require(back.positions == m.positions && back.tokens == m.tokens && back.request == m.request);
    }
}

template <typename T>
void decode_as(std::span<const std::byte> payload) {
    T v;
    try {
        v = decode<T>(payload, "fuzz");
    } catch (const Error&) {
        return;
    }
    check_stable(v);
    if constexpr (std::is_same_v<T, DataMsg>) use_message(v);
}

void decode_payload(FrameType type, std::span<const std::byte> p) {
    switch (type) {
        case FrameType::Hello: decode_as<Hello>(p); break;
        case FrameType::HelloAck: decode_as<HelloAck>(p); break;
        case FrameType::Assign: decode_as<Assign>(p); break;
        case FrameType::NeedTensors: decode_as<NeedTensors>(p); break;
        case FrameType::TensorChunk: decode_as<TensorChunk>(p); break;
        case FrameType::Ready: decode_as<Ready>(p); break;
        case FrameType::Ping:
        case FrameType::Pong: decode_as<Ping>(p); break;
        case FrameType::Stats: decode_as<Stats>(p); break;
        case FrameType::Data: decode_as<DataMsg>(p); break;
        case FrameType::Start:
        case FrameType::Stop:
        case FrameType::StatsRequest:
        case FrameType::Error:
        case FrameType::Bye: decode_as<ErrorMsg>(p); break;
        case FrameType::Migrate: decode_as<Migrate>(p); break;
        case FrameType::KvChunk: decode_as<KvChunk>(p); break;
        case FrameType::TraceRequest: decode_as<TraceRequest>(p); break;
        case FrameType::Trace: decode_as<Trace>(p); break;
        case FrameType::ProfileRequest: decode_as<ProfileRequest>(p); break;
        case FrameType::Profile: decode_as<Profile>(p); break;
        case FrameType::ProbeRequest: decode_as<ProbeRequest>(p); break;
        case FrameType::ProbeResult: decode_as<ProbeResult>(p); break;
        case FrameType::Echo:
        case FrameType::EchoReply: decode_as<Echo>(p); break;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
    constexpr std::uint64_t kLimit = 1 << 20;
    while (in.size() >= kHeaderSize) {
        const auto hdr = in.first<kHeaderSize>();
        in = in.subspan(kHeaderSize);
        FrameHeader h;
        try {
            h = decode_header(hdr, kLimit, "fuzz");
        } catch (const Error&) {
            // Refused: still feed the rest to the decoder its type field names.
            std::uint16_t raw = 0;
            std::memcpy(&raw, hdr.data() + 6, 2);
            decode_payload(static_cast<FrameType>(raw % 17 + 1), in);
            return 0;
        }
        require(h.length <= kLimit);
        // A stream that ends mid-payload is a dropped peer: decode what arrived.
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(h.length, in.size()));
        decode_payload(h.type, in.first(n));
        in = in.subspan(n);
    }
    return 0;
}
