// Accepts links for a TcpTransport: TCP accept, TLS handshake (unless
// insecure), then the Hello exchange. The owner decides, from the Hello,
// whether to accept; accepted peers are attached to the transport, refused
// ones get a reason and are closed. A failed or hostile connection is logged
// and dropped; the listener keeps accepting.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include "tandem/transport/tcp_transport.hpp"

namespace tandem {

class Listener {
public:
    /// Connections between accept and admission (TLS handshake, Hello) at
    /// once; more are closed at once, so a flood of idle sockets cannot pin
    /// unbounded memory or file descriptors.
    static constexpr int kMaxPending = 64;
    /// The Hello is small: before a peer is admitted, a frame may not claim more.
    static constexpr std::uint64_t kMaxHelloFrame = 64 * 1024;

    /// Returns an empty string to accept the peer, or the reason to refuse it.
    /// May also take the connection for itself (return "taken" after using it).
    using Admit = std::function<asio::awaitable<std::string>(const wire::Hello&, std::shared_ptr<Connection>)>;

    Listener(TcpTransport& transport, const std::string& host, std::uint16_t port)
        : transport_(transport), acceptor_(transport.net_executor()) {
        asio::ip::tcp::resolver resolver(transport.net_executor());
        const auto ep = *resolver.resolve(host, std::to_string(port)).begin();
        acceptor_.open(ep.endpoint().protocol());
        acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
        acceptor_.bind(ep.endpoint());
        acceptor_.listen();
    }

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

    /// Starts accepting on the transport's network executor.
    void start(Admit admit) {
        asio::co_spawn(transport_.net_executor(), accept_loop(std::move(admit)), asio::detached);
    }

    void stop() {
        asio::error_code ignored;
        acceptor_.close(ignored);
    }

private:
    asio::awaitable<void> accept_loop(Admit admit) {
        for (;;) {
            asio::ip::tcp::socket sock(transport_.net_executor());
            asio::error_code ec;
            co_await acceptor_.async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                if (!acceptor_.is_open()) co_return;
                // E.g. out of file descriptors: accepting again at once would spin.
                asio::steady_timer pause(transport_.net_executor(), std::chrono::milliseconds(50));
                co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                continue;
            }
            if (pending_->load() >= kMaxPending) {
                transport_.log("incoming connection dropped: " + std::to_string(kMaxPending) +
                               " connections already waiting for admission");
                asio::error_code ignored;
                sock.close(ignored);
                continue;
            }
            ++*pending_;
            asio::co_spawn(transport_.net_executor(), greet(std::move(sock), admit, pending_), asio::detached);
        }
    }

    // `pending` counts this greeting until it ends (shared: it may outlive the listener).
    asio::awaitable<void> greet(asio::ip::tcp::socket sock, Admit admit, std::shared_ptr<std::atomic<int>> pending) {
        struct Done {
            std::atomic<int>& n;
            ~Done() { --n; }
        } done{*pending};
        std::shared_ptr<Connection> c;
        std::string refusal, failure;
        bool hostile = false;
        try {
            c = co_await Connection::accept(std::move(sock), transport_.options().link, transport_.options().tls);
            const auto f = co_await c->read_frame(kMaxHelloFrame);
            if (f.type != wire::FrameType::Hello)
                throw ProtocolError(c->peer(), std::string("expected Hello first, got ") + wire::frame_type_name(f.type));
            const auto hello = wire::decode<wire::Hello>(f.payload, c->peer());
            if (hello.version != wire::kProtocolVersion)
                refusal = "protocol version " + std::to_string(hello.version) + " is not supported";
            else
                refusal = co_await admit(hello, c);
            if (refusal == "taken") co_return;
            wire::HelloAck ack;
            ack.accepted = refusal.empty();
            ack.reason = refusal;
            ack.name = transport_.options().name;
            ack.memory_budget = transport_.options().memory_budget;
            ack.threads = transport_.options().threads;
            co_await c->send(wire::FrameType::HelloAck, ack);
            if (!refusal.empty()) {
                transport_.log(c->peer() + ": refused: " + refusal);
                co_await c->close_after_flush("refused: " + refusal);  // the peer reads why
                co_return;
            }
            transport_.attach(hello.device_id, c);
        } catch (const std::exception& e) {
            failure = e.what();
            hostile = dynamic_cast<const ProtocolError*>(&e) != nullptr;
        }
        if (failure.empty()) co_return;
        transport_.log("incoming connection dropped: " + failure);
        if (!c) co_return;
        if (!hostile) {
            c->close(failure);
            co_return;
        }
        // A peer that broke the protocol hears why before the link closes.
        transport_.count_rejected();
        try {
            const wire::ErrorMsg err{failure};  // named: GCC 12 mishandles temporaries in co_await
            co_await c->send(wire::FrameType::Error, err);
            co_await c->close_after_flush(failure);
        } catch (const std::exception&) {
            c->close(failure);
        }
    }

    TcpTransport& transport_;
    asio::ip::tcp::acceptor acceptor_;
    std::shared_ptr<std::atomic<int>> pending_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace tandem
