// TcpTransport: the Transport concept over TCP (or TLS over TCP) between
// processes and machines, with tensors serialized by cereal in frames.
//
// Every link is a Connection (connection.hpp) owned by the network executor.
// Incoming Data frames become Messages in this endpoint's inbox; Ping is
// answered at once, whatever the device is computing; other control frames go
// to the owner's handler. A lost or hostile peer closes only its own link; the
// inbox then receives an Error message (request 0) naming the peer, so a
// coordinator learns of a vanished device within the idle timeout.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/concurrent_channel.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include "tandem/transport/connection.hpp"
#include "tandem/transport/protocol.hpp"
#include "tandem/transport/transport.hpp"

namespace tandem {

struct TcpTransportOptions {
    LinkOptions link{};
    TlsConfig* tls = nullptr;                    // null: plaintext (only with an explicit --insecure)
    wire::Encoding encoding = wire::Encoding::F32;  // activations on links this endpoint writes
    std::chrono::milliseconds heartbeat{1000};
    std::uint64_t model_id = 0;
    std::string name;
    std::uint64_t memory_budget = 0;  // told to peers in HelloAck
    std::uint32_t threads = 0;        // told to peers in HelloAck
    std::function<void(const std::string&)> log;  // events worth a line (refusals, losses); may be empty
    /// Non-Data frames (control), with the sender's device id. Runs on the network executor.
    /// A ProtocolError it throws refuses the frame like a malformed one: the link closes.
    std::function<asio::awaitable<void>(DeviceId, const Frame&)> on_control;
    /// Called (on the network executor) when the current link to a device is
    /// lost or refused, with why; the inbox also receives an Error message.
    std::function<void(DeviceId, const std::string&)> on_lost;
};

struct TcpLinkStats {
    std::uint64_t bytes_in = 0, bytes_out = 0, frames_in = 0, frames_out = 0;
    std::uint64_t rejected_frames = 0;
    std::uint64_t data_messages_out = 0;
    std::uint64_t activation_bytes_out = 0;  // encoded tensor bytes in Data frames sent
    std::uint64_t activation_tokens_out = 0; // positions carried by those frames
};

class TcpTransport {
public:
    TcpTransport(asio::any_io_executor net, DeviceId self, TcpTransportOptions opt)
        : net_(std::move(net)), self_(self), opt_(std::move(opt)), inbox_(net_, 4096) {}

    ~TcpTransport() { close(); }

    DeviceId self() const noexcept { return self_.load(); }
    /// A worker learns its id and the model from the coordinator's assignment.
    void set_self(DeviceId id) noexcept { self_.store(id); }
    void set_model_id(std::uint64_t id) noexcept { model_id_.store(id); }
    /// The activation encoding of the Data frames this endpoint writes (a
    /// worker learns it from its assignment).
    void set_encoding(wire::Encoding e) noexcept { encoding_.store(e); }
    wire::Encoding encoding() const noexcept { return encoding_.load(); }
    const TcpTransportOptions& options() const noexcept { return opt_; }
    asio::any_io_executor net_executor() const { return net_; }

    /// Where to dial `id` when a message must go there and no link exists yet.
    void set_address(DeviceId id, std::string host, std::uint16_t port) {
        std::lock_guard lock(mutex_);
        addresses_[id] = {std::move(host), port};
    }

    /// Adopts an established connection to device `id` (its Hello already
    /// exchanged) and starts reading it. Replaces an older link to `id`.
    void attach(DeviceId id, std::shared_ptr<Connection> c) {
        std::shared_ptr<Connection> old;
        {
            std::lock_guard lock(mutex_);
            auto& slot = links_[id];
            old = std::exchange(slot, c);
        }
        if (old && old != c) old->close("replaced by a new link");
        asio::co_spawn(net_, read_loop(id, c), asio::detached);
        asio::co_spawn(net_, heartbeat_loop(c), asio::detached);
    }

    bool connected(DeviceId id) const {
        std::lock_guard lock(mutex_);
        const auto it = links_.find(id);
        return it != links_.end() && it->second->is_open();
    }

    // ---- Transport concept ----

    asio::awaitable<void> send(DeviceId to, Message m) {
        m.from = self();
        const auto wmsg = wire::to_wire(m, encoding_.load());
        std::uint64_t tensor_bytes = 0;
        for (const auto& t : wmsg.tensors) tensor_bytes += t.bytes.size();
        auto payload = wire::encode(wmsg);
        co_await send_frame(to, wire::FrameType::Data, std::move(payload));
        std::lock_guard lock(mutex_);
        ++stats_.data_messages_out;
        stats_.activation_bytes_out += tensor_bytes;
        stats_.activation_tokens_out += m.positions.size();
    }

    asio::awaitable<Message> receive() {
        try {
            co_return co_await inbox_.async_receive(asio::use_awaitable);
        } catch (const asio::system_error& e) {
            throw PeerLostError("device " + std::to_string(self()), std::string("transport closed: ") + e.what());
        }
    }

