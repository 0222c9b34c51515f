// Pre-tokenizers: split text into the words that byte-level BPE merges within.
//
// Each implementation is a hand-written scanner equivalent to one regular
// expression of the Hugging Face tokenizers (first matching alternative at each
// position, greedy quantifiers, backtracking where the regex would):
//
//   Gpt2PreTokenizer   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Llama3PreTokenizer (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//                      ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   Qwen2PreTokenizer  the Llama-3 expression with \p{N} instead of \p{N}{1,3}
//
// Every one of these expressions matches at every position, so the words cover
// the text exactly: concatenating them gives the input back. Bytes that are not
// valid UTF-8 count as one "other" character each (neither letter, number nor
// space), so any byte string splits without loss.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/tokenizer/unicode.hpp"

namespace tandem {

/// A PreTokenizer cuts text into words for BPE.
/// Requirements, for `const P p`, `std::string_view text`, `std::vector<std::string_view> out`:
///  1. `p.split(text, out)` appends to `out` non-empty views into `text`, in order,
///     whose concatenation is `text` (nothing dropped, nothing reordered).
///  2. `split` is const and keeps no state between calls (safe from many threads).
///  3. `P::kName` names the rule set (a `tokenizer.ggml.pre` value that selects it).
template <typename P>
concept PreTokenizer = requires(const P& p, std::string_view text, std::vector<std::string_view>& out) {
    { p.split(text, out) } -> std::same_as<void>;
    { P::kName } -> std::convertible_to<std::string_view>;
};

namespace detail {

// The classes the three rule sets distinguish.
enum class Cls : std::uint8_t { Letter, Number, Space, Other };

struct ScanChar {
    char32_t cp;
    std::uint32_t len;
    Cls cls;
};

constexpr Cls class_of_flags(std::uint8_t f) noexcept {
    return (f & kCharLetter) ? Cls::Letter : (f & kCharNumber) ? Cls::Number
         : (f & kCharWhitespace) ? Cls::Space : Cls::Other;
}

inline constexpr auto kAsciiClass = [] {
    std::array<Cls, 128> a{};
    for (unsigned c = 0; c < 128; ++c) a[c] = class_of_flags(kLatin1Flags[c]);
    return a;
}();

inline ScanChar scan_slow(std::string_view s, std::size_t i) noexcept {
    const auto u = utf8_decode(s, i);
    if (!u.valid) return {u.cp, 1, Cls::Other};
    return {u.cp, u.len, class_of_flags(char_flags(u.cp))};
}

inline ScanChar scan_at(std::string_view s, std::size_t i) noexcept {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) return {b, 1, kAsciiClass[b]};
    return scan_slow(s, i);
}

// End of the run of characters of class `cls` starting at `i`, taking at most
// `max_chars` of them. ASCII stays in a tight loop.
inline std::size_t run_end(std::string_view s, std::size_t i, Cls cls, std::size_t max_chars = SIZE_MAX) noexcept {
    std::size_t taken = 0;
    while (i < s.size() && taken < max_chars) {
        const auto b = static_cast<unsigned char>(s[i]);
        if (b < 0x80) {
            if (kAsciiClass[b] != cls) break;
            ++i;
        } else {
            const auto c = scan_slow(s, i);
            if (c.cls != cls) break;
            i += c.len;
        }
        ++taken;
    }
    return i;
}

// Length of an English contraction at `i` ('s 't 're 've 'm 'll 'd), 0 if none.
inline std::size_t contraction_len(std::string_view s, std::size_t i, bool any_case) noexcept {
    if (s[i] != '\'' || i + 1 >= s.size()) return 0;
    auto lower = [&](std::size_t k) -> char {
        const char c = s[k];
        return (any_case && c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    };
    const char a = lower(i + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= s.size()) return 0;
    const char b = lower(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// \s+(?!\S) then \s+ at a whitespace run [i, end): the whole run when it ends
// the text; all but its last character when it is longer than one character and
// followed by a non-space (that character then starts the next word, e.g. as the
// space of " word"); else the run itself.
inline std::size_t whitespace_word_end(std::string_view s, std::size_t i) noexcept {
    std::size_t end = i, last = i, count = 0;
    while (end < s.size()) {
        const auto c = scan_at(s, end);
        if (c.cls != Cls::Space) break;
        last = end;
        end += c.len;
        ++count;
    }
    if (end == s.size() || count < 2) return end;
    return last;
}

// The Llama-3 / Qwen2 rule set; `max_digits` is 3 for Llama-3, 1 for Qwen2.
inline void split_llama3_like(std::string_view s, std::vector<std::string_view>& out, std::size_t max_digits) {
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
        const std::size_t start = i;
        std::size_t end = 0;
        const auto c = scan_at(s, i);
        const bool newline = c.cp == '\r' || c.cp == '\n';
        if (const auto k = contraction_len(s, i, true)) {
            end = i + k;  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        } else if (c.cls == Cls::Letter) {
            end = run_end(s, i, Cls::Letter);  // \p{L}+
        } else if (c.cls != Cls::Number && !newline && i + c.len < n &&
                   scan_at(s, i + c.len).cls == Cls::Letter) {
            end = run_end(s, i + c.len, Cls::Letter);  // [^\r\n\p{L}\p{N}]\p{L}+
        } else if (c.cls == Cls::Number) {
            end = run_end(s, i, Cls::Number, max_digits);  // \p{N}{1,max}
        } else if (c.cls == Cls::Other ||
                   (c.cp == ' ' && i + 1 < n && scan_at(s, i + 1).cls == Cls::Other)) {
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            end = run_end(s, c.cls == Cls::Other ? i : i + 1, Cls::Other);
            while (end < n && (s[end] == '\r' || s[end] == '\n')) ++end;
        } else {
            // c is whitespace. `\s*[\r\n]+`: up to the last \r or \n of the run.
            std::size_t run = i, last_nl = n;
            while (run < n) {
                const auto w = scan_at(s, run);
                if (w.cls != Cls::Space) break;
                if (w.cp == '\r' || w.cp == '\n') last_nl = run;
                run += w.len;
            }
            end = last_nl != n ? last_nl + 1 : whitespace_word_end(s, i);
        }
        if (end <= start) end = start + c.len;  // never reached; guarantees progress
        out.push_back(s.substr(start, end - start));
        i = end;
    }
}

}  // namespace detail

/// GPT-2's rule set (also "default" and every vocabulary that names it).
struct Gpt2PreTokenizer {
    static constexpr std::string_view kName = "gpt-2";

    void split(std::string_view s, std::vector<std::string_view>& out) const {
        using detail::Cls;
        std::size_t i = 0;
        const std::size_t n = s.size();
        while (i < n) {
            const std::size_t start = i;
            std::size_t end;
            const auto c = detail::scan_at(s, i);
            if (const auto k = detail::contraction_len(s, i, false)) {
                end = i + k;  // 's|'t|'re|'ve|'m|'ll|'d (lower case only)
            } else if (c.cls != Cls::Space) {
                end = detail::run_end(s, i, c.cls);  // \p{L}+ | \p{N}+ | [^\s\p{L}\p{N}]+
            } else if (c.cp == ' ' && i + 1 < n && detail::scan_at(s, i + 1).cls != Cls::Space) {
                end = detail::run_end(s, i + 1, detail::scan_at(s, i + 1).cls);  // the optional leading space
            } else {
                end = detail::whitespace_word_end(s, i);
            }
            if (end <= start) end = start + c.len;  // never reached; guarantees progress
            out.push_back(s.substr(start, end - start));
            i = end;
        }
    }
};
static_assert(PreTokenizer<Gpt2PreTokenizer>);

/// Llama 3's rule set ("llama3", "llama-v3", "llama-bpe", ...): case-insensitive
/// contractions, one leading non-letter glued to a word, numbers in groups of
/// up to three digits, newlines kept with the whitespace or punctuation before them.
struct Llama3PreTokenizer {
    static constexpr std::string_view kName = "llama3";
    void split(std::string_view s, std::vector<std::string_view>& out) const { detail::split_llama3_like(s, out, 3); }
};
static_assert(PreTokenizer<Llama3PreTokenizer>);

/// Qwen2's rule set ("qwen2", ...): Llama 3's, but every digit is its own word.
struct Qwen2PreTokenizer {
    static constexpr std::string_view kName = "qwen2";
    void split(std::string_view s, std::vector<std::string_view>& out) const { detail::split_llama3_like(s, out, 1); }
};
static_assert(PreTokenizer<Qwen2PreTokenizer>);

/// One of the pre-tokenizers, chosen at load time from `tokenizer.ggml.pre`.
using AnyPreTokenizer = std::variant<Gpt2PreTokenizer, Llama3PreTokenizer, Qwen2PreTokenizer>;

/// Whether the rule set wants whole-word vocabulary hits to skip merging
/// (llama.cpp's ignore_merges, set for the Llama-3 family).
inline bool pre_ignores_merges(std::string_view pre) noexcept {
    return pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" || pre == "pixtral";
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` value. An empty name or
/// "default" selects GPT-2's rules (llama.cpp falls back to a different legacy
/// cascade for those). Unknown names throw UnsupportedError naming them.
inline AnyPreTokenizer make_pretokenizer(std::string_view pre) {
    static constexpr std::string_view gpt2[] = {"", "default", "gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais",
                                                "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "gigachat",
                                                "mellum", "a.x-4.0", "modern-bert", "exaone4", "trillion"};
    static constexpr std::string_view llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral",
                                                  "dbrx", "smaug-bpe", "chatglm-bpe", "glm4"};
    static constexpr std::string_view qwen2[] = {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan", "grok-2"};
    for (auto name : gpt2)
        if (pre == name) return Gpt2PreTokenizer{};
    for (auto name : llama3)
        if (pre == name) return Llama3PreTokenizer{};
    for (auto name : qwen2)
        if (pre == name) return Qwen2PreTokenizer{};
    throw UnsupportedError("BPE pre-tokenizer '" + std::string(pre) +
                           "' is not supported (supported: gpt-2 rules, llama3 rules, qwen2 rules)");
}

/// Splits with whichever rule set `pre` holds.
inline void pretokenize(const AnyPreTokenizer& pre, std::string_view text, std::vector<std::string_view>& out) {
    std::visit([&](const auto& p) { p.split(text, out); }, pre);
}

}  // namespace tandem
