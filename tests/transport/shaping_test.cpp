// Link emulation inside the transport (LinkShape / LinkShaper): the token
// bucket's arrival times against a hand computation, the spec parser, and on
// real loopback sockets a shaped Connection that delivers no faster than its
// bandwidth, one latency late, with delays pipelined rather than serialized.
// Timings are checked against lower bounds (the shaping is behaviour) and
// generous upper bounds (a loaded 2-core machine may be slow).
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <thread>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>

#include <tandem/transport/connection.hpp>
#include <tandem/transport/link_shaper.hpp>

using namespace tandem;
using clock_type = std::chrono::steady_clock;

namespace {

double secs(clock_type::duration d) { return std::chrono::duration<double>(d).count(); }

struct NetThread {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    std::thread t{[this] { io.run(); }};
    ~NetThread() {
        guard.reset();
        io.stop();
        t.join();
    }
};

// A connected pair on loopback: `client` writes with `shape`, `server` reads.
struct Pair {
    std::shared_ptr<Connection> client, server;
};

Pair connect_pair(asio::io_context& io, LinkShape shape) {
    asio::ip::tcp::acceptor acc(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const auto port = acc.local_endpoint().port();
    LinkOptions server_opt;
    LinkOptions client_opt;
    client_opt.shape = shape;
    auto server_f = asio::co_spawn(io, [&]() -> asio::awaitable<std::shared_ptr<Connection>> {
        auto sock = co_await acc.async_accept(asio::use_awaitable);
        co_return co_await Connection::accept(std::move(sock), server_opt, nullptr);
    }, asio::use_future);
    auto client = asio::co_spawn(io, Connection::connect(io.get_executor(), "127.0.0.1", port, client_opt, nullptr),
                                 asio::use_future)
                      .get();
    return {client, server_f.get()};
}

// Sends `frames` payloads of `bytes` each back to back and returns, per frame,
// seconds from the first send to its arrival at the server.
std::vector<double> send_and_time(asio::io_context& io, const Pair& p, int frames, std::size_t bytes) {
    const auto t0 = clock_type::now();
    auto arrivals = asio::co_spawn(io, [&]() -> asio::awaitable<std::vector<double>> {
        std::vector<double> at;
        for (int i = 0; i < frames; ++i) {
            const auto f = co_await p.server->read_frame();
            if (f.payload.size() != bytes) throw std::runtime_error("frame size changed on the way");
            at.push_back(secs(clock_type::now() - t0));
        }
        co_return at;
    }, asio::use_future);
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        for (int i = 0; i < frames; ++i) {
            std::vector<std::byte> payload(bytes, std::byte{static_cast<unsigned char>(i)});
            co_await p.client->write_frame(wire::FrameType::TensorChunk, std::move(payload));
        }
    }, asio::use_future).get();
    return arrivals.get();
}

}  // namespace

TEST_CASE("transport: link shape specs parse to bit/s and ms, and bad ones are refused") {
    const auto a = LinkShape::parse("100mbit,5ms");
    CHECK(a.bandwidth_bps == doctest::Approx(100e6));
    CHECK(a.latency_ms == doctest::Approx(5));
    const auto b = LinkShape::parse("2ms,8Mbit");
    CHECK(b.bandwidth_bps == doctest::Approx(8e6));
    CHECK(b.latency_ms == doctest::Approx(2));
    CHECK(LinkShape::parse("1gbit").latency_ms == 0);
    CHECK(LinkShape::parse("500us").latency_ms == doctest::Approx(0.5));
    CHECK_FALSE(LinkShape::parse("none").active());
    CHECK_THROWS_AS(LinkShape::parse("100mb/s"), ConfigError);
    CHECK_THROWS_AS(LinkShape::parse("fast"), ConfigError);
    CHECK_THROWS_AS(LinkShape::parse("-5ms"), ConfigError);
}