    void close() {
        std::map<DeviceId, std::shared_ptr<Connection>> links;
        {
            std::lock_guard lock(mutex_);
            if (closed_) return;
            closed_ = true;
            links.swap(links_);
        }
        for (auto& [id, c] : links) {
            c->close("transport closed");
            std::lock_guard lock(mutex_);
            retire(*c);
        }
        inbox_.close();
    }

    // ---- control plane ----

    /// Sends a frame to `to`, dialing it first if needed. Runs the network
    /// work on the network executor; resumes on the caller's executor.
    asio::awaitable<void> send_frame(DeviceId to, wire::FrameType type, std::vector<std::byte> payload) {
        auto c = co_await link_to(to);
        co_await c->write_frame(type, std::move(payload));
    }

    template <typename T>
    asio::awaitable<void> send_control(DeviceId to, wire::FrameType type, const T& body) {
        co_await send_frame(to, type, wire::encode(body));
    }

    /// Delivers a message into this endpoint's own inbox (e.g. a local failure).
    asio::awaitable<void> inject(Message m) { co_await inbox_.async_send(asio::error_code{}, std::move(m), asio::use_awaitable); }

    TcpLinkStats stats() const {
        std::lock_guard lock(mutex_);
        TcpLinkStats s = stats_;  // includes links already closed
        for (const auto& [id, c] : links_) {
            s.bytes_in += c->bytes_in();
            s.bytes_out += c->bytes_out();
            s.frames_in += c->frames_in();
            s.frames_out += c->frames_out();
        }
        return s;
    }

    /// Round-trip time of the last Ping answered by `id`, in microseconds (0 if none yet).
    double rtt_us(DeviceId id) const {
        std::lock_guard lock(mutex_);
        const auto it = rtt_us_.find(id);
        return it == rtt_us_.end() ? 0.0 : it->second;
    }

    /// Opens a link to host:port and performs the Hello exchange as `role`.
    /// Throws AuthError, ProtocolError or PeerLostError.
    asio::awaitable<std::pair<std::shared_ptr<Connection>, wire::HelloAck>> dial(std::string host, std::uint16_t port,
                                                                                  wire::Role role) {
        auto c = co_await Connection::connect(net_, host, port, opt_.link, opt_.tls);
        wire::Hello hello;
        hello.role = static_cast<std::uint8_t>(role);
        hello.model_id = model_id_.load();
        hello.device_id = self();
        hello.name = opt_.name;
        co_await c->send(wire::FrameType::Hello, hello);
        Frame f;
        try {
            f = co_await c->read_frame();
        } catch (const PeerLostError& e) {
            if (opt_.tls != nullptr) throw;
            // A TLS listener drops a plaintext Hello without a word.
            throw PeerLostError(c->peer(), std::string("closed the link instead of answering Hello (does it need a "
                                                       "cluster key, --key?): ") + e.what());
        }
        if (f.type == wire::FrameType::Error) {
            const auto err = wire::decode<wire::ErrorMsg>(f.payload, c->peer());
            c->close();
            throw ProtocolError(c->peer(), "refused: " + err.reason);
        }
        if (f.type != wire::FrameType::HelloAck) {
            c->close();
            throw ProtocolError(c->peer(), std::string("expected HelloAck, got ") + wire::frame_type_name(f.type));
        }
        auto ack = wire::decode<wire::HelloAck>(f.payload, c->peer());
        if (!ack.accepted) {
            c->close();
            throw ProtocolError(c->peer(), "refused: " + ack.reason);
        }
        co_return std::pair{c, ack};
    }

    void log(const std::string& line) const {
        if (opt_.log) opt_.log(line);
    }

    void count_rejected() {
        std::lock_guard lock(mutex_);
        ++stats_.rejected_frames;
    }

private:
    struct Address {
        std::string host;
        std::uint16_t port = 0;
    };

    asio::awaitable<std::shared_ptr<Connection>> link_to(DeviceId to) {
        {
            std::lock_guard lock(mutex_);
            if (closed_) throw PeerLostError("device " + std::to_string(to), "transport closed");
            const auto it = links_.find(to);
            if (it != links_.end() && it->second->is_open()) co_return it->second;
        }
        // Dial on the network executor, one dial per peer at a time.
        co_return co_await asio::co_spawn(net_, dial_once(to), asio::use_awaitable);
    }

    asio::awaitable<std::shared_ptr<Connection>> dial_once(DeviceId to) {
        for (;;) {
            Address addr;
            {
                std::lock_guard lock(mutex_);
                const auto it = links_.find(to);
                if (it != links_.end() && it->second->is_open()) co_return it->second;
                const auto a = addresses_.find(to);
                if (a == addresses_.end())
                    throw PeerLostError("device " + std::to_string(to), "no link and no address to dial");
                if (!dialing_.count(to)) {
                    dialing_.insert(to);
                    addr = a->second;
                } else {
                    addr.port = 0;  // someone else is dialing: wait for them
                }
            }
            if (addr.port == 0) {
                asio::steady_timer t(net_, std::chrono::milliseconds(5));
                co_await t.async_wait(asio::use_awaitable);
                continue;
            }
            try {
                auto [c, ack] = co_await dial(addr.host, addr.port, wire::Role::Peer);
                {
                    std::lock_guard lock(mutex_);
                    dialing_.erase(to);
                }
                attach(to, c);
                co_return c;
            } catch (...) {
                std::lock_guard lock(mutex_);
                dialing_.erase(to);
                throw;
            }
        }
    }

