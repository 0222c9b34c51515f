// One framed link to a peer: TCP, or TLS over TCP, with deadlines.
//
// Reads return whole frames (wire.hpp) and enforce: the frame limit, a known
// type and version, an idle deadline (a live peer sends something, at least a
// heartbeat, every `idle_timeout`) and a per-frame deadline (a peer that starts
// a frame must finish it at a minimum rate: slow-loris peers are cut off).
// Writes go through a queue drained by one writer coroutine, so any coroutine
// on any thread may send. The connection's coroutines run on its executor
// (the network thread); a failure closes only this connection. With a
// LinkOptions::shape, the writer holds each frame until the emulated link
// would deliver it (link_shaper.hpp), stamped with when it was queued.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/experimental/concurrent_channel.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#if defined(TANDEM_HAS_TLS)
#include <asio/ssl/stream.hpp>

#include "tandem/transport/tls.hpp"
#endif

#include "tandem/core/error.hpp"
#include "tandem/transport/link_shaper.hpp"
#include "tandem/transport/wire.hpp"

namespace tandem {

class TlsConfig;  // transport/tls.hpp

struct LinkOptions {
    std::uint64_t max_frame = wire::kDefaultMaxFrame;
    std::chrono::milliseconds idle_timeout{5000};       // no frame at all for this long: peer lost
    std::chrono::milliseconds handshake_timeout{5000};  // TCP connect + TLS handshake
    double min_rate_bytes_per_s = 64 * 1024;            // a started frame must arrive this fast
    std::chrono::milliseconds frame_grace{2000};        // plus this much
    LinkShape shape{};  // emulated bandwidth and delay of this side's outgoing frames (link_shaper.hpp)
};

struct Frame {
    wire::FrameType type = wire::FrameType::Data;
    std::vector<std::byte> payload;
    std::chrono::steady_clock::time_point started{};  // when its header had arrived (the payload's transfer began)
};

class Connection : public std::enable_shared_from_this<Connection> {
public:
    using Tcp = asio::ip::tcp::socket;
#if defined(TANDEM_HAS_TLS)
    using Tls = asio::ssl::stream<Tcp>;
    using Stream = std::variant<Tcp, Tls>;
#else
    using Stream = std::variant<Tcp>;
#endif
    using clock = std::chrono::steady_clock;

    /// Opens a connection to host:port (TLS when `tls` is given).
    static asio::awaitable<std::shared_ptr<Connection>> connect(asio::any_io_executor ex, std::string host,
                                                                std::uint16_t port, LinkOptions opt,
                                                                TlsConfig* tls /* null: plaintext */) {
        const std::string peer = host + ":" + std::to_string(port);
        asio::ip::tcp::resolver resolver(ex);
        Tcp sock(ex);
        // One deadline for connect and handshake; it closes whichever socket is current.
        HandshakeGuard guard(ex, opt.handshake_timeout, &sock);
        try {
            const auto endpoints = co_await resolver.async_resolve(host, std::to_string(port), asio::use_awaitable);
            co_await asio::async_connect(sock, endpoints, asio::use_awaitable);
            sock.set_option(asio::ip::tcp::no_delay(true));
        } catch (const std::exception& e) {
            const bool timed_out = guard.finish();
            throw PeerLostError(peer, timed_out ? "connect timed out" : std::string("cannot connect: ") + e.what());
        }
        std::shared_ptr<Connection> c;
#if defined(TANDEM_HAS_TLS)
        if (tls != nullptr) {
            Tls stream(std::move(sock), tls->client());
            guard.watch(&stream.next_layer());
            try {
                co_await stream.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
            } catch (const std::exception& e) {
                if (guard.finish())  // a peer that accepts TCP but never answers (stopped, overloaded, not tandem)
                    throw PeerLostError(peer, "TLS handshake timed out");
                throw AuthError(peer, std::string("TLS handshake refused (wrong cluster key, or the peer is not "
                                                  "using TLS): ") + e.what());
            }
            guard.finish();
            c = std::shared_ptr<Connection>(new Connection(std::move(stream), peer, opt));
        } else
#endif
        {
            (void)tls;
            guard.finish();
            c = std::shared_ptr<Connection>(new Connection(std::move(sock), peer, opt));
        }
        c->start();
        co_return c;
    }

