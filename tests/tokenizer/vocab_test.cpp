// Vocab loading from hand-made GGUF images: a valid one loads, and each kind of
// broken or hostile metadata raises its typed error, never a crash.
#include <doctest/doctest.h>

#include <functional>

#include <tandem/gguf/reader.hpp>
#include <tandem/tokenizer/tokenizer.hpp>

#include "tokenizer/tokenizer_support.hpp"

using namespace tandem;

namespace {

// A tiny valid SentencePiece vocabulary; `edit` changes it before serialising.
struct SpmFixture {
    std::vector<std::string> tokens{"<unk>", "<s>", "</s>", "\xE2\x96\x81" "a", "a", "b", "\xE2\x96\x81"};
    std::vector<float> scores{0, 0, 0, -1, -2, -3, -4};
    std::vector<std::int32_t> types{2, 3, 3, 1, 1, 1, 1};
    std::vector<std::pair<std::string, GgufValue>> extra;
    std::vector<std::string> drop;
    std::vector<std::byte> image;

    GgufFile file() {
        test::MiniGguf g;
        auto set = [&](const std::string& k, GgufValue v) {
            if (std::find(drop.begin(), drop.end(), k) == drop.end()) g.set(k, std::move(v));
        };
        set("tokenizer.ggml.model", "llama");
        set("tokenizer.ggml.tokens", make_array(tokens));
        set("tokenizer.ggml.scores", make_array(scores));
        set("tokenizer.ggml.token_type", make_array(types));
        for (auto& [k, v] : extra) g.set(k, v);
        image = g.bytes();
        return GgufFile::from_memory(image, "hand-made.gguf");
    }
};

template <typename E>
void check_throws(SpmFixture fx, const std::string& needle) {
    CAPTURE(needle);
    try {
        (void)Tokenizer::from_gguf(fx.file());
        FAIL("no exception");
    } catch (const E& e) {
        CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
    }
}

}  // namespace

TEST_CASE("vocab: a valid hand-made SentencePiece vocabulary loads and works") {
    SpmFixture fx;
    const auto tok = Tokenizer::from_gguf(fx.file());
    CHECK(tok.n_vocab() == 7);
    CHECK(tok.bos() == 1);  // llama.cpp's defaults when the keys are absent
    CHECK(tok.eos() == 2);
    CHECK(tok.vocab().unk() == 0);
    // "▁a" (score -1) beats nothing else; "b" alone; no byte tokens, so the
    // unknown 'c' falls back to <unk>.
    CHECK(tok.encode("a", true) == std::vector<std::int32_t>{1, 3});
    CHECK(tok.encode("ab c", false) == std::vector<std::int32_t>{3, 5, 6, 0});
}

TEST_CASE("vocab: mismatched array sizes are FormatErrors") {
    SpmFixture fx;
    fx.scores.pop_back();
    check_throws<FormatError>(fx, "6 scores for 7 tokens");
    SpmFixture fy;
    fy.types.push_back(1);
    check_throws<FormatError>(fy, "8 token types for 7 tokens");
}

TEST_CASE("vocab: out-of-range and bad special ids are refused") {
    for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                            "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                            "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.eot_token_id"}) {
        SpmFixture fx;
        fx.extra.emplace_back(key, std::uint32_t{7});
        check_throws<FormatError>(fx, "token id 7 is outside the vocabulary of 7");
        SpmFixture fy;
        fy.extra.emplace_back(key, std::uint32_t{4000000000u});
        check_throws<FormatError>(fy, "outside the vocabulary");
        SpmFixture fz;
        fz.extra.emplace_back(key, std::int32_t{-5});
        check_throws<FormatError>(fz, "token id -5");
        SpmFixture fs;
        fs.extra.emplace_back(key, "1");
        check_throws<KeyError>(fs, key);
    }
    // 0xFFFFFFFF means "none"; then BOS cannot be added by default.
    SpmFixture fx;
    fx.extra.emplace_back("tokenizer.ggml.bos_token_id", std::uint32_t{0xFFFFFFFFu});
    check_throws<FormatError>(fx, "add_bos_token");
    fx.extra.emplace_back("tokenizer.ggml.add_bos_token", false);
    const auto tok = Tokenizer::from_gguf(fx.file());
    CHECK(tok.bos() == kNoToken);
    CHECK(tok.encode("a", true) == std::vector<std::int32_t>{3});
}

