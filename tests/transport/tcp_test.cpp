// TcpTransport on real loopback sockets: messages round-trip exactly in every
// encoding, TLS with the right key works and the wrong key is refused.
#include <doctest/doctest.h>

#include <future>
#include <thread>

#include <asio/io_context.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/use_future.hpp>

#include <tandem/transport/listener.hpp>
#include <tandem/transport/tls.hpp>

using namespace tandem;

namespace {

// A network thread for the duration of a test.
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

Message sample_message() {
    Message m;
    m.kind = MessageKind::Activations;
    m.request = 42;
    m.step = 7;
    m.first_block = 3;
    m.positions = {5, 6};
    Tensor h;
    h.name = "hidden";
    h.shape = {2, 64};
    for (int i = 0; i < 128; ++i) h.data.push_back(static_cast<float>(i) * 0.25f - 3.0f);
    m.tensors.push_back(h);
    return m;
}

// Sends one message from a dialer to a listener and returns what arrived.
Message round_trip(wire::Encoding enc, TlsConfig* server_tls, TlsConfig* client_tls) {
    NetThread net;
    TcpTransport server(net.io.get_executor(), 1, {.tls = server_tls, .name = "server"});
    TcpTransport client(net.io.get_executor(), 0, {.tls = client_tls, .encoding = enc, .name = "client"});
    Listener listener(server, "127.0.0.1", 0);
    listener.start([](const wire::Hello&, std::shared_ptr<Connection>) -> asio::awaitable<std::string> { co_return ""; });
    client.set_address(1, "127.0.0.1", listener.port());
    auto fut = asio::co_spawn(net.io, [&]() -> asio::awaitable<Message> {
        co_await client.send(1, sample_message());
        co_return co_await server.receive();
    }, asio::use_future);
    auto m = fut.get();
    listener.stop();
    client.close();
    server.close();
    return m;
}

}  // namespace

TEST_CASE("transport: a message crosses loopback TCP exactly (F32), and close to it (F16, Q8_0)" * doctest::timeout(30)) {
    const auto want = sample_message();
    const auto f32 = round_trip(wire::Encoding::F32, nullptr, nullptr);
    CHECK(f32.request == 42);
    CHECK(f32.step == 7);
    CHECK(f32.first_block == 3);
    CHECK(f32.from == 0);
    CHECK(f32.positions == want.positions);
    REQUIRE(f32.tensors.size() == 1);
    CHECK(f32.tensors[0].shape == want.tensors[0].shape);
    CHECK(f32.tensors[0].data == want.tensors[0].data);

    const auto f16 = round_trip(wire::Encoding::F16, nullptr, nullptr);
    for (std::size_t i = 0; i < want.tensors[0].data.size(); ++i)
        CHECK(f16.tensors[0].data[i] == doctest::Approx(want.tensors[0].data[i]).epsilon(1e-3));
    const auto q8 = round_trip(wire::Encoding::Q8_0, nullptr, nullptr);
    for (std::size_t i = 0; i < want.tensors[0].data.size(); ++i)
        CHECK(std::abs(q8.tensors[0].data[i] - want.tensors[0].data[i]) <= 29.0f / 127.0f * (0.5f + 127.0f / 2048.0f));  // d/2, plus d rounded to F16
}

TEST_CASE("transport: TLS with the cluster key works; a wrong key and plaintext are refused" * doctest::timeout(30)) {
    TlsConfig a(ClusterKey::generate());
    const auto m = round_trip(wire::Encoding::F32, &a, &a);
    CHECK(m.tensors.at(0).data == sample_message().tensors[0].data);

    TlsConfig b(ClusterKey::generate());
    CHECK_THROWS_AS(round_trip(wire::Encoding::F32, &a, &b), AuthError);
    CHECK_THROWS_AS(round_trip(wire::Encoding::F32, &a, nullptr), Error);   // plaintext client, TLS server
    CHECK_THROWS_AS(round_trip(wire::Encoding::F32, nullptr, &a), Error);   // TLS client, plaintext server
}
