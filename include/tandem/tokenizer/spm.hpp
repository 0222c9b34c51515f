// SentencePiece-style tokenizer (tokenizer.ggml.model = "llama").
//
// The algorithm is llama.cpp's SPM tokenizer, which the test vectors come from:
//   1. the text (already given its dummy-prefix space and with ' ' -> U+2581)
//      is cut into UTF-8 characters, counting lengths from each lead byte;
//   2. while some adjacent pair of symbols concatenates to a token, merge the
//      pair whose token has the highest score (leftmost on ties);
//   3. each final symbol is its token, or - a character with no token - its
//      bytes as <0xXX> byte-fallback tokens.
//
// What makes it fast: every symbol carries an integer id (a token id, or a
// "pseudo id" >= n_vocab for a character that is no token but occurs inside
// one), and the table (left id, right id) -> merged token is built once at
// load, by splitting every token at each character boundary. The merge loop
// then never builds or hashes a string; a binary heap orders the candidates.
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

/// The dummy-prefix/space escape SentencePiece applies before merging:
/// optionally a leading space, then every ' ' becomes U+2581 ("▁").
inline std::string spm_escape(std::string_view text, bool add_prefix) {
    std::string out;
    out.reserve(text.size() + text.size() / 4 + 3);
    if (add_prefix) out += "\xE2\x96\x81";
    for (char c : text) {
        if (c == ' ') out += "\xE2\x96\x81";
        else out.push_back(c);
    }
    return out;
}

class SpmModel {
public:
    /// Tokens longer than this take no part in merges. Real SentencePiece
    /// pieces are far shorter (16 characters by default); the cap keeps the
    /// load time of a hostile vocabulary linear in its size, since each token
    /// costs O(length^2) to split.
    static constexpr std::size_t kMaxMergeBytes = 256;

    SpmModel() = default;

    explicit SpmModel(const Vocab& vocab) : n_vocab_(vocab.n_tokens()), unk_(vocab.unk()) {
        const auto& texts = vocab.tokens();
        ascii_sym_.fill(kNoToken);
        // Single-character tokens are symbols as they are.
        for (std::int32_t id = 0; id < n_vocab_; ++id) {
            const auto& t = texts[static_cast<std::size_t>(id)];
            if (!t.empty() && char_length(t, 0) == t.size()) chars_.insert(char_key(t), id);
        }
        // Every token of two or more characters is a candidate merge at each
        // character boundary whose two sides are symbols: tokens, or single
        // characters (which get pseudo ids when they are not tokens).
        std::int32_t next_pseudo = n_vocab_;
        auto symbol_of = [&](std::string_view part) -> std::int32_t {
            if (const auto id = vocab.find(part); id != kNoToken) return id;
            if (char_length(part, 0) != part.size()) return kNoToken;  // several characters, not a token
            const auto key = char_key(part);
            if (const auto* s = chars_.find(key)) return *s;
            chars_.insert(key, next_pseudo);
            return next_pseudo++;
        };
        pairs_.reserve(texts.size() * 4);
        for (std::int32_t id = 0; id < n_vocab_; ++id) {
            const std::string_view t = texts[static_cast<std::size_t>(id)];
            if (t.size() > kMaxMergeBytes) continue;
            for (std::size_t cut = char_length(t, 0); cut < t.size(); cut += char_length(t, cut)) {
                const auto left = symbol_of(t.substr(0, cut));
                const auto right = symbol_of(t.substr(cut));
                if (left != kNoToken && right != kNoToken) {
                    pairs_.insert(PairTable<Merge>::pair_key(left, right), Merge{id, vocab.score(id)});
                    const auto hi = static_cast<std::size_t>(std::max(left, right));
                    if (mergeable_.size() <= hi) mergeable_.resize(hi + 1, 0);
                    mergeable_[static_cast<std::size_t>(left)] = 1;
                    mergeable_[static_cast<std::size_t>(right)] = 1;
                }
            }
        }
        pairs_.compact();
        chars_.compact();
        for (unsigned c = 0; c < 128; ++c) {
            const char ch = static_cast<char>(c);
            if (const auto* s = chars_.find(char_key(std::string_view(&ch, 1)))) ascii_sym_[c] = *s;
        }
        // Byte fallback: <0xXX>, else the byte itself as a token, else <unk>.
        static constexpr char hex[] = "0123456789ABCDEF";
        for (unsigned b = 0; b < 256; ++b) {
            const char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            const char raw = static_cast<char>(b);
            auto id = vocab.find(std::string_view(name, 6));
            if (id == kNoToken) id = vocab.find(std::string_view(&raw, 1));
            byte_token_[b] = id != kNoToken ? id : unk_;
        }
    }

