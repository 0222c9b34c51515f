// UTF-8 decoding and Unicode character classes for the tokenizers.
//
// The pre-tokenizers ask three questions of every code point: is it a letter
// (\p{L}), a number (\p{N}), whitespace (\s = the White_Space property)? The
// answers come from the generated tables in unicode_tables.hpp (see the Unicode
// version there). Latin-1 is answered from a 256-entry table built at compile
// time; other code points take a binary search inside their 256-code-point block.
//
// Invalid UTF-8 is never an error here: a byte that does not start a valid
// sequence decodes as a one-byte "code point" of category Cn, so scanners make
// progress and keep every byte (byte-level BPE stays lossless on any input).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tandem/tokenizer/unicode_tables.hpp"

namespace tandem {

/// Length of the UTF-8 sequence announced by lead byte `b`, counted from its high
/// nibble as SentencePiece and llama.cpp do: 0x00-0xBF -> 1 (continuation bytes
/// included), 0xC0-0xDF -> 2, 0xE0-0xEF -> 3, 0xF0-0xFF -> 4.
constexpr std::size_t utf8_lead_length(unsigned char b) noexcept {
    constexpr std::uint8_t table[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return table[b >> 4];
}

/// One decoded code point. `valid` is false for a byte that does not begin a
/// well-formed sequence; then `len` is 1 and `cp` is the byte's value.
struct Utf8Char {
    char32_t cp = 0;
    std::uint32_t len = 1;
    bool valid = true;
};

/// Strict decoder (RFC 3629: no overlong forms, no surrogates, nothing above
/// U+10FFFF) at byte `i` of `s`; `i < s.size()`.
constexpr Utf8Char utf8_decode(std::string_view s, std::size_t i) noexcept {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) return {b0, 1, true};
    const Utf8Char bad{b0, 1, false};
    std::uint32_t len;
    char32_t cp;
    char32_t min;
    if ((b0 & 0xE0) == 0xC0) {
        len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
        len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
        len = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
        return bad;
    }
    if (s.size() - i < len) return bad;
    for (std::uint32_t k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xC0) != 0x80) return bad;
        cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return bad;
    return {cp, len, true};
}

/// Appends the UTF-8 encoding of `cp` (which must be a scalar value) to `out`.
inline void utf8_append(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

/// True when all of `s` is well-formed UTF-8.
constexpr bool utf8_is_valid(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size();) {
        const auto c = utf8_decode(s, i);
        if (!c.valid) return false;
        i += c.len;
    }
    return true;
}

/// Number of bytes (0..3) at the end of `s` that form the beginning of a UTF-8
/// sequence still waiting for its continuation bytes. A streaming decoder holds
/// exactly these back; anything else (complete or hopelessly invalid) can go out.
constexpr std::size_t utf8_incomplete_tail(std::string_view s) noexcept {
    const std::size_t n = s.size();
    for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
        const auto b = static_cast<unsigned char>(s[n - back]);
        if ((b & 0xC0) == 0x80) continue;  // a continuation byte: look further back
        std::size_t need;
        if ((b & 0xE0) == 0xC0) need = 2;
        else if ((b & 0xF0) == 0xE0) need = 3;
        else if ((b & 0xF8) == 0xF0) need = 4;
        else return 0;  // ASCII or an invalid lead: nothing to wait for
        if (back >= need) return 0;
        // Reject prefixes that can never complete (overlong or out-of-range leads,
        // surrogate or >U+10FFFF second bytes) so they are not held forever.
        if (b == 0xC0 || b == 0xC1 || b > 0xF4) return 0;
        if (back >= 2) {
            const auto b1 = static_cast<unsigned char>(s[n - back + 1]);
            if ((b == 0xE0 && b1 < 0xA0) || (b == 0xED && b1 > 0x9F) || (b == 0xF0 && b1 < 0x90) ||
                (b == 0xF4 && b1 > 0x8F))
                return 0;
        }
        return back;
    }
    return 0;
}

// ---- character classes ---------------------------------------------------------

namespace detail {

inline constexpr std::size_t kNumCategoryRanges = std::size(unicode_data::kCategoryRanges);

constexpr char32_t category_range_start(std::size_t i) noexcept { return unicode_data::kCategoryRanges[i] >> 5; }

// Index of the range holding `cp`: the last range whose start is <= cp, searched in [lo, hi).
constexpr std::size_t category_range_index(char32_t cp, std::size_t lo, std::size_t hi) noexcept {
    while (hi - lo > 1) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (category_range_start(mid) <= cp) lo = mid;
        else hi = mid;
    }
    return lo;
}

