// XXH64 (the xxHash 64-bit algorithm), streaming: content hashes for the
// worker's weight cache and the model identity checked at every handshake.
// Not a cryptographic hash: links are authenticated by TLS, not by this.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace tandem {

class Xxh64 {
public:
    explicit Xxh64(std::uint64_t seed = 0) noexcept { reset(seed); }

    void reset(std::uint64_t seed = 0) noexcept {
        v_[0] = seed + kP1 + kP2;
        v_[1] = seed + kP2;
        v_[2] = seed;
        v_[3] = seed - kP1;
        seed_ = seed;
        total_ = 0;
        buffered_ = 0;
    }

    Xxh64& update(const void* data, std::size_t n) noexcept {
        auto* p = static_cast<const unsigned char*>(data);
        total_ += n;
        if (buffered_ + n < 32) {
            std::memcpy(buf_ + buffered_, p, n);
            buffered_ += n;
            return *this;
        }
        if (buffered_ > 0) {
            const std::size_t fill = 32 - buffered_;
            std::memcpy(buf_ + buffered_, p, fill);
            stripe(buf_);
            p += fill;
            n -= fill;
            buffered_ = 0;
        }
        while (n >= 32) {
            stripe(p);
            p += 32;
            n -= 32;
        }
        std::memcpy(buf_, p, n);
        buffered_ = n;
        return *this;
    }
    Xxh64& update(std::string_view s) noexcept { return update(s.data(), s.size()); }
    Xxh64& update(std::span<const std::byte> s) noexcept { return update(s.data(), s.size()); }
    template <typename T>
        requires std::is_trivially_copyable_v<T>
    Xxh64& update_value(const T& v) noexcept {
        return update(&v, sizeof v);
    }

    std::uint64_t digest() const noexcept {
        std::uint64_t h;
        if (total_ >= 32) {
            h = rotl(v_[0], 1) + rotl(v_[1], 7) + rotl(v_[2], 12) + rotl(v_[3], 18);
            for (const auto v : v_) h = merge(h, v);
        } else {
            h = seed_ + kP5;
        }
        h += total_;
        const unsigned char* p = buf_;
        std::size_t n = buffered_;
        while (n >= 8) {
            h ^= round(0, read64(p));
            h = rotl(h, 27) * kP1 + kP4;
            p += 8;
            n -= 8;
        }
        if (n >= 4) {
            h ^= static_cast<std::uint64_t>(read32(p)) * kP1;
            h = rotl(h, 23) * kP2 + kP3;
            p += 4;
            n -= 4;
        }
        while (n > 0) {
            h ^= (*p++) * kP5;
            h = rotl(h, 11) * kP1;
            --n;
        }
        h ^= h >> 33;
        h *= kP2;
        h ^= h >> 29;
        h *= kP3;
        h ^= h >> 32;
        return h;
    }

private:
    static constexpr std::uint64_t kP1 = 11400714785074694791ull;
    static constexpr std::uint64_t kP2 = 14029467366897019727ull;
    static constexpr std::uint64_t kP3 = 1609587929392839161ull;
    static constexpr std::uint64_t kP4 = 9650029242287828579ull;
    static constexpr std::uint64_t kP5 = 2870177450012600261ull;

    static std::uint64_t rotl(std::uint64_t x, int r) noexcept { return (x << r) | (x >> (64 - r)); }
    static std::uint64_t read64(const unsigned char* p) noexcept {
        std::uint64_t v;
        std::memcpy(&v, p, 8);  // little-endian hosts only (see gguf/types.hpp)
        return v;
    }
    static std::uint32_t read32(const unsigned char* p) noexcept {
        std::uint32_t v;
        std::memcpy(&v, p, 4);
        return v;
    }
    static std::uint64_t round(std::uint64_t acc, std::uint64_t input) noexcept {
        acc += input * kP2;
        acc = rotl(acc, 31);
        return acc * kP1;
    }
    static std::uint64_t merge(std::uint64_t h, std::uint64_t v) noexcept {
        h ^= round(0, v);
        return h * kP1 + kP4;
    }
    void stripe(const unsigned char* p) noexcept {
        for (int i = 0; i < 4; ++i) v_[i] = round(v_[i], read64(p + 8 * i));
    }

    std::uint64_t v_[4];
    std::uint64_t seed_ = 0;
    std::uint64_t total_ = 0;
    unsigned char buf_[32];
    std::size_t buffered_ = 0;
};

inline std::uint64_t xxh64(const void* data, std::size_t n, std::uint64_t seed) noexcept {
    return Xxh64(seed).update(data, n).digest();
}
inline std::uint64_t xxh64(std::string_view s, std::uint64_t seed = 0) noexcept { return xxh64(s.data(), s.size(), seed); }

/// 16 lowercase hex digits.
inline std::string hex64(std::uint64_t h) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s(16, '0');
    for (int i = 15; i >= 0; --i, h >>= 4) s[static_cast<std::size_t>(i)] = digits[h & 15];
    return s;
}

}  // namespace tandem