    /// Appends the tokens of `escaped` (see spm_escape) to `out`.
    ///
    /// A symbol that occurs in no merge rule (for Llama's vocabulary: a newline,
    /// or a character without a token) can never merge, so the symbols on its two
    /// sides never meet: the text is merged run by run between such barriers,
    /// which keeps the heap small on long inputs and changes no result.
    void encode(std::string_view escaped, std::vector<std::int32_t>& out) const {
        std::vector<Symbol> sym;
        std::vector<Candidate> heap;
        std::size_t i = 0;
        while (i < escaped.size()) {
            sym.clear();
            while (i < escaped.size()) {
                const auto len = char_length(escaped, i);
                const auto id = symbol_id(escaped.substr(i, len));
                if (!mergeable(id)) {
                    if (!sym.empty()) break;  // merge the run first; the barrier comes next
                    emit(escaped, {id, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(len), -1, -1}, out);
                    i += len;
                    continue;
                }
                const auto idx = static_cast<std::int32_t>(sym.size());
                sym.push_back({id, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(len), idx - 1, idx + 1});
                i += len;
            }
            if (sym.empty()) continue;
            sym.back().next = -1;
            merge_run(sym, heap);
            for (std::int32_t k = 0; k != -1; k = sym[static_cast<std::size_t>(k)].next)
                emit(escaped, sym[static_cast<std::size_t>(k)], out);
        }
    }

    /// Number of (left, right) -> token merge rules derived from the vocabulary.
    std::size_t n_merge_rules() const noexcept { return pairs_.size(); }

private:
    struct Merge {
        std::int32_t token = kNoToken;
        float score = 0.0f;
    };
    struct Symbol {
        std::int32_t id;     // token id, pseudo id (>= n_vocab) or kNoToken
        std::uint32_t start; // byte offset in the escaped text
        std::uint32_t n;     // bytes; 0 once merged into its left neighbour
        std::int32_t prev, next;
    };
    struct Candidate {
        float score;
        std::int32_t left, right;
        std::uint32_t size;  // bytes of left + right when queued
        std::int32_t token;
    };
    // Max-heap order: higher score first, then the leftmost pair.
    struct Lower {
        bool operator()(const Candidate& a, const Candidate& b) const noexcept {
            return a.score < b.score || (a.score == b.score && a.left > b.left);
        }
    };

    bool mergeable(std::int32_t id) const noexcept {
        return id >= 0 && static_cast<std::size_t>(id) < mergeable_.size() && mergeable_[static_cast<std::size_t>(id)];
    }

    // Merges the linked run `sym` (prev/next are indices into it) in place.
    void merge_run(std::vector<Symbol>& sym, std::vector<Candidate>& heap) const {
        heap.clear();
        auto consider = [&](std::int32_t l, std::int32_t r) {
            if (l < 0 || r < 0) return;
            const auto& a = sym[static_cast<std::size_t>(l)];
            const auto& b = sym[static_cast<std::size_t>(r)];
            if (const auto* m = pairs_.find(PairTable<Merge>::pair_key(a.id, b.id))) {
                heap.push_back({m->score, l, r, a.n + b.n, m->token});
                std::push_heap(heap.begin(), heap.end(), Lower{});
            }
        };
        for (std::int32_t i = 1; i < static_cast<std::int32_t>(sym.size()); ++i) consider(i - 1, i);
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), Lower{});
            const Candidate c = heap.back();
            heap.pop_back();
            auto& left = sym[static_cast<std::size_t>(c.left)];
            auto& right = sym[static_cast<std::size_t>(c.right)];
            // Stale: one side was merged away or grew since the pair was queued.
            if (left.n == 0 || right.n == 0 || left.n + right.n != c.size) continue;
            left.n += right.n;
            left.id = c.token;
            right.n = 0;
            left.next = right.next;
            if (right.next >= 0) sym[static_cast<std::size_t>(right.next)].prev = c.left;
            consider(left.prev, c.left);
            consider(c.left, left.next);
        }
    }

    // A final symbol: its token, or its bytes as byte-fallback tokens.
    void emit(std::string_view text, const Symbol& s, std::vector<std::int32_t>& out) const {
        if (s.id >= 0 && s.id < n_vocab_) {
            out.push_back(s.id);
            return;
        }
        for (std::uint32_t k = 0; k < s.n; ++k) {
            const auto t = byte_token_[static_cast<unsigned char>(text[s.start + k])];
            if (t != kNoToken) out.push_back(t);
        }
    }

    static std::size_t char_length(std::string_view s, std::size_t i) noexcept {
        return std::min(utf8_lead_length(static_cast<unsigned char>(s[i])), s.size() - i);
    }
    // A character (1-4 bytes) packed with its length into one key.
    static std::uint64_t char_key(std::string_view c) noexcept {
        std::uint64_t k = c.size();
        for (unsigned char b : c) k = (k << 8) | b;
        return k;
    }
    std::int32_t symbol_id(std::string_view c) const noexcept {
        if (c.size() == 1 && static_cast<unsigned char>(c[0]) < 128) return ascii_sym_[static_cast<unsigned char>(c[0])];
        const auto* s = chars_.find(char_key(c));
        return s ? *s : kNoToken;
    }

    std::int32_t n_vocab_ = 0;
    std::int32_t unk_ = kNoToken;
    PairTable<Merge> pairs_;           // (left symbol, right symbol) -> merged token and its score
    PairTable<std::int32_t> chars_;    // packed character -> symbol id
    std::vector<std::uint8_t> mergeable_;  // (n_symbols,) 1 if the symbol occurs in some merge rule
    std::array<std::int32_t, 128> ascii_sym_{};
    std::array<std::int32_t, 256> byte_token_{};
};

}  // namespace tandem
