// Unicode tables and UTF-8 helpers, checked against facts from the UCD and
// against a naive linear scan of the generated range table.
#include <doctest/doctest.h>

#include <tandem/tokenizer/unicode.hpp>

#include "tokenizer/tokenizer_support.hpp"

using namespace tandem;
using G = GeneralCategory;

namespace {
// Reference lookup: walk the whole range table.
G category_linear(char32_t cp) {
    G c = G::Cn;
    for (auto e : unicode_data::kCategoryRanges) {
        if ((e >> 5) > cp) break;
        c = static_cast<G>(e & 31);
    }
    return c;
}
}  // namespace

TEST_CASE("unicode: general categories of well-known code points") {
    CHECK(unicode_version() == "14.0.0");
    CHECK(general_category('A') == G::Lu);
    CHECK(general_category('z') == G::Ll);
    CHECK(general_category('5') == G::Nd);
    CHECK(general_category(' ') == G::Zs);
    CHECK(general_category('\n') == G::Cc);
    CHECK(general_category('!') == G::Po);
    CHECK(general_category('$') == G::Sc);
    CHECK(general_category(0x00E9) == G::Ll);   // é
    CHECK(general_category(0x00BD) == G::No);   // ½
    CHECK(general_category(0x01C5) == G::Lt);   // ǅ
    CHECK(general_category(0x0301) == G::Mn);   // combining acute
    CHECK(general_category(0x0663) == G::Nd);   // Arabic-Indic three
    CHECK(general_category(0x216B) == G::Nl);   // Roman numeral twelve
    CHECK(general_category(0x4E00) == G::Lo);   // CJK
    CHECK(general_category(0x2581) == G::So);   // ▁
    CHECK(general_category(0x1F601) == G::So);  // 😁
    CHECK(general_category(0xFF5E) == G::Sm);   // ～
    CHECK(general_category(0x200D) == G::Cf);   // ZWJ
    CHECK(general_category(0xD800) == G::Cs);
    CHECK(general_category(0xE000) == G::Co);
    CHECK(general_category(0x0378) == G::Cn);   // unassigned
    CHECK(general_category(0x10FFFF) == G::Cn);
    CHECK(general_category(0x110000) == G::Cn);
}

TEST_CASE("unicode: block-indexed lookup equals a linear scan of the table") {
    for (char32_t cp = 0; cp < 0x110000; cp += (cp < 0x30000 ? 1 : 97)) {
        if (general_category(cp) != category_linear(cp)) {
            FAIL("category mismatch at U+" << std::hex << static_cast<std::uint32_t>(cp));
        }
    }
}

TEST_CASE("unicode: White_Space is exactly the property's 25 code points") {
    std::size_t count = 0;
    for (char32_t cp = 0; cp < 0x110000; ++cp) count += is_whitespace(cp);
    CHECK(count == 25);
    for (char32_t cp : {0x09u, 0x0Au, 0x0Du, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2000u, 0x200Au, 0x2028u, 0x2029u,
                        0x202Fu, 0x205Fu, 0x3000u})
        CHECK(is_whitespace(cp));
    for (char32_t cp : {0x08u, 0x1Cu, 0x1Fu, 0x180Eu, 0x200Bu, 0xFEFFu, 0x2581u}) CHECK_FALSE(is_whitespace(cp));
    CHECK(is_letter(0x00E9));
    CHECK_FALSE(is_letter(0x0301));
    CHECK(is_number(0x00BD));
    CHECK_FALSE(is_number('x'));
}

TEST_CASE("unicode: strict UTF-8 decoding") {
    auto dec = [](std::string_view s) { return utf8_decode(s, 0); };
    CHECK(dec("A").cp == 'A');
    CHECK(dec("\xC3\xA9").cp == 0xE9);
    CHECK(dec("\xC3\xA9").len == 2);
    CHECK(dec("\xE2\x96\x81").cp == 0x2581);
    CHECK(dec("\xF0\x9F\x98\x81").cp == 0x1F601);
    CHECK_FALSE(dec("\xC0\x80").valid);          // overlong NUL
    CHECK_FALSE(dec("\xE0\x80\x80").valid);      // overlong
    CHECK_FALSE(dec("\xED\xA0\x80").valid);      // surrogate
    CHECK_FALSE(dec("\xF4\x90\x80\x80").valid);  // above U+10FFFF
    CHECK_FALSE(dec("\xE2\x96").valid);          // truncated
    CHECK_FALSE(dec("\x80").valid);              // lone continuation
    CHECK(dec("\x80").len == 1);
    std::string s;
    for (char32_t cp : {0x41u, 0x7FFu, 0x800u, 0xFFFFu, 0x10000u, 0x10FFFFu}) {
        s.clear();
        utf8_append(s, cp);
        CHECK(dec(s).cp == cp);
        CHECK(dec(s).len == s.size());
    }
    CHECK(utf8_lead_length(0x41) == 1);
    CHECK(utf8_lead_length(0x80) == 1);
    CHECK(utf8_lead_length(0xC3) == 2);
    CHECK(utf8_lead_length(0xE2) == 3);
    CHECK(utf8_lead_length(0xF0) == 4);
}

TEST_CASE("unicode: incomplete tails are the unfinished sequences only") {
    CHECK(utf8_incomplete_tail("") == 0);
    CHECK(utf8_incomplete_tail("abc") == 0);
    CHECK(utf8_incomplete_tail("a\xF0") == 1);
    CHECK(utf8_incomplete_tail("a\xF0\x9F") == 2);
    CHECK(utf8_incomplete_tail("a\xF0\x9F\x98") == 3);
    CHECK(utf8_incomplete_tail("a\xF0\x9F\x98\x81") == 0);
    CHECK(utf8_incomplete_tail("\xE2\x96") == 2);
    CHECK(utf8_incomplete_tail("\xC3") == 1);
    CHECK(utf8_incomplete_tail("\xC3\xA9") == 0);
    CHECK(utf8_incomplete_tail("\x80\x80") == 0);   // continuation bytes without a lead
    CHECK(utf8_incomplete_tail("\xC0") == 0);       // can never complete
    CHECK(utf8_incomplete_tail("\xED\xA0") == 0);   // would be a surrogate
    CHECK(utf8_incomplete_tail("\xF5") == 0);
    // Every proper prefix of a valid character is held; the whole is not.
    std::mt19937 rng(3);
    for (int i = 0; i < 2000; ++i) {
        const auto c = test::random_utf8(rng, 1);
        std::string s = "x";
        for (std::size_t k = 0; k < c.size(); ++k) {
            s += c[k];
            CHECK(utf8_incomplete_tail(s) == (k + 1 < c.size() ? k + 1 : 0));
        }
    }
}
