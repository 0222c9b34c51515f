// Link probes: the round trip and bandwidth of a link between two devices,
// measured over the real transport (TCP or TLS, the same framing and
// encryption the pipeline's frames pay) with echoes of small and large
// payloads.
//
// A probe link is a Connection opened with Role::Prober. The target takes it
// out of its transport (it never carries pipeline traffic, and it is not
// filed under a device id) and answers each Echo with an EchoReply of the
// size asked for (serve_echoes). The prober (probe_link):
//
//   1. warms the link up with 2 small echoes (TCP slow start, TLS buffers);
//   2. rtt = median round trip of `rounds` small echoes (64 bytes each way);
//   3. sizes the large echoes from one of 64 KiB: about `target_seconds` of
//      transfer, between 64 KiB and `max_bytes`;
//   4. out = median round trip of `rounds` echoes of L bytes out with a
//      small reply: out_bytes_per_s = L / (out - rtt); in likewise, with a
//      small request and an L-byte reply.
//
// Medians, not minima: the cost model predicts the time a hop usually takes.
// A large echo no slower than the small ones (a link faster than this probe
// can tell) counts as L per microsecond, capped at kMaxProbeBandwidth.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <asio/use_awaitable.hpp>

#include "tandem/transport/connection.hpp"
#include "tandem/transport/protocol.hpp"
#include "tandem/transport/tcp_transport.hpp"

