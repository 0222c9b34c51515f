// Open-addressing hash tables for the tokenizers' hot loops.
//
// Both tables are built once when a tokenizer is loaded and only read after, so
// they are plain arrays probed linearly: no node allocation, no rehash while
// encoding, and a lookup touches one or two cache lines.
//   TokenIndex : token text -> token id (the texts live in the Vocab)
//   PairTable  : 64-bit key -> small value (pairs of symbol ids, packed chars)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tandem {

namespace detail {

// FNV-1a over the bytes, then a final mix so that short keys spread over the
// high bits too (the table index takes the low bits).
inline std::uint64_t hash_bytes(std::string_view s) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    h ^= h >> 32;
    return h * 0x9e3779b97f4a7c15ull;
}

// Murmur3's 64-bit finaliser.
constexpr std::uint64_t hash_u64(std::uint64_t k) noexcept {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

// Smallest power of two >= 2 * n (load factor <= 1/2), at least 16.
inline std::size_t table_capacity(std::size_t n) noexcept {
    std::size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    return cap;
}

}  // namespace detail

/// Token text -> id. Holds ids only; texts are read from the vector given to
/// find(), which must be the one the index was built from.
class TokenIndex {
public:
    TokenIndex() = default;

    /// Indexes `texts`. Returns false (and indexes nothing more) at the first
    /// duplicate, whose id is then in `duplicate_id`.
    bool build(const std::vector<std::string>& texts, std::int32_t& duplicate_id) {
        slots_.assign(detail::table_capacity(texts.size()), -1);
        mask_ = slots_.size() - 1;
        for (std::size_t id = 0; id < texts.size(); ++id) {
            std::size_t i = detail::hash_bytes(texts[id]) & mask_;
            while (slots_[i] >= 0) {
                if (texts[static_cast<std::size_t>(slots_[i])] == texts[id]) {
                    duplicate_id = static_cast<std::int32_t>(id);
                    return false;
                }
                i = (i + 1) & mask_;
            }
            slots_[i] = static_cast<std::int32_t>(id);
        }
        return true;
    }

    /// Id of the token whose text is `s`, or -1.
    std::int32_t find(const std::vector<std::string>& texts, std::string_view s) const noexcept {
        if (slots_.empty()) return -1;
        std::size_t i = detail::hash_bytes(s) & mask_;
        while (slots_[i] >= 0) {
            if (texts[static_cast<std::size_t>(slots_[i])] == s) return slots_[i];
            i = (i + 1) & mask_;
        }
        return -1;
    }

private:
    std::vector<std::int32_t> slots_;  // (capacity,) token id or -1 for empty
    std::size_t mask_ = 0;
};

/// 64-bit key -> V, insert-once (the first value stored for a key is kept).
/// Key and value share one slot so a probe touches one cache line.
/// The key ~0 is reserved to mark empty slots.
template <typename V>
class PairTable {
public:
    static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};

    static constexpr std::uint64_t pair_key(std::int32_t a, std::int32_t b) noexcept {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
    }

    /// Empties the table and sizes it for `n` keys.
    void reserve(std::size_t n) {
        slots_.assign(detail::table_capacity(n), Slot{});
        mask_ = slots_.size() - 1;
        size_ = 0;
    }

    /// Inserts unless the key is present; returns whether it inserted.
    bool insert(std::uint64_t key, const V& value) {
        if (slots_.empty() || 2 * (size_ + 1) > slots_.size()) rehash(2 * (size_ + 1));
        std::size_t i = detail::hash_u64(key) & mask_;
        while (slots_[i].key != kEmpty) {
            if (slots_[i].key == key) return false;
            i = (i + 1) & mask_;
        }
        slots_[i] = {key, value};
        ++size_;
        return true;
    }

    /// Pointer to the value stored for `key`, or nullptr.
    const V* find(std::uint64_t key) const noexcept {
        if (slots_.empty()) return nullptr;
        std::size_t i = detail::hash_u64(key) & mask_;
        while (slots_[i].key != kEmpty) {
            if (slots_[i].key == key) return &slots_[i].value;
            i = (i + 1) & mask_;
        }
        return nullptr;
    }

    /// Shrinks the capacity to the smallest that holds the current keys.
    void compact() { rehash(size_); }

    std::size_t size() const noexcept { return size_; }
    std::size_t capacity() const noexcept { return slots_.size(); }

private:
    struct Slot {
        std::uint64_t key = kEmpty;
        V value{};
    };

    void rehash(std::size_t n) {
        std::vector<Slot> old = std::move(slots_);
        reserve(n);
        for (const auto& s : old)
            if (s.key != kEmpty) insert(s.key, s.value);
    }

    std::vector<Slot> slots_;  // (capacity,)
    std::size_t mask_ = 0;
    std::size_t size_ = 0;
};

}  // namespace tandem
