// A live Listener + TcpTransport in this process against hand-driven peers:
// refusals reach the peer with their reason, slow and silent peers are cut
// off by their deadlines (measured), a hostile frame closes only its own
// link and is counted, a flood of unadmitted connections is capped, and
// dialing a peer that never answers times out with a typed error.
#include <doctest/doctest.h>

#include <asio/ip/tcp.hpp>

#include <tandem/transport/listener.hpp>
#include <tandem/transport/tls.hpp>

#include "transport/raw_link.hpp"

using namespace tandem;
using namespace tandem::nettest;
using clock_type = std::chrono::steady_clock;

namespace {

LinkOptions fast_link() {
    LinkOptions l;
    l.idle_timeout = 600ms;
    l.handshake_timeout = 400ms;
    l.frame_grace = 200ms;
    l.min_rate_bytes_per_s = 64 * 1024;
    return l;
}

// A server endpoint (device 1) with a listener; admits everyone unless told otherwise.
struct Server {
    NetThread& net;
    std::mutex log_mutex;
    std::string log;
    TcpTransport tcp;
    Listener listener;

    Server(NetThread& n, TlsConfig* tls, std::string refuse = "")
        : net(n),
          tcp(n.io.get_executor(), 1,
              TcpTransportOptions{.link = fast_link(), .tls = tls, .heartbeat = 150ms, .name = "server",
                                  .log = [this](const std::string& l) {
                                      std::lock_guard lock(log_mutex);
                                      log += l + "\n";
                                  }}),
          listener(tcp, "127.0.0.1", 0) {
        listener.start([refuse](const wire::Hello&, std::shared_ptr<Connection>) -> asio::awaitable<std::string> {
            co_return refuse;
        });
    }
    ~Server() {
        listener.stop();
        tcp.close();
        net.stop();  // the listener's and transport's coroutines refer to them
    }
    std::uint16_t port() { return listener.port(); }
    std::string logged() {
        std::lock_guard lock(log_mutex);
        return log;
    }
    bool wait_log(const std::string& what, std::chrono::milliseconds timeout = 3s) {
        const auto end = clock_type::now() + timeout;
        while (clock_type::now() < end) {
            if (logged().find(what) != std::string::npos) return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }
    // The next message in the server's inbox, or nullopt after `timeout`.
    std::optional<Message> next(std::chrono::milliseconds timeout) {
        auto fut = asio::co_spawn(net.io, tcp.receive(), asio::use_future);
        if (fut.wait_for(timeout) == std::future_status::timeout) return std::nullopt;
        return fut.get();
    }
};

Message small_message(RequestId r) {
    Message m;
    m.kind = MessageKind::Activations;
    m.request = r;
    m.positions = {0};
    m.tensors.push_back({"hidden", {1, 32}, std::vector<float>(32, 0.5f)});
    return m;
}

std::vector<std::byte> header(std::uint16_t type, std::uint64_t length) {
    const auto h = wire::encode_header({wire::kProtocolVersion, static_cast<wire::FrameType>(type), length});
    return {h.begin(), h.end()};
}

}  // namespace

TEST_CASE("transport: a refused peer reads the reason before the link closes" * doctest::timeout(60)) {
    NetThread net;
    TlsConfig tls(ClusterKey::generate());
    Server server(net, &tls, "go away: testing refusals");
    TcpTransport client(net.io.get_executor(), 0, {.link = fast_link(), .tls = &tls, .name = "client"});
    // Many times: the refusal must not race the close.
    for (int i = 0; i < 20; ++i) {
        auto fut = asio::co_spawn(net.io, client.dial("127.0.0.1", server.port(), wire::Role::Coordinator), asio::use_future);
        CHECK_THROWS_WITH_AS(fut.get(), doctest::Contains("refused: go away: testing refusals"), ProtocolError);
    }
    client.close();
    net.stop();
}

TEST_CASE("transport: a peer that breaks the protocol hears why, and only its link closes" * doctest::timeout(60)) {
    NetThread net;
    Server server(net, nullptr);
    RawLink bad(net, server.port(), nullptr), good(net, server.port(), nullptr);
    REQUIRE(bad.hello(wire::Role::Peer, 5).value().accepted);
    REQUIRE(good.hello(wire::Role::Peer, 6).value().accepted);
    bad.send(header(4242, 0));
    CHECK(bad.wait_closed(3s).has_value());
    CHECK(bad.errors().find("unknown frame type 4242") != std::string::npos);
    CHECK(server.tcp.stats().rejected_frames == 1);
    const auto lost = server.next(3s);
    REQUIRE(lost.has_value());
    CHECK(lost->kind == MessageKind::Error);
    CHECK(lost->request == 0);
    CHECK(lost->from == 5);
    CHECK(lost->text.find("refused a hostile frame") != std::string::npos);
    // The other link still delivers.
    good.send_frame(wire::FrameType::Data, wire::to_wire(small_message(77), wire::Encoding::F32));
    const auto m = server.next(3s);
    REQUIRE(m.has_value());
    CHECK(m->request == 77);
    CHECK(m->from == 6);
}

TEST_CASE("transport: a silent peer is lost after the idle timeout, and the inbox hears of it" * doctest::timeout(60)) {
    NetThread net;
    Server server(net, nullptr);
    RawLink quiet(net, server.port(), nullptr);
    REQUIRE(quiet.hello(wire::Role::Peer, 5).value().accepted);
    const auto t0 = clock_type::now();
    const auto lost = server.next(5s);
    const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    REQUIRE(lost.has_value());
    CHECK(lost->kind == MessageKind::Error);
    CHECK(lost->from == 5);
    CHECK(lost->text.find("timed out") != std::string::npos);
    CHECK(secs > 0.4);
    CHECK(secs < 0.6 + 0.5);  // the idle timeout, plus the watchdog's 0.1 s tick and slack
}

TEST_CASE("transport: a trickling frame is cut off at the minimum rate, not after its claimed length" *
          doctest::timeout(60)) {
    NetThread net;
    Server server(net, nullptr);
    RawLink slow(net, server.port(), nullptr);
    REQUIRE(slow.hello(wire::Role::Peer, 5).value().accepted);
    // 48 MiB claimed: at 64 KiB/s that would be 768 s. Keep trickling bytes.
    slow.send(header(static_cast<std::uint16_t>(wire::FrameType::Data), 48u << 20));
    const auto t0 = clock_type::now();
    std::atomic<bool> stop{false};
    std::thread trickle([&] {
        while (!stop) {
            try {
                slow.send(std::vector<std::byte>(32, std::byte{1}));
            } catch (const std::exception&) {
                return;
            }
            std::this_thread::sleep_for(50ms);
        }
    });
    const auto lost = server.next(10s);
    const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    stop = true;
    slow.close();
    trickle.join();
    REQUIRE(lost.has_value());
    CHECK(lost->text.find("no complete frame within the deadline") != std::string::npos);
    CHECK(secs < 0.2 + 1.0 + 0.6);  // grace + one 64 KiB chunk at 64 KiB/s + slack
}

TEST_CASE("transport: a peer that drops mid-frame is reported lost, not delivered" * doctest::timeout(60)) {
    NetThread net;
    Server server(net, nullptr);
    RawLink l(net, server.port(), nullptr);
    REQUIRE(l.hello(wire::Role::Peer, 5).value().accepted);
    auto frame = RawLink::frame_bytes(wire::FrameType::Data, wire::encode(wire::to_wire(small_message(3), wire::Encoding::F32)));
    l.send(std::span<const std::byte>(frame.data(), frame.size() - 3));
    l.close();
    const auto lost = server.next(3s);
    REQUIRE(lost.has_value());
    CHECK(lost->kind == MessageKind::Error);
    CHECK(lost->text.find("dropped mid-frame") != std::string::npos);
}

TEST_CASE("transport: before admission a frame may claim no more than a Hello needs" * doctest::timeout(60)) {
    NetThread net;
    Server server(net, nullptr);
    RawLink l(net, server.port(), nullptr);
    l.send(header(static_cast<std::uint16_t>(wire::FrameType::Hello), Listener::kMaxHelloFrame + 1));
    CHECK(l.wait_closed(3s).has_value());
    CHECK(l.errors().find("exceeds the limit of 65536") != std::string::npos);
    CHECK(server.wait_log("incoming connection dropped"));
    CHECK(server.tcp.stats().rejected_frames == 1);
}

TEST_CASE("transport: unadmitted connections past the limit are dropped; the listener keeps serving" *
          doctest::timeout(60)) {
    NetThread net;
    Server server(net, nullptr);
    std::vector<std::unique_ptr<RawLink>> silent;
    for (int i = 0; i < Listener::kMaxPending + 10; ++i) silent.push_back(std::make_unique<RawLink>(net, server.port(), nullptr));
    CHECK(server.wait_log("connections already waiting for admission"));
    // The last ones were closed at once (well before the 600 ms idle deadline
    // that ends the others).
    int closed_now = 0;
    for (std::size_t i = silent.size() - 10; i < silent.size(); ++i)
        closed_now += silent[i]->wait_closed(20ms).has_value() ? 1 : 0;
    CHECK(closed_now == 10);
    std::this_thread::sleep_for(800ms);
    RawLink late(net, server.port(), nullptr);
    const auto ack = late.hello(wire::Role::Peer, 9);
    REQUIRE(ack.has_value());
    CHECK(ack->accepted);
}

TEST_CASE("transport: dialing a peer that accepts TCP but never answers TLS times out" * doctest::timeout(30)) {
    NetThread net;
    // A socket that listens (the kernel completes TCP handshakes) but never reads.
    asio::ip::tcp::acceptor mute(net.io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    TlsConfig tls(ClusterKey::generate());
    TcpTransport client(net.io.get_executor(), 0, {.link = fast_link(), .tls = &tls, .name = "client"});
    const auto t0 = clock_type::now();
    auto fut = asio::co_spawn(net.io, client.dial("127.0.0.1", mute.local_endpoint().port(), wire::Role::Coordinator),
                              asio::use_future);
    CHECK_THROWS_WITH_AS(fut.get(), doctest::Contains("TLS handshake timed out"), PeerLostError);
    const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    CHECK(secs < 0.4 + 0.5);
    client.close();
    net.stop();
    mute.close();
}

TEST_CASE("transport: sending to a device nobody listens for is a typed error" * doctest::timeout(30)) {
    NetThread net;
    std::uint16_t port = 0;
    {
        asio::ip::tcp::acceptor a(net.io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        port = a.local_endpoint().port();
    }  // closed: nothing listens there now
    TcpTransport client(net.io.get_executor(), 0, {.link = fast_link(), .name = "client"});
    client.set_address(3, "127.0.0.1", port);
    auto fut = asio::co_spawn(net.io, client.send(3, small_message(1)), asio::use_future);
    CHECK_THROWS_WITH_AS(fut.get(), doctest::Contains("cannot connect"), PeerLostError);
    auto none = asio::co_spawn(net.io, client.send(4, small_message(1)), asio::use_future);
    CHECK_THROWS_WITH_AS(none.get(), doctest::Contains("no link and no address"), PeerLostError);
    client.close();
    net.stop();
}