    /// Wraps an accepted socket; performs the server side of the TLS handshake.
    static asio::awaitable<std::shared_ptr<Connection>> accept(Tcp sock, LinkOptions opt, TlsConfig* tls) {
        std::string peer = "?";
        asio::error_code ignored;
        const auto ep = sock.remote_endpoint(ignored);
        if (!ignored) peer = ep.address().to_string() + ":" + std::to_string(ep.port());
        sock.set_option(asio::ip::tcp::no_delay(true), ignored);
        std::shared_ptr<Connection> c;
#if defined(TANDEM_HAS_TLS)
        if (tls != nullptr) {
            Tls stream(std::move(sock), tls->server());
            HandshakeGuard guard(stream.get_executor(), opt.handshake_timeout, &stream.next_layer());
            try {
                co_await stream.async_handshake(asio::ssl::stream_base::server, asio::use_awaitable);
            } catch (const std::exception& e) {
                if (guard.finish()) throw PeerLostError(peer, "TLS handshake timed out");
                throw AuthError(peer, std::string("TLS handshake refused (no or wrong cluster key, or plaintext): ") +
                                          e.what());
            }
            guard.finish();
            c = std::shared_ptr<Connection>(new Connection(std::move(stream), peer, opt));
        } else
#endif
        {
            (void)tls;
            c = std::shared_ptr<Connection>(new Connection(std::move(sock), peer, opt));
        }
        c->start();
        co_return c;
    }

    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    const std::string& peer() const noexcept { return peer_; }
    bool is_open() const noexcept { return !closed_.load(); }
    bool encrypted() const noexcept { return stream_.index() == 1; }
    asio::any_io_executor executor() { return executor_; }

    /// Reads the next whole frame. Throws ProtocolError for a hostile frame,
    /// PeerLostError when the peer closed, dropped mid-frame, or went silent.
    /// `max_length` (0: the link's max_frame) bounds this frame's payload, e.g.
    /// a small Hello before the peer is admitted.
    asio::awaitable<Frame> read_frame(std::uint64_t max_length = 0) {
        std::array<std::byte, wire::kHeaderSize> hdr{};
        deadline_ = clock::now() + opt_.idle_timeout;
        co_await read_exact(hdr.data(), hdr.size(), "frame header");
        const auto limit = max_length != 0 ? std::min(max_length, opt_.max_frame) : opt_.max_frame;
        const auto h = wire::decode_header(hdr, limit, peer_);
        // A started frame must keep arriving at min_rate: `frame_grace` after
        // its header, the peer must have sent elapsed * min_rate bytes. The
        // payload is read in chunks, each due when the bytes through its end
        // were due, so a trickling peer is cut off within about a chunk's time
        // (not after the time its whole claimed length would take). The buffer
        // grows with the bytes that arrived, not with the length the header
        // claims: a lying header costs nothing it did not send.
        const auto start = clock::now();
        Frame f;
        f.type = h.type;
        f.started = start;
        f.payload.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(h.length, kReadChunk)));
        std::uint64_t got = 0;
        while (got < h.length) {
            const auto n = std::min<std::uint64_t>(kReadChunk, h.length - got);
            deadline_ = start + opt_.frame_grace + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(
                                                       static_cast<double>(got + n) / opt_.min_rate_bytes_per_s));
            f.payload.resize(static_cast<std::size_t>(got + n));
            co_await read_exact(f.payload.data() + got, static_cast<std::size_t>(n), "frame payload");
            got += n;
        }
        bytes_in_ += wire::kHeaderSize + h.length;
        ++frames_in_;
        deadline_ = clock::time_point::max();
        co_return f;
    }

    /// Queues a frame for sending; waits only when the queue is full.
    asio::awaitable<void> write_frame(wire::FrameType type, std::vector<std::byte> payload) {
        if (closed_.load()) throw PeerLostError(peer_, "connection closed" + reason_suffix());
        std::vector<std::byte> frame(wire::kHeaderSize + payload.size());
        const auto hdr = wire::encode_header({wire::kProtocolVersion, type, payload.size()});
        std::memcpy(frame.data(), hdr.data(), hdr.size());
        if (!payload.empty()) std::memcpy(frame.data() + hdr.size(), payload.data(), payload.size());
        try {
            Outgoing item{std::move(frame), clock::now()};
            co_await out_.async_send(asio::error_code{}, std::move(item), asio::use_awaitable);
        } catch (const std::exception&) {
            throw PeerLostError(peer_, "connection closed" + reason_suffix());
        }
    }

    template <typename T>
    asio::awaitable<void> send(wire::FrameType type, const T& payload) {
        co_await write_frame(type, wire::encode(payload));
    }

    /// Closes the link; pending reads and writes fail with PeerLostError.
    void close(const std::string& reason = "") {
        {
            std::lock_guard lock(reason_mutex_);
            if (closed_.exchange(true)) return;
            if (!reason.empty()) reason_ = reason;
        }
        asio::post(executor_, [self = shared_from_this()] {
            asio::error_code ignored;
            std::visit([&](auto& s) { lowest(s).close(ignored); }, self->stream_);
            self->out_.close();
            self->watchdog_.cancel();
            self->flush_timer_.cancel();
            self->shape_timer_.cancel();
        });
    }

    /// Closes the link once the frames queued before this call are written
    /// (e.g. a refusal the peer should read), or after the handshake timeout
    /// if the peer does not read them.
    asio::awaitable<void> close_after_flush(std::string reason) {
        if (closed_.load()) co_return;
        {
            std::lock_guard lock(reason_mutex_);
            flush_reason_ = reason;
        }
        // Runs on the executor (like close()'s cancel), so the timer is never
        // touched by two threads; close() cancels it, so a closed link is not
        // kept alive until the timeout.
        asio::co_spawn(executor_, [self = shared_from_this(), reason]() -> asio::awaitable<void> {
            if (self->closed_.load()) co_return;
            self->flush_timer_.expires_after(self->opt_.handshake_timeout);
            asio::error_code ec;
            co_await self->flush_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (!ec) self->close(reason);
        }, asio::detached);
        asio::error_code ec;
        Outgoing flush_marker{{}, clock::now()};
        co_await out_.async_send(asio::error_code{}, std::move(flush_marker), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) close(reason);
    }

    std::uint64_t bytes_in() const noexcept { return bytes_in_; }
    std::uint64_t bytes_out() const noexcept { return bytes_out_; }
    std::uint64_t frames_in() const noexcept { return frames_in_; }
    std::uint64_t frames_out() const noexcept { return frames_out_; }