namespace tandem {

/// Bandwidth reported for a link faster than the probe can resolve (bytes/s).
inline constexpr double kMaxProbeBandwidth = 1e11;
/// Echoes a target answers on one probe link before it refuses more.
inline constexpr std::uint32_t kMaxEchoesPerLink = 4096;

namespace detail {

inline double probe_median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const auto n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace detail

/// Throws ConfigError unless the request is within the protocol's bounds.
inline void validate_probe_request(const wire::ProbeRequest& r) {
    if (r.host.empty() || r.host.size() > wire::kMaxProbeHost) throw ConfigError("probe: host name of bad length");
    if (r.port == 0) throw ConfigError("probe: port 0");
    if (r.rounds < 1 || r.rounds > wire::kMaxProbeRounds)
        throw ConfigError("probe: rounds must be 1.." + std::to_string(wire::kMaxProbeRounds));
    if (r.max_bytes < 64 * 1024 || r.max_bytes > wire::kMaxEchoBytes)
        throw ConfigError("probe: max_bytes must be 64 KiB.." + std::to_string(wire::kMaxEchoBytes >> 20) + " MiB");
    if (!(r.target_seconds > 0) || r.target_seconds > 1.0) throw ConfigError("probe: target_seconds must be in (0, 1]");
}

/// The target's side of a probe link: answers Echo frames until Bye, close,
/// or the idle timeout. Anything else on the link, an echo asking for more
/// than kMaxEchoBytes, or more than kMaxEchoesPerLink echoes is refused with
/// an Error frame and closes the link.
inline asio::awaitable<void> serve_echoes(std::shared_ptr<Connection> c) {
    std::string why = "probe done";
    std::string hostile;
    try {
        for (std::uint32_t n = 0;; ++n) {
            Frame f = co_await c->read_frame();
            if (f.type == wire::FrameType::Bye) break;
            if (f.type == wire::FrameType::Ping) {
                const auto p = wire::decode<wire::Ping>(f.payload, c->peer());
                co_await c->send(wire::FrameType::Pong, p);
                continue;
            }
            if (f.type != wire::FrameType::Echo)
                throw ProtocolError(c->peer(), std::string("a probe link carries only Echo frames, not ") +
                                                   wire::frame_type_name(f.type));
            if (n >= kMaxEchoesPerLink)
                throw ProtocolError(c->peer(), "more than " + std::to_string(kMaxEchoesPerLink) + " echoes on one probe link");
            const auto e = wire::decode<wire::Echo>(f.payload, c->peer());
            if (e.reply_bytes > wire::kMaxEchoBytes)
                throw ProtocolError(c->peer(), "echo asks for " + std::to_string(e.reply_bytes) + " bytes, more than " +
                                                   std::to_string(wire::kMaxEchoBytes));
            wire::Echo r;
            r.nonce = e.nonce;
            r.padding.assign(e.reply_bytes, 0x5a);
            co_await c->send(wire::FrameType::EchoReply, r);
        }
    } catch (const ProtocolError& e) {
        hostile = e.what();
    } catch (const std::exception& e) {
        why = e.what();
    }
    if (!hostile.empty() && c->is_open()) {
        try {
            const wire::ErrorMsg err{hostile};  // named: GCC 12 mishandles temporaries in co_await
            co_await c->send(wire::FrameType::Error, err);
            co_await c->close_after_flush(hostile);
            co_return;
        } catch (const std::exception&) {
        }
    }
    c->close(hostile.empty() ? why : hostile);
}

/// The prober's side: measures the link `c` (opened with Role::Prober) as
/// described at the top of this file. `max_frame` is the prober's own frame
/// limit (an echo reply must fit in it). Throws ProtocolError or
/// PeerLostError when the target misbehaves or goes away.
inline asio::awaitable<wire::ProbeResult> probe_link(std::shared_ptr<Connection> c, wire::ProbeRequest opt,
                                                     std::uint64_t max_frame = wire::kDefaultMaxFrame) {
    using clock = std::chrono::steady_clock;
    constexpr std::uint32_t kSmall = 64, kSizing = 64 * 1024;
    constexpr std::uint64_t kSlack = 64;  // an Echo's fields besides its padding, with room to spare
    if (max_frame <= kSizing + kSlack) throw ConfigError("probe: the frame limit is too small for a 64 KiB echo");
    const auto cap = static_cast<std::uint32_t>(
        std::min<std::uint64_t>({opt.max_bytes, wire::kMaxEchoBytes, max_frame - kSlack}));
    std::uint64_t nonce = 0;

    // One echo: `out` bytes of padding out, `back` asked for; seconds.
    auto echo = [&](std::uint32_t out, std::uint32_t back) -> asio::awaitable<double> {
        wire::Echo e;
        e.nonce = ++nonce;
        e.reply_bytes = back;
        e.padding.assign(out, 0xa5);
        auto payload = wire::encode(e);  // encoded before the clock starts
        const auto t0 = clock::now();
        co_await c->write_frame(wire::FrameType::Echo, std::move(payload));
        for (;;) {
            const Frame f = co_await c->read_frame();
            if (f.type == wire::FrameType::Error)
                throw ProtocolError(c->peer(), "refused the probe: " + wire::decode<wire::ErrorMsg>(f.payload, c->peer()).reason);
            if (f.type != wire::FrameType::EchoReply)
                throw ProtocolError(c->peer(), std::string("expected EchoReply, got ") + wire::frame_type_name(f.type));
            const auto r = wire::decode<wire::Echo>(f.payload, c->peer());
            if (r.nonce != e.nonce) throw ProtocolError(c->peer(), "EchoReply with a nonce that was not asked for");
            if (r.padding.size() != back)
                throw ProtocolError(c->peer(), "EchoReply of " + std::to_string(r.padding.size()) + " bytes, asked " +
                                                   std::to_string(back));
            co_return std::chrono::duration<double>(clock::now() - t0).count();
        }
    };
    auto median_of = [&](std::uint32_t out, std::uint32_t back) -> asio::awaitable<double> {
        std::vector<double> t;
        for (std::uint32_t i = 0; i < opt.rounds; ++i) t.push_back(co_await echo(out, back));
        co_return detail::probe_median(std::move(t));
    };

    for (int i = 0; i < 2; ++i) (void)co_await echo(kSmall, kSmall);
    wire::ProbeResult r;
    r.rtt_s = co_await median_of(kSmall, kSmall);
    const double sizing = co_await echo(kSizing, kSmall);
    const double first_bw = kSizing / std::max(sizing - r.rtt_s, 1e-6);
    const double want = std::clamp(first_bw * opt.target_seconds, static_cast<double>(kSizing), static_cast<double>(cap));
    r.probe_bytes = static_cast<std::uint32_t>(want);
    const double out = co_await median_of(r.probe_bytes, kSmall);
    const double in = co_await median_of(kSmall, r.probe_bytes);
    auto bandwidth = [&](double t) {
        const double bytes = static_cast<double>(r.probe_bytes - kSmall);
        return std::min(kMaxProbeBandwidth, bytes / std::max(t - r.rtt_s, 1e-6));
    };
    r.out_bytes_per_s = bandwidth(out);
    r.in_bytes_per_s = bandwidth(in);
    co_return r;
}

/// Dials host:port as a prober through `tcp` (its TLS and link options),
/// measures the link, says Bye and closes it.
inline asio::awaitable<wire::ProbeResult> measure_link(TcpTransport& tcp, std::string host, std::uint16_t port,
                                                       wire::ProbeRequest opt) {
    auto [c, ack] = co_await tcp.dial(host, port, wire::Role::Prober);
    (void)ack;
    wire::ProbeResult r;
    try {
        r = co_await probe_link(c, opt, tcp.options().link.max_frame);
    } catch (...) {
        c->close("probe failed");
        throw;
    }
    const wire::ErrorMsg empty;  // named: GCC 12 mishandles temporaries in co_await
    co_await c->send(wire::FrameType::Bye, empty);
    co_await c->close_after_flush("probe done");
    co_return r;
}

}  // namespace tandem
