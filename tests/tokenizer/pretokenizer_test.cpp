// Pre-tokenizer splits: expected words derived by hand from each rule set's
// regular expression (see pretokenizer.hpp), alternative by alternative.
#include <doctest/doctest.h>

#include <tandem/tokenizer/pretokenizer.hpp>

#include "tokenizer/tokenizer_support.hpp"

using namespace tandem;
using Words = std::vector<std::string>;

namespace {

template <typename P>
Words split(std::string_view text) {
    std::vector<std::string_view> out;
    P{}.split(text, out);
    return Words(out.begin(), out.end());
}

Words split_any(const AnyPreTokenizer& p, std::string_view text) {
    std::vector<std::string_view> out;
    pretokenize(p, text, out);
    return Words(out.begin(), out.end());
}

const char* kMixed = "Hello, y'all! How are you \xF0\x9F\x98\x81 ?\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8"
                     "apple\xE5\xB7\xA5\xE4\xBD\x9C" "1314151\xE5\xA4\xA9\xEF\xBD\x9E";

}  // namespace

TEST_CASE("pretokenizer: gpt-2 rules") {
    using P = Gpt2PreTokenizer;
    // "'" + "all": 'a is no contraction, so ' is a one-character "other" word;
    // CJK and Latin letters form one \p{L}+ word; U+FF5E (Sm) is "other".
    CHECK(split<P>(kMixed) == Words{"Hello", ",", " y", "'", "all", "!", " How", " are", " you",
                                    " \xF0\x9F\x98\x81", " ?",
                                    "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8" "apple\xE5\xB7\xA5\xE4\xBD\x9C",
                                    "1314151", "\xE5\xA4\xA9", "\xEF\xBD\x9E"});
    // \s+(?!\S) leaves the last space of a run for " Hello"; at the end of the
    // text the whole run is one word.
    CHECK(split<P>("   Hello\n\n  World  ") == Words{"  ", " Hello", "\n\n ", " World", "  "});
    // Contractions are lower case only; a lone newline before a letter is \s+.
    CHECK(split<P>("I'M here, ok?\n\nYes!!\n") ==
          Words{"I", "'", "M", " here", ",", " ok", "?", "\n", "\n", "Yes", "!!", "\n"});
    CHECK(split<P>("it's they're we've I'm you'll he'd don't") ==
          Words{"it", "'s", " they", "'re", " we", "'ve", " I", "'m", " you", "'ll", " he", "'d", " don", "'t"});
    CHECK(split<P>("\tfoo  (bar) 12345 x") == Words{"\t", "foo", " ", " (", "bar", ")", " 12345", " x"});
    // U+0301 (Mn) is neither letter nor number: its own "other" word.
    CHECK(split<P>("cafe\xCC\x81s") == Words{"cafe", "\xCC\x81", "s"});
    // U+00A0 is whitespace but not ' ', so it does not join the next word.
    CHECK(split<P>("a\xC2\xA0" "b") == Words{"a", "\xC2\xA0", "b"});
    // \p{N} covers Nd, Nl and No.
    CHECK(split<P>("x \xD9\xA3\xE2\x85\xAB\xC2\xBD") == Words{"x", " \xD9\xA3\xE2\x85\xAB\xC2\xBD"});
    // An invalid byte is one "other" character.
    CHECK(split<P>("\xFF" "ab \xC3") == Words{"\xFF", "ab", " \xC3"});
    CHECK(split<P>("").empty());
}

