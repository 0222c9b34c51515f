// Byte-level BPE (tokenizer.ggml.model = "gpt2").
//
// GPT-2's scheme: every byte of a pre-tokenized word is first mapped to a
// printable character (bytes_to_unicode below), and the vocabulary and merges
// are written in those characters ("Ġ" is the space byte). A word starts as one
// symbol per byte; the adjacent pair with the lowest merge rank is merged
// (leftmost on ties) until no pair has a rank.
//
// As in spm.hpp, symbols carry token ids and the merges are a table
// (left id, right id) -> (rank, merged id) built once from tokenizer.ggml.merges,
// so merging never touches strings. Short words rescan their few pair ranks
// after each merge; long ones use a heap.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/tokenizer/flat_table.hpp"
#include "tandem/tokenizer/unicode.hpp"
#include "tandem/tokenizer/vocab.hpp"

namespace tandem {

/// GPT-2's byte -> code point map: printable Latin-1 bytes ('!'..'~', '¡'..'¬',
/// '®'..'ÿ') stand for themselves; the other 68 bytes take U+0100, U+0101, ...
/// in byte order (so ' ' = 0x20 -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').
constexpr std::array<char32_t, 256> gpt2_byte_to_codepoint() noexcept {
    std::array<char32_t, 256> map{};
    char32_t next = 256;
    for (unsigned b = 0; b < 256; ++b) {
        const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        map[b] = printable ? b : next++;
    }
    return map;
}

/// The inverse map: code point (< 0x144) -> byte, or -1.
constexpr std::array<std::int16_t, 0x144> gpt2_codepoint_to_byte() noexcept {
    std::array<std::int16_t, 0x144> inv{};
    inv.fill(-1);
    const auto fwd = gpt2_byte_to_codepoint();
    for (unsigned b = 0; b < 256; ++b) inv[fwd[b]] = static_cast<std::int16_t>(b);
    return inv;
}

/// Byte-level text of raw bytes: each byte as its GPT-2 character.
inline std::string gpt2_bytes_to_text(std::string_view bytes) {
    static constexpr auto map = gpt2_byte_to_codepoint();
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) utf8_append(out, map[b]);
    return out;
}

/// Raw bytes of a byte-level token text. Characters outside the map (not
/// produced by GPT-2 vocabularies) are kept as their own UTF-8.
inline std::string gpt2_text_to_bytes(std::string_view text) {
    static constexpr auto inv = gpt2_codepoint_to_byte();
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        const auto c = utf8_decode(text, i);
        if (c.valid && c.cp < inv.size() && inv[c.cp] >= 0) out.push_back(static_cast<char>(inv[c.cp]));
        else out.append(text.substr(i, c.len));
        i += c.len;
    }
    return out;
}

class BpeModel {
public:
    BpeModel() = default;

    /// `ignore_merges`: a word that is a whole token is emitted as it is, before
    /// any merging (Llama 3's tokenizer.json sets this).
    BpeModel(const Vocab& vocab, bool ignore_merges) : ignore_merges_(ignore_merges), unk_(vocab.unk()) {
        for (unsigned b = 0; b < 256; ++b) {
            const char raw = static_cast<char>(b);
            byte_token_[b] = vocab.find(gpt2_bytes_to_text(std::string_view(&raw, 1)));
        }
        // Merges whose parts or result are not tokens can never apply to
        // symbols that are tokens; they are skipped. The first rank of a
        // repeated merge wins.
        const auto& merges = vocab.merges();
        ranks_.reserve(merges.size());
        std::string joined;
        for (std::size_t r = 0; r < merges.size(); ++r) {
            const auto& [a, b] = merges[r];
            const auto left = vocab.find(a);
            const auto right = vocab.find(b);
            joined.assign(a).append(b);
            const auto result = vocab.find(joined);
            if (left == kNoToken || right == kNoToken || result == kNoToken) continue;
            ranks_.insert(PairTable<Merge>::pair_key(left, right), Merge{static_cast<std::int32_t>(r), result});
        }
        ranks_.compact();
    }

    /// Appends the tokens of one pre-tokenized word (raw bytes) to `out`.
    /// `vocab` must be the one the model was built from.
    void encode_word(const Vocab& vocab, std::string_view word, std::vector<std::int32_t>& out) const {
        if (word.empty()) return;
        if (ignore_merges_) {
            if (const auto id = vocab.find(gpt2_bytes_to_text(word)); id != kNoToken) {
                out.push_back(id);
                return;
            }
        }
        if (word.size() <= kShortWord) {
            encode_short(word, out);
        } else {
            encode_long(word, out);
        }
    }

    /// Merge rule (left, right) -> {rank, merged token}, or nullptr.
    struct Merge {
        std::int32_t rank = 0;
        std::int32_t token = kNoToken;
    };
    const Merge* find_merge(std::int32_t left, std::int32_t right) const noexcept {
        return ranks_.find(PairTable<Merge>::pair_key(left, right));
    }
    std::size_t n_merges() const noexcept { return ranks_.size(); }

private:
    static constexpr std::size_t kShortWord = 48;  // bytes; above this the heap wins
    static constexpr std::int32_t kNoRank = INT32_MAX;

