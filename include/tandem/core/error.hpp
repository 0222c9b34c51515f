// Typed exceptions thrown at tandem's boundaries (files, network, placement).
//
// Every error carries the context a user needs to act on it: the file and byte
// offset for a bad model file, the peer for a bad frame, the missing amount of
// memory for an impossible placement. Library code throws; it never prints and
// never calls exit().
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace tandem {

/// Base of every exception tandem throws on purpose.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// A model or data file is malformed: wrong magic, truncated, absurd sizes.
/// `offset` is the byte offset in the file where the problem was found.
class FormatError : public Error {
public:
    FormatError(std::string file, std::uint64_t offset, const std::string& msg)
        : Error(file + ": at offset " + std::to_string(offset) + ": " + msg),
          file_(std::move(file)),
          offset_(offset) {}
    const std::string& file() const noexcept { return file_; }
    std::uint64_t offset() const noexcept { return offset_; }

private:
    std::string file_;
    std::uint64_t offset_;
};

/// Well-formed input that asks for something tandem does not implement
/// (an unknown tensor type, an architecture that is not supported).
class UnsupportedError : public Error {
public:
    using Error::Error;
};

/// Failure to open, map or write a file.
class IoError : public Error {
public:
    using Error::Error;
};

/// A lookup of something that is not there (a metadata key, a tensor name),
/// or a value of the wrong type.
class KeyError : public Error {
public:
    using Error::Error;
};

/// Invalid arguments or configuration given by the caller.
class ConfigError : public Error {
public:
    using Error::Error;
};

/// A network peer broke the protocol, sent a hostile frame, or vanished.
/// `peer` names the remote endpoint (host:port or device id).
class NetworkError : public Error {
public:
    NetworkError(std::string peer, const std::string& msg)
        : Error(peer + ": " + msg), peer_(std::move(peer)) {}
    const std::string& peer() const noexcept { return peer_; }

private:
    std::string peer_;
};

/// The peer's frame violates the wire protocol (bad length, version, type, shape).
class ProtocolError : public NetworkError {
public:
    using NetworkError::NetworkError;
};

/// The peer did not answer within its deadline, or closed the connection.
class PeerLostError : public NetworkError {
public:
    using NetworkError::NetworkError;
};

/// The peer could not be authenticated (wrong key, plaintext against TLS).
class AuthError : public NetworkError {
public:
    using NetworkError::NetworkError;
};

/// No placement satisfies the constraints; the message says what is missing.
class PlacementError : public Error {
public:
    using Error::Error;
};

/// An allocation above a device's memory budget was refused.
class MemoryLimitError : public Error {
public:
    MemoryLimitError(const std::string& msg, std::uint64_t requested, std::uint64_t available)
        : Error(msg), requested_(requested), available_(available) {}
    std::uint64_t requested() const noexcept { return requested_; }
    std::uint64_t available() const noexcept { return available_; }

private:
    std::uint64_t requested_;
    std::uint64_t available_;
};

}  // namespace tandem
