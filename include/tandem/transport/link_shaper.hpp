// Network emulation inside the transport: one directed link's bandwidth and
// one-way delay, for benchmarks on one machine where Linux network namespaces
// with tc are not available (the "shaped" mode of the paper suite).
//
// Model (a token bucket in virtual time): the link serializes bytes at
// `bandwidth_bps`; an idle link saves up to `burst_bytes` of credit. A frame
// of n bytes queued at time q starts when the link is free (or up to a burst
// earlier), occupies it n * 8 / bandwidth seconds, and arrives `latency_ms`
// after its last byte left:
//
//   start   = max(link_free, q - burst / rate)
//   link_free = start + n / rate
//   arrival = max(q, link_free) + latency
//
// Latency is pipelined, not serialized: frame k+1 leaves while frame k is
// still "on the wire", so a stream of frames runs at the bandwidth and each
// frame arrives one latency after it left, as on a real link. Arrival times
// never decrease, so one writer that waits until each frame's arrival and
// then writes it keeps the order and the rate.
#pragma once

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include "tandem/core/error.hpp"

namespace tandem {

struct LinkShape {
    double bandwidth_bps = 0;       // bits per second; 0: unlimited
    double latency_ms = 0;          // one-way delay added to every frame
    std::uint64_t burst_bytes = 0;  // bucket size; 0: 16 KiB or 2 ms of the rate, whichever is larger

    bool active() const noexcept { return bandwidth_bps > 0 || latency_ms > 0; }
    double bytes_per_s() const noexcept { return bandwidth_bps / 8; }
    std::uint64_t burst() const noexcept {
        if (burst_bytes > 0) return burst_bytes;
        return std::max<std::uint64_t>(16 * 1024, static_cast<std::uint64_t>(bytes_per_s() * 2e-3));
    }

    /// "100mbit,5ms", "8Mbit", "2ms", "1gbit,0.5ms", "none". Rates in bit/s with
    /// k/m/g (10^3/10^6/10^9) before "bit" (or "bps"); delays in ms, us or s.
    /// Throws ConfigError on anything else.
    static LinkShape parse(const std::string& spec) {
        LinkShape s;
        if (spec.empty() || spec == "none" || spec == "off") return s;
        std::size_t pos = 0;
        while (pos <= spec.size()) {
            const auto comma = spec.find(',', pos);
            const std::string part = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
            pos = comma == std::string::npos ? spec.size() + 1 : comma + 1;
            if (part.empty()) continue;
            std::size_t used = 0;
            double x = 0;
            try {
                x = std::stod(part, &used);
            } catch (const std::exception&) {
                throw ConfigError("link shape '" + spec + "': '" + part + "' is not a number with a unit");
            }
            std::string unit = part.substr(used);
            for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (!(x >= 0) || !std::isfinite(x)) throw ConfigError("link shape '" + spec + "': negative or non-finite value");
            if (unit == "ms") s.latency_ms = x;
            else if (unit == "us") s.latency_ms = x / 1e3;
            else if (unit == "s") s.latency_ms = x * 1e3;
            else if (unit == "bit" || unit == "bps") s.bandwidth_bps = x;
            else if (unit == "kbit" || unit == "kbps") s.bandwidth_bps = x * 1e3;
            else if (unit == "mbit" || unit == "mbps") s.bandwidth_bps = x * 1e6;
            else if (unit == "gbit" || unit == "gbps") s.bandwidth_bps = x * 1e9;
            else
                throw ConfigError("link shape '" + spec + "': unknown unit '" + unit +
                                  "' (bandwidth: bit, kbit, mbit, gbit; delay: us, ms, s)");
        }
        return s;
    }

    std::string describe() const {
        if (!active()) return "unshaped";
        char buf[96];
        if (bandwidth_bps > 0)
            std::snprintf(buf, sizeof buf, "%.4g Mbit/s, %.4g ms", bandwidth_bps / 1e6, latency_ms);
        else
            std::snprintf(buf, sizeof buf, "unlimited bandwidth, %.4g ms", latency_ms);
        return buf;
    }
};

/// The token bucket of one directed link (not thread-safe: one writer owns it).
class LinkShaper {
public:
    using clock = std::chrono::steady_clock;

    LinkShaper() = default;
    explicit LinkShaper(LinkShape shape) : shape_(shape) {
        if (shape_.bandwidth_bps < 0 || shape_.latency_ms < 0) throw ConfigError("link shape values must be >= 0");
    }

    const LinkShape& shape() const noexcept { return shape_; }
    bool active() const noexcept { return shape_.active(); }

    /// When a frame of `bytes` queued at `queued` reaches the peer.
    clock::time_point arrival(std::uint64_t bytes, clock::time_point queued) {
        auto done = queued;
        if (shape_.bandwidth_bps > 0) {
            const double rate = shape_.bytes_per_s();
            const auto credit = to_duration(static_cast<double>(shape_.burst()) / rate);
            const auto start = std::max(free_, queued - credit);
            free_ = start + to_duration(static_cast<double>(bytes) / rate);
            done = std::max(queued, free_);
        }
        return done + to_duration(shape_.latency_ms / 1e3);
    }

private:
    static clock::duration to_duration(double seconds) {
        return std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
    }

    LinkShape shape_{};
    clock::time_point free_{};  // when the link has sent every byte given so far (virtual time)
};

}  // namespace tandem
