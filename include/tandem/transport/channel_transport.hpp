// In-process transport: one Asio concurrent channel per device (its inbox).
//
// Devices in one process run on their own threads; sending is a channel push
// that wakes the receiving device's coroutine on its own executor. The hub
// counts messages and bytes per (from, to) link so tests and benchmarks can see
// exactly which device talked to which.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/experimental/concurrent_channel.hpp>
#include <asio/use_awaitable.hpp>

#include "tandem/core/error.hpp"
#include "tandem/transport/transport.hpp"

namespace tandem {

struct LinkStats {
    std::uint64_t messages = 0;
    std::uint64_t bytes = 0;
};

class ChannelHub {
public:
    using Channel = asio::experimental::concurrent_channel<void(asio::error_code, Message)>;

    /// One inbox per endpoint, each on its receiver's executor; `capacity`
    /// messages may wait in an inbox before a sender waits.
    explicit ChannelHub(const std::vector<asio::any_io_executor>& executors, std::size_t capacity = 1024) {
        for (const auto& ex : executors) inboxes_.push_back(std::make_unique<Channel>(ex, capacity));
    }

    std::size_t size() const noexcept { return inboxes_.size(); }
    Channel& inbox(DeviceId id) {
        if (id >= inboxes_.size()) throw NetworkError("device " + std::to_string(id), "no such endpoint");
        return *inboxes_[id];
    }

    void count(DeviceId from, DeviceId to, std::uint64_t bytes) {
        std::lock_guard lock(mutex_);
        auto& s = stats_[{from, to}];
        ++s.messages;
        s.bytes += bytes;
    }
    std::map<std::pair<DeviceId, DeviceId>, LinkStats> stats() const {
        std::lock_guard lock(mutex_);
        return stats_;
    }
    void reset_stats() {
        std::lock_guard lock(mutex_);
        stats_.clear();
    }
    void close_all() {
        for (auto& c : inboxes_) c->close();
    }

private:
    std::vector<std::unique_ptr<Channel>> inboxes_;
    mutable std::mutex mutex_;
    std::map<std::pair<DeviceId, DeviceId>, LinkStats> stats_;
};

class ChannelTransport {
public:
    ChannelTransport(std::shared_ptr<ChannelHub> hub, DeviceId self) : hub_(std::move(hub)), self_(self) {}

    DeviceId self() const noexcept { return self_; }

    asio::awaitable<void> send(DeviceId to, Message m) {
        m.from = self_;
        const auto bytes = m.payload_bytes();
        auto& inbox = hub_->inbox(to);
        if (!inbox.is_open()) throw PeerLostError("device " + std::to_string(to), "inbox closed");
        // Counted before the hand-over: once delivered, the receiver may finish
        // the whole run before this coroutine resumes.
        hub_->count(self_, to, bytes);
        try {
            co_await inbox.async_send(asio::error_code{}, std::move(m), asio::use_awaitable);
        } catch (const asio::system_error& e) {
            throw PeerLostError("device " + std::to_string(to), std::string("inbox closed: ") + e.what());
        }
    }

    asio::awaitable<Message> receive() {
        try {
            co_return co_await hub_->inbox(self_).async_receive(asio::use_awaitable);
        } catch (const asio::system_error& e) {
            throw PeerLostError("device " + std::to_string(self_), std::string("inbox closed: ") + e.what());
        }
    }

    void close() { hub_->inbox(self_).close(); }

private:
    std::shared_ptr<ChannelHub> hub_;
    DeviceId self_;
};

static_assert(Transport<ChannelTransport>);

}  // namespace tandem
