// A hand-driven client for tests of tandem's links: TCP (and TLS when given a
// config), then raw bytes or frames exactly as the test writes them, with
// blocking calls and timeouts; and a network thread to run it on.
#pragma once

#include <array>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>

#include <tandem/transport/connection.hpp>
#include <tandem/transport/listener.hpp>
#include <tandem/transport/protocol.hpp>
#include <tandem/transport/tls.hpp>

namespace tandem::nettest {

using namespace std::chrono_literals;

/// A network thread for a test's in-process endpoints.
/// Endpoints (TcpTransport, Listener) made on it must be destroyed after
/// stop(): their coroutines refer to them while the thread runs.
struct NetThread {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    std::thread t{[this] { io.run(); }};
    void stop() {
        guard.reset();
        io.stop();
        if (t.joinable()) t.join();
    }
    ~NetThread() { stop(); }
};

/// A hand-driven client: TCP (and TLS when given a config), then raw bytes or
/// frames exactly as the test writes them. Blocking calls with timeouts.
class RawLink {
public:
    using Tcp = asio::ip::tcp::socket;
    using Tls = asio::ssl::stream<Tcp>;

private:
    asio::awaitable<void> read_some(std::byte* p, std::size_t n) {
        if (tls_) co_await asio::async_read(*tls_, asio::buffer(p, n), asio::use_awaitable);
        else co_await asio::async_read(*tcp_, asio::buffer(p, n), asio::use_awaitable);
    }

    // Runs a coroutine on the network thread and waits for it; a timeout closes the link.
    template <typename F>
    auto call(F f, std::chrono::milliseconds timeout) {
        auto fut = asio::co_spawn(net_.io, f(), asio::use_future);
        if (fut.wait_for(timeout) == std::future_status::timeout) {
            close();
            fut.wait();
            throw std::runtime_error("raw link: timed out");
        }
        return fut.get();
    }


public:

    RawLink(NetThread& net, std::uint16_t port, TlsConfig* tls) : net_(net) {
        call([this, port, tls]() -> asio::awaitable<void> {
            Tcp sock(net_.io);
            asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
            co_await sock.async_connect(ep, asio::use_awaitable);
            sock.set_option(asio::ip::tcp::no_delay(true));
            if (tls) {
                tls_ = std::make_unique<Tls>(std::move(sock), tls->client());
                co_await tls_->async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
            } else {
                tcp_ = std::make_unique<Tcp>(std::move(sock));
            }
        }, 5s);
    }
    ~RawLink() { close(); }

    /// Writes bytes as they are.
    void send(std::span<const std::byte> bytes) {
        std::vector<std::byte> copy(bytes.begin(), bytes.end());
        call([this, copy = std::move(copy)]() -> asio::awaitable<void> {
            if (tls_) co_await asio::async_write(*tls_, asio::buffer(copy), asio::use_awaitable);
            else co_await asio::async_write(*tcp_, asio::buffer(copy), asio::use_awaitable);
        }, 10s);
    }
    void send(const std::vector<std::byte>& b) { send(std::span<const std::byte>(b)); }

    static std::vector<std::byte> frame_bytes(wire::FrameType type, const std::vector<std::byte>& payload,
                                              std::uint16_t version = wire::kProtocolVersion) {
        const auto h = wire::encode_header({version, type, payload.size()});
        std::vector<std::byte> out(wire::kHeaderSize + payload.size());
        std::memcpy(out.data(), h.data(), h.size());
        if (!payload.empty()) std::memcpy(out.data() + h.size(), payload.data(), payload.size());
        return out;
    }
    template <typename T>
    void send_frame(wire::FrameType type, const T& body) {
        send(frame_bytes(type, wire::encode(body)));
    }

    /// The next frame, or nullopt if none arrived within `timeout` or the link closed.
    std::optional<Frame> read_frame(std::chrono::milliseconds timeout = 5s) {
        try {
            return call([this]() -> asio::awaitable<Frame> {
                std::array<std::byte, wire::kHeaderSize> hdr{};
                co_await read_some(hdr.data(), hdr.size());
                const auto h = wire::decode_header(hdr, 1ull << 30, "worker");
                Frame f;
                f.type = h.type;
                f.payload.resize(static_cast<std::size_t>(h.length));
                if (h.length) co_await read_some(f.payload.data(), f.payload.size());
                co_return f;
            }, timeout);
        } catch (const std::exception&) {
            return std::nullopt;
        }
    }

    /// Sends Hello as `role` and returns the answer (HelloAck, or nullopt).
    std::optional<wire::HelloAck> hello(wire::Role role = wire::Role::Coordinator, std::uint32_t device_id = 0,
                                        std::uint64_t model_id = 0) {
        wire::Hello h;
        h.role = static_cast<std::uint8_t>(role);
        h.device_id = device_id;
        h.model_id = model_id;
        h.name = "raw-test-client";
        send_frame(wire::FrameType::Hello, h);
        for (;;) {
            auto f = read_frame();
            if (!f) return std::nullopt;
            if (f->type == wire::FrameType::HelloAck) return wire::decode<wire::HelloAck>(f->payload, "worker");
            if (f->type != wire::FrameType::Ping) return std::nullopt;
        }
    }

    /// Reads (and drops) whatever arrives until the peer closes the link.
    /// Returns the seconds it took, or nullopt if the link was still open at `timeout`.
    /// Frames seen on the way are kept in `frames()`.
    std::optional<double> wait_closed(std::chrono::milliseconds timeout) {
        const auto t0 = std::chrono::steady_clock::now();
        auto fut = asio::co_spawn(net_.io, [this]() -> asio::awaitable<void> {
            for (;;) {
                std::array<std::byte, wire::kHeaderSize> hdr{};
                co_await read_some(hdr.data(), hdr.size());
                const auto h = wire::decode_header(hdr, 1ull << 30, "worker");
                Frame f;
                f.type = h.type;
                f.payload.resize(static_cast<std::size_t>(h.length));
                if (h.length) co_await read_some(f.payload.data(), f.payload.size());
                std::lock_guard lock(mutex_);
                frames_.push_back(std::move(f));
            }
        }, asio::use_future);
        if (fut.wait_for(timeout) == std::future_status::timeout) {
            close();
            fut.wait();
            return std::nullopt;
        }
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }

    std::vector<Frame> frames() const {
        std::lock_guard lock(mutex_);
        return frames_;
    }
    /// The reasons of the Error frames received so far.
    std::string errors() const {
        std::string s;
        for (const auto& f : frames())
            if (f.type == wire::FrameType::Error) s += wire::decode<wire::ErrorMsg>(f.payload, "worker").reason + "\n";
        return s;
    }

    void close() {
        if (net_.io.stopped()) {
            asio::error_code ignored;
            if (tls_) tls_->next_layer().close(ignored);
            if (tcp_) tcp_->close(ignored);
            return;
        }
        asio::post(net_.io, [this] {
            asio::error_code ignored;
            if (tls_) tls_->next_layer().close(ignored);
            if (tcp_) tcp_->close(ignored);
        });
        // Let the close run before the sockets may be destroyed.
        std::promise<void> done;
        asio::post(net_.io, [&done] { done.set_value(); });
        done.get_future().wait();
    }

private:
    NetThread& net_;
    std::unique_ptr<Tcp> tcp_;
    std::unique_ptr<Tls> tls_;
    mutable std::mutex mutex_;
    std::vector<Frame> frames_;
};

}  // namespace tandem::nettest