// kBlockFirst[b]: index of the range that holds code point b * 256, for the
// 0x1100 blocks of the code space plus a sentinel; the ranges that intersect
// block b are kBlockFirst[b] ..= kBlockFirst[b + 1].
inline constexpr auto kBlockFirst = [] {
    std::array<std::uint16_t, 0x1101> first{};
    for (std::size_t b = 0; b < 0x1100; ++b)
        first[b] = static_cast<std::uint16_t>(category_range_index(static_cast<char32_t>(b << 8), 0, kNumCategoryRanges));
    first[0x1100] = static_cast<std::uint16_t>(kNumCategoryRanges - 1);
    return first;
}();

constexpr GeneralCategory category_slow(char32_t cp) noexcept {
    if (cp > 0x10FFFF) return GeneralCategory::Cn;
    const std::size_t b = cp >> 8;
    const std::size_t i = category_range_index(cp, kBlockFirst[b], std::size_t{kBlockFirst[b + 1]} + 1);
    return static_cast<GeneralCategory>(unicode_data::kCategoryRanges[i] & 31);
}

constexpr bool white_space_slow(char32_t cp) noexcept {
    if (cp > 0x3000 || (cp > 0xA0 && cp < 0x1680)) return false;  // outside every White_Space range
    for (const auto& r : unicode_data::kWhiteSpace)
        if (cp >= r[0] && cp <= r[1]) return true;
    return false;
}

}  // namespace detail

/// Bit flags summarising a code point for pre-tokenizer rules.
enum CharFlag : std::uint8_t {
    kCharLetter = 1 << 0,       // \p{L}: Lu Ll Lt Lm Lo
    kCharNumber = 1 << 1,       // \p{N}: Nd Nl No
    kCharWhitespace = 1 << 2,   // \s: White_Space
    kCharMark = 1 << 3,         // \p{M}: Mn Mc Me
    kCharPunctuation = 1 << 4,  // \p{P}
    kCharSymbol = 1 << 5,       // \p{S}
    kCharSeparator = 1 << 6,    // \p{Z}
    kCharControl = 1 << 7,      // \p{C}: Cc Cf Cs Co Cn
};

constexpr std::uint8_t category_flags(GeneralCategory c) noexcept {
    using G = GeneralCategory;
    switch (c) {
        case G::Lu: case G::Ll: case G::Lt: case G::Lm: case G::Lo: return kCharLetter;
        case G::Mn: case G::Mc: case G::Me: return kCharMark;
        case G::Nd: case G::Nl: case G::No: return kCharNumber;
        case G::Pc: case G::Pd: case G::Ps: case G::Pe: case G::Pi: case G::Pf: case G::Po: return kCharPunctuation;
        case G::Sm: case G::Sc: case G::Sk: case G::So: return kCharSymbol;
        case G::Zs: case G::Zl: case G::Zp: return kCharSeparator;
        default: return kCharControl;
    }
}

namespace detail {
inline constexpr auto kLatin1Flags = [] {
    std::array<std::uint8_t, 256> f{};
    for (char32_t cp = 0; cp < 256; ++cp)
        f[cp] = static_cast<std::uint8_t>(category_flags(category_slow(cp)) | (white_space_slow(cp) ? kCharWhitespace : 0));
    return f;
}();
}  // namespace detail

/// General category of `cp` (Cn for unassigned code points and anything > U+10FFFF).
constexpr GeneralCategory general_category(char32_t cp) noexcept { return detail::category_slow(cp); }

/// CharFlag bits of `cp`.
constexpr std::uint8_t char_flags(char32_t cp) noexcept {
    if (cp < 256) return detail::kLatin1Flags[cp];
    return static_cast<std::uint8_t>(category_flags(detail::category_slow(cp)) |
                                     (detail::white_space_slow(cp) ? kCharWhitespace : 0));
}

constexpr bool is_letter(char32_t cp) noexcept { return (char_flags(cp) & kCharLetter) != 0; }
constexpr bool is_number(char32_t cp) noexcept { return (char_flags(cp) & kCharNumber) != 0; }
constexpr bool is_whitespace(char32_t cp) noexcept { return (char_flags(cp) & kCharWhitespace) != 0; }

/// The Unicode version the tables describe.
inline constexpr std::string_view unicode_version() noexcept { return unicode_data::kUnicodeVersion; }

}  // namespace tandem