    asio::awaitable<void> read_loop(DeviceId id, std::shared_ptr<Connection> c) {
        const std::string who = "device " + std::to_string(id) + " (" + c->peer() + ")";
        std::string why;
        bool hostile = false;
        try {
            for (;;) {
                Frame f = co_await c->read_frame();
                switch (f.type) {
                    case wire::FrameType::Data: {
                        auto m = wire::from_wire(wire::decode<wire::DataMsg>(f.payload, who), who);
                        m.from = id;  // the link says who sent it, not the payload
                        m.receive_began = f.started;
                        m.received = std::chrono::steady_clock::now();
                        co_await inbox_.async_send(asio::error_code{}, std::move(m), asio::use_awaitable);
                        break;
                    }
                    case wire::FrameType::Ping: {
                        const auto p = wire::decode<wire::Ping>(f.payload, who);
                        co_await c->send(wire::FrameType::Pong, p);
                        break;
                    }
                    case wire::FrameType::Pong: {
                        const auto p = wire::decode<wire::Ping>(f.payload, who);
                        std::lock_guard lock(mutex_);
                        rtt_us_[id] = static_cast<double>(now_us() - p.sent_us);
                        break;
                    }
                    case wire::FrameType::Bye: c->close("said bye"); co_return;
                    default:
                        if (opt_.on_control) co_await opt_.on_control(id, f);
                        break;
                }
            }
        } catch (const ProtocolError& e) {
            count_rejected();
            hostile = true;
            why = std::string("refused a hostile frame: ") + e.what();
        } catch (const std::exception& e) {
            why = e.what();
        }
        bool flushing = false;
        if (hostile && c->is_open()) {
            // The peer hears why before the link closes.
            try {
                const wire::ErrorMsg err{why};  // named: GCC 12 mishandles temporaries in co_await
                co_await c->send(wire::FrameType::Error, err);
                co_await c->close_after_flush(why);
                flushing = true;
            } catch (const std::exception&) {
            }
        }
        if (!flushing) c->close(why);
        bool current = false;
        {
            std::lock_guard lock(mutex_);
            const auto it = links_.find(id);
            current = it != links_.end() && it->second == c;
            if (current) links_.erase(it);
            retire(*c);
            if (closed_) co_return;
        }
        log(who + ": link closed: " + why);
        if (!current) co_return;
        if (opt_.on_lost) opt_.on_lost(id, who + " lost: " + why);
        Message lost;
        lost.kind = MessageKind::Error;
        lost.from = id;
        lost.request = 0;
        lost.text = who + " lost: " + why;
        asio::error_code ignored;
        co_await inbox_.async_send(asio::error_code{}, std::move(lost), asio::redirect_error(asio::use_awaitable, ignored));
    }

    asio::awaitable<void> heartbeat_loop(std::shared_ptr<Connection> c) {
        asio::steady_timer t(net_);
        std::uint64_t nonce = 0;
        while (c->is_open()) {
            t.expires_after(opt_.heartbeat);
            asio::error_code ec;
            co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (!c->is_open()) break;
            try {
                const wire::Ping ping{++nonce, now_us()};  // named: GCC 12 mishandles temporaries in co_await
                co_await c->send(wire::FrameType::Ping, ping);
            } catch (const std::exception&) {
                break;
            }
        }
    }

    // Keeps a closed link's byte counts in the totals (mutex_ held).
    void retire(const Connection& c) {
        stats_.bytes_in += c.bytes_in();
        stats_.bytes_out += c.bytes_out();
        stats_.frames_in += c.frames_in();
        stats_.frames_out += c.frames_out();
    }

    static std::uint64_t now_us() {
        return static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
    }

    using Inbox = asio::experimental::concurrent_channel<void(asio::error_code, Message)>;

    asio::any_io_executor net_;
    std::atomic<DeviceId> self_;
    TcpTransportOptions opt_;
    std::atomic<std::uint64_t> model_id_{opt_.model_id};
    std::atomic<wire::Encoding> encoding_{opt_.encoding};
    Inbox inbox_;
    mutable std::mutex mutex_;
    bool closed_ = false;
    std::map<DeviceId, std::shared_ptr<Connection>> links_;
    std::map<DeviceId, Address> addresses_;
    std::set<DeviceId> dialing_;
    std::map<DeviceId, double> rtt_us_;
    TcpLinkStats stats_;
};

static_assert(Transport<TcpTransport>);

}  // namespace tandem