TEST_CASE("vocab: missing, mistyped and malformed keys") {
    SpmFixture a;
    a.drop.push_back("tokenizer.ggml.tokens");
    check_throws<KeyError>(a, "tokenizer.ggml.tokens");
    SpmFixture b;
    b.drop.push_back("tokenizer.ggml.model");
    check_throws<KeyError>(b, "tokenizer.ggml.model");
    SpmFixture c;
    c.drop.push_back("tokenizer.ggml.scores");
    check_throws<KeyError>(c, "scores");
    SpmFixture d;
    d.drop.push_back("tokenizer.ggml.tokens");
    d.extra.emplace_back("tokenizer.ggml.tokens", make_array(std::vector<std::int32_t>{1, 2, 3}));
    check_throws<KeyError>(d, "tokenizer.ggml.tokens");
    SpmFixture e;
    e.drop.push_back("tokenizer.ggml.scores");
    e.extra.emplace_back("tokenizer.ggml.scores", make_array(std::vector<std::string>(7, "x")));
    check_throws<KeyError>(e, "scores");
    SpmFixture f;
    f.types[4] = 9;
    check_throws<FormatError>(f, "unknown type 9");
    SpmFixture g;
    g.tokens[5] = "a";  // same text as token 4
    check_throws<FormatError>(g, "token 5 repeats the text of token 4");
    SpmFixture h;
    h.tokens.clear();
    h.scores.clear();
    h.types.clear();
    check_throws<FormatError>(h, "empty");
}

TEST_CASE("vocab: an unknown tokenizer model is UnsupportedError naming it") {
    SpmFixture fx;
    fx.drop.push_back("tokenizer.ggml.model");
    fx.extra.emplace_back("tokenizer.ggml.model", "t5");
    check_throws<UnsupportedError>(fx, "'t5'");
}

TEST_CASE("vocab: BPE needs well-formed merges and a known pre-tokenizer") {
    auto bpe = [](std::vector<std::string> merges, const char* pre, bool with_merges = true) {
        SpmFixture fx;
        fx.drop = {"tokenizer.ggml.model", "tokenizer.ggml.scores"};
        fx.extra.emplace_back("tokenizer.ggml.model", "gpt2");
        fx.extra.emplace_back("tokenizer.ggml.pre", pre);
        if (with_merges) fx.extra.emplace_back("tokenizer.ggml.merges", make_array(merges));
        return fx;
    };
    check_throws<KeyError>(bpe({}, "gpt-2", false), "tokenizer.ggml.merges");
    check_throws<FormatError>(bpe({"a b", "ab"}, "gpt-2"), "merge 1 'ab'");
    check_throws<UnsupportedError>(bpe({"a b"}, "mystery-pre"), "'mystery-pre'");
    auto ok = bpe({"a b"}, "gpt-2");
    const auto tok = Tokenizer::from_gguf(ok.file());
    CHECK(tok.vocab().model() == TokenizerModel::Bpe);
    CHECK(tok.bos() == kNoToken);
    CHECK(tok.vocab().merges().size() == 1);
}

TEST_CASE("vocab: truncated images of a real vocabulary fail with FormatError") {
    const auto full = test::read_file(test::stories260k());
    // Cut inside the metadata (the tokenizer arrays sit in the first ~15 kB).
    for (std::size_t cut : {std::size_t{24}, std::size_t{200}, std::size_t{3000}, std::size_t{9000}}) {
        std::vector<std::byte> part(cut);
        std::memcpy(part.data(), full.data(), cut);
        CHECK_THROWS_AS((void)Tokenizer::from_gguf(GgufFile::from_memory(part, "cut")), FormatError);
    }
}

TEST_CASE("vocab: a huge token loads in bounded time" * doctest::timeout(20)) {
    SpmFixture fx;
    fx.tokens.push_back(std::string(400000, 'a'));  // 400 kB of one piece
    fx.scores.push_back(-9);
    fx.types.push_back(1);
    const auto tok = Tokenizer::from_gguf(fx.file());
    CHECK(tok.n_vocab() == 8);
    CHECK(tok.encode("a", false) == std::vector<std::int32_t>{3});
    CHECK(tok.token_to_piece(7).size() == 400000);
}