    // Bytes without a token (never in GPT-2-style vocabularies) become <unk>
    // when there is one, and are dropped otherwise.
    void emit(std::int32_t id, std::vector<std::int32_t>& out) const {
        if (id != kNoToken) out.push_back(id);
        else if (unk_ != kNoToken) out.push_back(unk_);
    }

    std::int32_t rank_of(std::int32_t a, std::int32_t b, std::int32_t& token) const noexcept {
        if (a == kNoToken || b == kNoToken) return kNoRank;
        const auto* m = find_merge(a, b);
        if (!m) return kNoRank;
        token = m->token;
        return m->rank;
    }

    void encode_short(std::string_view word, std::vector<std::int32_t>& out) const {
        // ids[k]: symbol k; rank[k]/merged[k]: the pair (k, k+1).
        std::array<std::int32_t, kShortWord> ids, rank, merged;
        std::size_t n = word.size();
        for (std::size_t k = 0; k < n; ++k) ids[k] = byte_token_[static_cast<unsigned char>(word[k])];
        for (std::size_t k = 0; k + 1 < n; ++k) rank[k] = rank_of(ids[k], ids[k + 1], merged[k]);
        while (n > 1) {
            std::size_t best = 0;
            for (std::size_t k = 1; k + 1 < n; ++k)
                if (rank[k] < rank[best]) best = k;
            if (rank[best] == kNoRank) break;
            ids[best] = merged[best];
            // Drop symbol best+1 and pair best+1 (pair best is recomputed below).
            for (std::size_t k = best + 1; k + 1 < n; ++k) ids[k] = ids[k + 1];
            for (std::size_t k = best + 1; k + 2 < n; ++k) {
                rank[k] = rank[k + 1];
                merged[k] = merged[k + 1];
            }
            --n;
            if (best > 0) rank[best - 1] = rank_of(ids[best - 1], ids[best], merged[best - 1]);
            if (best + 1 < n) rank[best] = rank_of(ids[best], ids[best + 1], merged[best]);
        }
        for (std::size_t k = 0; k < n; ++k) emit(ids[k], out);
    }

    void encode_long(std::string_view word, std::vector<std::int32_t>& out) const {
        struct Symbol {
            std::int32_t id;
            std::int32_t prev, next;
            bool alive;
        };
        struct Candidate {
            std::int32_t rank, left, right, left_id, right_id, token;
        };
        // Min-heap on (rank, left) expressed as std::*_heap's "less".
        struct Lower {
            bool operator()(const Candidate& a, const Candidate& b) const noexcept {
                return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
            }
        };
        const auto n = static_cast<std::int32_t>(word.size());
        std::vector<Symbol> sym(static_cast<std::size_t>(n));
        for (std::int32_t k = 0; k < n; ++k)
            sym[static_cast<std::size_t>(k)] = {byte_token_[static_cast<unsigned char>(word[static_cast<std::size_t>(k)])],
                                                k - 1, k + 1 < n ? k + 1 : -1, true};
        std::vector<Candidate> heap;
        heap.reserve(static_cast<std::size_t>(n));
        auto consider = [&](std::int32_t l, std::int32_t r) {
            if (l < 0 || r < 0) return;
            const auto a = sym[static_cast<std::size_t>(l)].id, b = sym[static_cast<std::size_t>(r)].id;
            std::int32_t token = kNoToken;
            const auto rk = rank_of(a, b, token);
            if (rk == kNoRank) return;
            heap.push_back({rk, l, r, a, b, token});
            std::push_heap(heap.begin(), heap.end(), Lower{});
        };
        for (std::int32_t k = 1; k < n; ++k) consider(k - 1, k);
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), Lower{});
            const Candidate c = heap.back();
            heap.pop_back();
            auto& left = sym[static_cast<std::size_t>(c.left)];
            auto& right = sym[static_cast<std::size_t>(c.right)];
            // Stale: a side was merged away, or changed since the pair was queued.
            if (!left.alive || !right.alive || left.id != c.left_id || right.id != c.right_id) continue;
            left.id = c.token;
            right.alive = false;
            left.next = right.next;
            if (right.next >= 0) sym[static_cast<std::size_t>(right.next)].prev = c.left;
            consider(left.prev, c.left);
            consider(c.left, left.next);
        }
        for (std::int32_t k = 0; k != -1; k = sym[static_cast<std::size_t>(k)].next) emit(sym[static_cast<std::size_t>(k)].id, out);
    }

    bool ignore_merges_ = false;
    std::int32_t unk_ = kNoToken;
    std::array<std::int32_t, 256> byte_token_{};  // token of each byte's GPT-2 character, or kNoToken
    PairTable<Merge> ranks_;                       // (left, right) -> rank and merged token
};

}  // namespace tandem
