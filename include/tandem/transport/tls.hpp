// Trusted links: TLS 1.3 with a pre-shared cluster key (OpenSSL, through
// Asio's SSL streams).
//
// Every device of a cluster holds the same 256-bit key, made once with
// `tandem keygen`. The TLS 1.3 handshake proves on both sides that the peer
// holds it (the PSK binder and the Finished messages), and the (EC)DHE share
// gives forward secrecy, so no certificates are needed. A peer without the key
// fails the handshake, before any frame of tandem's protocol is read.
#pragma once

#if !defined(TANDEM_HAS_TLS)
#error "tandem/transport/tls.hpp needs OpenSSL: configure with TANDEM_WITH_TLS=ON"
#endif

#include <array>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>

#include <sys/stat.h>

#include <asio/ssl/context.hpp>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "tandem/core/error.hpp"

namespace tandem {

inline constexpr const char* kPskIdentity = "tandem-cluster-v1";

struct ClusterKey {
    std::array<unsigned char, 32> bytes{};

    static ClusterKey generate() {
        ClusterKey k;
        if (RAND_bytes(k.bytes.data(), static_cast<int>(k.bytes.size())) != 1)
            throw Error("cannot draw random bytes for a cluster key");
        return k;
    }

    std::string hex() const {
        static constexpr char d[] = "0123456789abcdef";
        std::string s;
        for (auto b : bytes) {
            s += d[b >> 4];
            s += d[b & 15];
        }
        return s;
    }

    static ClusterKey from_hex(const std::string& text, const std::string& where = "key") {
        std::string h;
        for (char c : text)
            if (!std::isspace(static_cast<unsigned char>(c))) h += c;
        if (h.size() != 64) throw ConfigError(where + ": a cluster key is 64 hex digits, found " + std::to_string(h.size()));
        ClusterKey k;
        for (std::size_t i = 0; i < 32; ++i) {
            auto nib = [&](char c) -> int {
                if (c >= '0' && c <= '9') return c - '0';
                if (c >= 'a' && c <= 'f') return c - 'a' + 10;
                if (c >= 'A' && c <= 'F') return c - 'A' + 10;
                throw ConfigError(where + ": '" + std::string(1, c) + "' is not a hex digit");
            };
            k.bytes[i] = static_cast<unsigned char>(nib(h[2 * i]) << 4 | nib(h[2 * i + 1]));
        }
        return k;
    }

    static ClusterKey load(const std::string& path) {
        std::ifstream in(path);
        if (!in) throw IoError(path + ": cannot read the cluster key");
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        return from_hex(text, path);
    }

    /// Writes the key as hex, readable by the owner only.
    void save(const std::string& path) const {
        {
            std::ofstream out(path, std::ios::trunc);
            if (!out) throw IoError(path + ": cannot write the cluster key");
            out << hex() << "\n";
        }
        ::chmod(path.c_str(), 0600);
    }
};

namespace detail {

// Our own ex_data slot: Asio keeps its verify callback in the app-data slot
// and deletes whatever it finds there.
inline int key_slot() {
    static const int slot = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return slot;
}

inline const ClusterKey* key_of(SSL* ssl) {
    return static_cast<const ClusterKey*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), key_slot()));
}

inline unsigned int psk_client_cb(SSL* ssl, const char* /*hint*/, char* identity, unsigned int max_identity_len,
                                  unsigned char* psk, unsigned int max_psk_len) {
    const auto* key = key_of(ssl);
    const auto id_len = std::strlen(kPskIdentity);
    if (key == nullptr || id_len + 1 > max_identity_len || key->bytes.size() > max_psk_len) return 0;
    std::memcpy(identity, kPskIdentity, id_len + 1);
    std::memcpy(psk, key->bytes.data(), key->bytes.size());
    return static_cast<unsigned int>(key->bytes.size());
}

inline unsigned int psk_server_cb(SSL* ssl, const char* identity, unsigned char* psk, unsigned int max_psk_len) {
    const auto* key = key_of(ssl);
    if (key == nullptr || identity == nullptr || std::strcmp(identity, kPskIdentity) != 0 ||
        key->bytes.size() > max_psk_len)
        return 0;
    std::memcpy(psk, key->bytes.data(), key->bytes.size());
    return static_cast<unsigned int>(key->bytes.size());
}

}  // namespace detail

/// The TLS contexts of one device: a client context for the connections it
/// opens and a server context for those it accepts, both keyed by `key`.
class TlsConfig {
public:
    explicit TlsConfig(const ClusterKey& key)
        : key_(std::make_unique<ClusterKey>(key)), client_(asio::ssl::context::tls_client),
          server_(asio::ssl::context::tls_server) {
        setup(client_, false);
        setup(server_, true);
    }

    asio::ssl::context& client() noexcept { return client_; }
    asio::ssl::context& server() noexcept { return server_; }

private:
    void setup(asio::ssl::context& ctx, bool server) {
        SSL_CTX* c = ctx.native_handle();
        SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
        SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
        // SHA-256 suites: the ones TLS 1.3 uses with these PSK callbacks.
        if (SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256") != 1)
            throw Error("OpenSSL refused tandem's TLS 1.3 cipher suites");
        if (detail::key_slot() < 0 || SSL_CTX_set_ex_data(c, detail::key_slot(), key_.get()) != 1)
            throw Error("OpenSSL could not attach the cluster key");
        SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);  // the PSK authenticates both sides
        SSL_CTX_set_options(c, SSL_OP_NO_TICKET);           // no resumption tickets: every link proves the key
        if (server)
            SSL_CTX_set_psk_server_callback(c, detail::psk_server_cb);
        else
            SSL_CTX_set_psk_client_callback(c, detail::psk_client_cb);
    }

    std::unique_ptr<ClusterKey> key_;
    asio::ssl::context client_;
    asio::ssl::context server_;
};

}  // namespace tandem
