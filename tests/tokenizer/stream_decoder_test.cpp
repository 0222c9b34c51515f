// StreamDecoder: the concatenation of its output equals Tokenizer::decode, and
// no chunk ends inside a UTF-8 character.
#include <doctest/doctest.h>

#include <tandem/gguf/reader.hpp>
#include <tandem/tokenizer/stream_decoder.hpp>

#include "tokenizer/tokenizer_support.hpp"

using namespace tandem;
using Ids = std::vector<std::int32_t>;

namespace {

const std::string kSpm = test::model_path("vocab/ggml-vocab-llama-spm.gguf");
const std::string kGpt2 = test::model_path("vocab/ggml-vocab-gpt-2.gguf");

std::vector<std::string> chunks(const Tokenizer& tok, const Ids& ids, bool start = true) {
    StreamDecoder dec(tok, start);
    std::vector<std::string> out;
    for (auto id : ids) out.push_back(dec.push(id));
    out.push_back(dec.flush());
    return out;
}

std::string join(const std::vector<std::string>& parts) {
    std::string s;
    for (const auto& p : parts) s += p;
    return s;
}

}  // namespace

TEST_CASE("stream: an emoji from four byte-fallback tokens comes out whole") {
    const auto tok = Tokenizer::from_gguf(GgufFile::open(kSpm));
    // encode(" 😁") per the llama.cpp vectors: "▁" then <0xF0> <0x9F> <0x98> <0x81>.
    const Ids ids{29871, 243, 162, 155, 132};
    CHECK(chunks(tok, ids, false) == std::vector<std::string>{" ", "", "", "", "\xF0\x9F\x98\x81", ""});
    // At the start of a sequence the dummy prefix space goes, as in decode().
    CHECK(chunks(tok, ids, true) == std::vector<std::string>{"", "", "", "", "\xF0\x9F\x98\x81", ""});
    CHECK(join(chunks(tok, ids)) == tok.decode(ids));
    // After a leading BOS too.
    CHECK(chunks(tok, {1, 15043}) == std::vector<std::string>{"", "Hello", ""});
}

TEST_CASE("stream: a byte-level token holding part of a character") {
    const auto tok = Tokenizer::from_gguf(GgufFile::open(kGpt2));
    // " 😁" = 30325 (" \xF0\x9F\x98") + 223 ("\x81").
    CHECK(tok.token_to_piece(30325) == " \xF0\x9F\x98");
    CHECK(chunks(tok, {30325, 223}) == std::vector<std::string>{" ", "\xF0\x9F\x98\x81", ""});
    // Cut short: flush hands over the unfinished bytes.
    CHECK(chunks(tok, {30325}) == std::vector<std::string>{" ", "\xF0\x9F\x98"});
    // Bytes that can never form a character are not held.
    StreamDecoder dec(tok);
    const auto ff = tok.encode("\xFF", false);
    std::string got;
    for (auto id : ff) got += dec.push(id);
    CHECK(got == "\xFF");
    CHECK(dec.pending() == 0);
}

TEST_CASE("stream: equals whole decode on random text, chunks always whole UTF-8") {
    const auto spm = Tokenizer::from_gguf(GgufFile::open(kSpm));
    const auto gpt2 = Tokenizer::from_gguf(GgufFile::open(kGpt2));
    const auto small = Tokenizer::from_gguf(GgufFile::open(test::stories260k()));
    std::mt19937 rng(13);
    for (int round = 0; round < 200; ++round) {
        const auto text = test::random_utf8(rng, 1 + rng() % 50, false);
        for (const Tokenizer* tok : {&spm, &gpt2, &small}) {
            const auto ids = tok->encode(text, true);
            const auto parts = chunks(*tok, ids);
            for (const auto& p : parts) CHECK(utf8_is_valid(p));
            CHECK(join(parts) == tok->decode(ids));
            CHECK(join(parts) == text);
        }
    }
}

TEST_CASE("stream: reset starts a new sequence, out-of-range ids throw") {
    const auto tok = Tokenizer::from_gguf(GgufFile::open(kSpm));
    StreamDecoder dec(tok);
    CHECK(dec.push(15043) == "Hello");
    CHECK(dec.push(15043) == " Hello");
    CHECK(dec.push(243) == "");
    CHECK(dec.pending() == 1);
    dec.reset();
    CHECK(dec.pending() == 0);
    CHECK(dec.push(15043) == "Hello");
    CHECK_THROWS_AS(dec.push(32000), KeyError);
}
