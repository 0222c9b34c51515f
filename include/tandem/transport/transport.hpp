// The Transport concept: moves messages between devices.
//
// A transport is one device's endpoint on the network of devices (an
// in-process channel hub, TCP connections, ...). Any endpoint can send to any
// other by id, so a tensor goes straight from the device that makes it to the
// device that needs it.
//
// Requirements, for a Transport `t` (const view `ct`), a DeviceId `to` and a
// Message `m`:
//
//  1. ct.self() -> DeviceId: this endpoint's id.
//  2. t.send(to, m) -> asio::awaitable<void>: completes when the message is
//     handed to the link (not necessarily delivered). Throws NetworkError (or a
//     subclass) if `to` is unreachable.
//  3. t.receive() -> asio::awaitable<Message>: the next message for this
//     endpoint, from any sender, in the order each sender sent them. Throws
//     PeerLostError once the transport is closed.
//  4. t.close(): wakes pending receives with PeerLostError and refuses new sends.
#pragma once

#include <concepts>

#include <asio/awaitable.hpp>

#include "tandem/transport/message.hpp"

namespace tandem {

template <typename T>
concept Transport = requires(T& t, const T& ct, DeviceId to, Message m) {
    { ct.self() } -> std::same_as<DeviceId>;                            // 1
    { t.send(to, std::move(m)) } -> std::same_as<asio::awaitable<void>>;  // 2
    { t.receive() } -> std::same_as<asio::awaitable<Message>>;           // 3
    { t.close() } -> std::same_as<void>;                                 // 4
};

}  // namespace tandem