TEST_CASE("pretokenizer: llama3 rules") {
    using P = Llama3PreTokenizer;
    // "'all": one non-letter glued before letters; digits in threes.
    CHECK(split<P>(kMixed) == Words{"Hello", ",", " y", "'all", "!", " How", " are", " you",
                                    " \xF0\x9F\x98\x81", " ?",
                                    "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8" "apple\xE5\xB7\xA5\xE4\xBD\x9C",
                                    "131", "415", "1", "\xE5\xA4\xA9", "\xEF\xBD\x9E"});
    // \s*[\r\n]+ ends at the last newline of a whitespace run.
    CHECK(split<P>("   Hello\n\n  World  ") == Words{"  ", " Hello", "\n\n", " ", " World", "  "});
    // Case-insensitive contractions; punctuation keeps the newlines after it.
    CHECK(split<P>("I'M here, ok?\n\nYes!!\n") == Words{"I", "'M", " here", ",", " ok", "?\n\n", "Yes", "!!\n"});
    // A tab glues to the word after it; " (" is ` ?[^\s\p{L}\p{N}]+`.
    CHECK(split<P>("\tfoo  (bar) 12345 x") == Words{"\tfoo", " ", " (", "bar", ")", " ", "123", "45", " x"});
    CHECK(split<P>("cafe\xCC\x81s") == Words{"cafe", "\xCC\x81s"});
    CHECK(split<P>("a\xC2\xA0" "b") == Words{"a", "\xC2\xA0" "b"});
    CHECK(split<P>("x\xC2\xBD\xC2\xBE\xE2\x85\x93\xE2\x85\x94") == Words{"x", "\xC2\xBD\xC2\xBE\xE2\x85\x93", "\xE2\x85\x94"});
    CHECK(split<P>("a \r\n\tb") == Words{"a", " \r\n", "\tb"});
    CHECK(split<P>("\xFF" "ab") == Words{"\xFF" "ab"});
}

TEST_CASE("pretokenizer: qwen2 rules") {
    using P = Qwen2PreTokenizer;
    CHECK(split<P>(kMixed) == Words{"Hello", ",", " y", "'all", "!", " How", " are", " you",
                                    " \xF0\x9F\x98\x81", " ?",
                                    "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8" "apple\xE5\xB7\xA5\xE4\xBD\x9C",
                                    "1", "3", "1", "4", "1", "5", "1", "\xE5\xA4\xA9", "\xEF\xBD\x9E"});
    CHECK(split<P>("\tfoo  (bar) 12345 x") ==
          Words{"\tfoo", " ", " (", "bar", ")", " ", "1", "2", "3", "4", "5", " x"});
    CHECK(split<P>("We'VE 2 cats") == Words{"We", "'VE", " ", "2", " cats"});
}

TEST_CASE("pretokenizer: chosen by tokenizer.ggml.pre; unknown names are refused") {
    CHECK(std::holds_alternative<Gpt2PreTokenizer>(make_pretokenizer("gpt-2")));
    CHECK(std::holds_alternative<Gpt2PreTokenizer>(make_pretokenizer("")));
    CHECK(std::holds_alternative<Llama3PreTokenizer>(make_pretokenizer("llama-bpe")));
    CHECK(std::holds_alternative<Llama3PreTokenizer>(make_pretokenizer("llama3")));
    CHECK(std::holds_alternative<Qwen2PreTokenizer>(make_pretokenizer("qwen2")));
    CHECK(split_any(make_pretokenizer("qwen2"), "12") == Words{"1", "2"});
    try {
        (void)make_pretokenizer("no-such-pre");
        FAIL("expected UnsupportedError");
    } catch (const UnsupportedError& e) {
        CHECK(std::string(e.what()).find("no-such-pre") != std::string::npos);
    }
}

TEST_CASE("pretokenizer: words are non-empty and cover random text exactly") {
    std::mt19937 rng(7);
    for (int round = 0; round < 300; ++round) {
        std::string text = test::random_utf8(rng, 1 + rng() % 200);
        if (round % 3 == 0) text += "\xFF\xC3 \xE2\x82";  // invalid and truncated bytes
        for (const auto& p : {AnyPreTokenizer{Gpt2PreTokenizer{}}, AnyPreTokenizer{Llama3PreTokenizer{}},
                              AnyPreTokenizer{Qwen2PreTokenizer{}}}) {
            const auto words = split_any(p, text);
            std::string joined;
            for (const auto& w : words) {
                CHECK_FALSE(w.empty());
                joined += w;
            }
            CHECK(joined == text);
        }
    }
}

namespace {
struct NoName {
    void split(std::string_view, std::vector<std::string_view>&) const {}
};
struct WrongSignature {
    static constexpr std::string_view kName = "x";
    void split(std::string) const {}
};
}  // namespace

TEST_CASE("pretokenizer: the concept accepts the rule sets and refuses other types") {
    static_assert(PreTokenizer<Gpt2PreTokenizer>);
    static_assert(!PreTokenizer<NoName>);
    static_assert(!PreTokenizer<WrongSignature>);
    CHECK(Llama3PreTokenizer::kName == "llama3");
}