TEST_CASE("transport: the token bucket's arrival times match a hand computation") {
    // 8 Mbit/s = 1e6 bytes/s, burst 10,000 bytes (10 ms of credit), 20 ms delay.
    LinkShaper s({.bandwidth_bps = 8e6, .latency_ms = 20, .burst_bytes = 10000});
    const auto t0 = clock_type::now();
    auto at = [&](std::uint64_t n, double queued_s) {
        const auto q = t0 + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(queued_s));
        return secs(s.arrival(n, q) - t0);
    };
    // An idle link: a frame within the burst leaves at once, arrives one delay later.
    CHECK(at(5000, 0.0) == doctest::Approx(0.020).epsilon(1e-6));
    // The link has used its credit (start -0.010, busy until -0.005): this
    // frame starts at -0.005 and ends at 0.095.
    CHECK(at(100000, 0.0) == doctest::Approx(0.115).epsilon(1e-6));
    // Queued while the link is busy: ends 0.195, arrives 0.215 (not 0.235:
    // the delay of the previous frame is not added to this one).
    CHECK(at(100000, 0.001) == doctest::Approx(0.215).epsilon(1e-6));
    // After a long idle gap the credit is back, capped at the burst.
    CHECK(at(5000, 10.0) == doctest::Approx(10.020).epsilon(1e-6));
    CHECK(at(20000, 10.0) == doctest::Approx(10.020 + 0.015).epsilon(1e-6));  // starts 9.995 (the credit left), busy 20 ms, + 20 ms
    // Latency only: every frame one delay after it was queued.
    LinkShaper d({.bandwidth_bps = 0, .latency_ms = 7});
    CHECK(secs(d.arrival(1u << 20, t0) - t0) == doctest::Approx(0.007).epsilon(1e-6));
}

TEST_CASE("transport: a shaped link delivers 1 MB at 8 Mbit/s in no less than about a second" * doctest::timeout(60)) {
    NetThread net;
    const auto pair = connect_pair(net.io, LinkShape{.bandwidth_bps = 8e6, .latency_ms = 0});
    // 16 frames of 64 KiB (+16-byte headers) = 1,048,832 bytes on the wire.
    const auto at = send_and_time(net.io, pair, 16, 64 * 1024);
    const double wire_bytes = 16.0 * (64 * 1024 + wire::kHeaderSize);
    const double expect = (wire_bytes - 16 * 1024) / 1e6;  // minus the default burst of 16 KiB
    const double rate = wire_bytes / at.back();
    std::printf("shaped 8 Mbit/s: 1 MB in %.3f s (expected %.3f s), %.2f Mbit/s delivered\n", at.back(), expect,
                rate * 8 / 1e6);
    CHECK(at.back() >= expect - 0.01);
    CHECK(at.back() < expect + 1.5);
    // Frames arrive spread over the second, at the rate, not all at the end.
    CHECK(at[7] >= (8 * (64 * 1024 + 16.0) - 16 * 1024) / 1e6 - 0.01);
    pair.client->close();
    pair.server->close();
}

TEST_CASE("transport: a shaped link's delay is one latency per frame and pipelined" * doctest::timeout(60)) {
    NetThread net;
    const auto pair = connect_pair(net.io, LinkShape{.bandwidth_bps = 0, .latency_ms = 100});
    // 20 small frames back to back: each arrives ~100 ms after it was sent, so
    // the last at ~0.1 s, not 20 x 0.1 s as a writer that slept per frame would do.
    const auto at = send_and_time(net.io, pair, 20, 256);
    std::printf("shaped 100 ms: first frame after %.1f ms, last (20th) after %.1f ms\n", at.front() * 1e3,
                at.back() * 1e3);
    CHECK(at.front() >= 0.099);
    CHECK(at.front() < 0.6);
    CHECK(at.back() < 0.8);

    // Bandwidth and delay together: 10 frames of 100 KB at 80 Mbit/s (10 ms
    // each) with 50 ms delay: the last leaves at ~100 ms and arrives ~150 ms,
    // not at 10 x (10 + 50) ms.
    NetThread net2;
    const auto both = connect_pair(net2.io, LinkShape{.bandwidth_bps = 80e6, .latency_ms = 50});
    const auto at2 = send_and_time(net2.io, both, 10, 100000);
    const double wire_bytes = 10.0 * (100000 + wire::kHeaderSize);
    const double expect = (wire_bytes - 20000) / 10e6 + 0.050;  // burst: 2 ms of 10 MB/s = 20 KB
    std::printf("shaped 80 Mbit/s + 50 ms: 1 MB in %.1f ms (expected %.1f ms)\n", at2.back() * 1e3, expect * 1e3);
    CHECK(at2.front() >= 0.050);
    CHECK(at2.back() >= expect - 0.01);
    CHECK(at2.back() < expect + 0.4);
    for (auto* c : {&pair, &both}) {
        c->client->close();
        c->server->close();
    }
}

TEST_CASE("transport: an unshaped link is not slowed (no shaping without a LinkShape)" * doctest::timeout(60)) {
    NetThread net;
    const auto pair = connect_pair(net.io, LinkShape{});
    const auto at = send_and_time(net.io, pair, 16, 64 * 1024);
    std::printf("unshaped: 1 MB in %.2f ms\n", at.back() * 1e3);
    CHECK(at.back() < 0.5);  // loopback moves 1 MB in milliseconds; the 8 Mbit/s link took a second
    pair.client->close();
    pair.server->close();
}