private:
    // Closes the watched socket if connect/handshake outlive their deadline.
    // The timer's handler owns only shared state: it may run after the
    // coroutine that made it has moved on (then `done` keeps it from touching
    // the socket, which is watched only while the coroutine waits on it).
    class HandshakeGuard {
    public:
        HandshakeGuard(asio::any_io_executor ex, std::chrono::milliseconds timeout, Tcp* sock)
            : timer_(std::move(ex)), state_(std::make_shared<State>()) {
            state_->sock = sock;
            timer_.expires_after(timeout);
            timer_.async_wait([st = state_](asio::error_code ec) {
                if (ec || st->done) return;
                st->timed_out = true;
                asio::error_code ignored;
                st->sock->close(ignored);
            });
        }
        ~HandshakeGuard() { finish(); }
        void watch(Tcp* sock) { state_->sock = sock; }
        /// Stops the deadline; true if it had already passed (and closed the socket).
        bool finish() {
            state_->done = true;
            timer_.cancel();
            return state_->timed_out;
        }

    private:
        struct State {
            Tcp* sock = nullptr;
            bool done = false;
            bool timed_out = false;
        };
        asio::steady_timer timer_;
        std::shared_ptr<State> state_;
    };

    static constexpr std::uint64_t kReadChunk = 64 * 1024;  // bytes read (and allocated) at a time
    struct Outgoing {
        std::vector<std::byte> bytes;  // a whole frame; empty: close_after_flush's marker
        clock::time_point queued;      // when write_frame queued it (the shaper's clock)
    };
    using OutChannel = asio::experimental::concurrent_channel<void(asio::error_code, Outgoing)>;

    template <typename S>
    Connection(S&& s, std::string peer, LinkOptions opt)
        : executor_(s.get_executor()), stream_(std::forward<S>(s)), peer_(std::move(peer)), opt_(opt),
          out_(executor_, 64), watchdog_(executor_), flush_timer_(executor_), shape_timer_(executor_),
          shaper_(opt_.shape) {}

    static Tcp& lowest(Tcp& s) { return s; }
#if defined(TANDEM_HAS_TLS)
    static Tcp& lowest(Tls& s) { return s.next_layer(); }
#endif

    std::string reason_suffix() const {
        std::lock_guard lock(reason_mutex_);
        return reason_.empty() ? "" : " (" + reason_ + ")";
    }

    void start() {
        deadline_ = clock::time_point::max();
        asio::co_spawn(executor_, writer(shared_from_this()), asio::detached);
        asio::co_spawn(executor_, watchdog(shared_from_this()), asio::detached);
    }

    asio::awaitable<void> read_exact(std::byte* p, std::size_t n, const char* what) {
        asio::error_code ec;
        std::size_t got = 0;
        if (auto* tcp = std::get_if<Tcp>(&stream_)) {
            got = co_await asio::async_read(*tcp, asio::buffer(p, n), asio::redirect_error(asio::use_awaitable, ec));
        }
#if defined(TANDEM_HAS_TLS)
        else {
            got = co_await asio::async_read(std::get<Tls>(stream_), asio::buffer(p, n),
                                            asio::redirect_error(asio::use_awaitable, ec));
        }
#endif
        if (ec || got != n) {
            const bool mid = got > 0 || std::string(what) == "frame payload";
            close(mid ? "dropped mid-frame" : "closed by peer");
            throw PeerLostError(peer_, std::string(mid ? "connection dropped mid-frame while reading the "
                                                       : "connection lost while waiting for the ") +
                                           what + reason_suffix() + (ec ? ": " + ec.message() : ""));
        }
    }

    static asio::awaitable<void> writer(std::shared_ptr<Connection> self) {
        for (;;) {
            asio::error_code ec;
            auto item = co_await self->out_.async_receive(asio::redirect_error(asio::use_awaitable, ec));
            if (ec) co_return;
            auto& frame = item.bytes;
            if (frame.empty()) {  // close_after_flush: everything before it is written
                std::string why;
                {
                    std::lock_guard lock(self->reason_mutex_);
                    why = self->flush_reason_;
                }
                self->close(why);
                co_return;
            }
            if (self->shaper_.active()) {
                // Held until the emulated link delivers it; later frames were
                // queued meanwhile and carry their own stamps, so delays overlap.
                self->shape_timer_.expires_at(self->shaper_.arrival(frame.size(), item.queued));
                co_await self->shape_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                if (ec || self->closed_.load()) co_return;
            }
            if (auto* tcp = std::get_if<Tcp>(&self->stream_)) {
                co_await asio::async_write(*tcp, asio::buffer(frame), asio::redirect_error(asio::use_awaitable, ec));
            }
#if defined(TANDEM_HAS_TLS)
            else {
                co_await asio::async_write(std::get<Tls>(self->stream_), asio::buffer(frame),
                                           asio::redirect_error(asio::use_awaitable, ec));
            }
#endif
            if (ec) {
                self->close("write failed: " + ec.message());
                co_return;
            }
            self->bytes_out_ += frame.size();
            ++self->frames_out_;
        }
    }

    // Closes the connection when the current read deadline passes.
    static asio::awaitable<void> watchdog(std::shared_ptr<Connection> self) {
        while (!self->closed_.load()) {
            const auto d = self->deadline_.load();
            const auto now = clock::now();
            if (d != clock::time_point::max() && now >= d) {
                self->close("timed out: no complete frame within the deadline");
                co_return;
            }
            self->watchdog_.expires_after(std::chrono::milliseconds(100));
            asio::error_code ec;
            co_await self->watchdog_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
    }

    asio::any_io_executor executor_;
    Stream stream_;
    std::string peer_;
    LinkOptions opt_;
    OutChannel out_;
    asio::steady_timer watchdog_;
    asio::steady_timer flush_timer_;  // close_after_flush's deadline
    asio::steady_timer shape_timer_;  // the writer's wait for the emulated link
    LinkShaper shaper_;               // used by the writer coroutine only
    std::atomic<clock::time_point> deadline_{clock::time_point::max()};
    std::atomic<bool> closed_{false};
    mutable std::mutex reason_mutex_;
    std::string reason_;
    std::string flush_reason_;
    std::atomic<std::uint64_t> bytes_in_{0}, bytes_out_{0}, frames_in_{0}, frames_out_{0};
};

}  // namespace tandem
