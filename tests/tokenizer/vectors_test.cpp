// The shipped llama.cpp tokenizer test vectors: every input encodes to exactly
// the recorded ids, decodes back to itself, and streams to the same text.
#include <doctest/doctest.h>

#include <tandem/gguf/reader.hpp>
#include <tandem/tokenizer/stream_decoder.hpp>
#include <tandem/tokenizer/tokenizer.hpp>

#include "tokenizer/tokenizer_support.hpp"

using namespace tandem;

namespace {

const std::string kSpm = test::model_path("vocab/ggml-vocab-llama-spm.gguf");
const std::string kGpt2 = test::model_path("vocab/ggml-vocab-gpt-2.gguf");

std::string show(const std::vector<std::int32_t>& ids) {
    std::string s;
    for (auto id : ids) {
        s += ' ';
        s += std::to_string(id);
    }
    return s;
}

// Streams `ids` through a StreamDecoder; checks every chunk is whole UTF-8
// when the full text is, and returns the concatenation.
std::string stream(const Tokenizer& tok, const std::vector<std::int32_t>& ids, bool expect_valid) {
    StreamDecoder dec(tok);
    std::string all;
    for (auto id : ids) {
        const auto chunk = dec.push(id);
        if (expect_valid) CHECK_MESSAGE(utf8_is_valid(chunk), "partial UTF-8 emitted after id " << id);
        all += chunk;
    }
    all += dec.flush();
    return all;
}

void check_vectors(const std::string& path, std::size_t expected_count) {
    const auto tok = Tokenizer::from_gguf(GgufFile::open(path));
    const auto vectors = test::read_vocab_vectors(path);
    REQUIRE(vectors.size() == expected_count);
    for (const auto& v : vectors) {
        CAPTURE(v.input);
        const auto ids = tok.encode(v.input, /*add_bos=*/false);
        CHECK_MESSAGE(ids == v.ids, "got" << show(ids) << "\nwant" << show(v.ids));
        CHECK(tok.decode(ids) == v.input);
        CHECK(stream(tok, ids, utf8_is_valid(v.input)) == tok.decode(ids));
        // With BOS (when the vocabulary asks for it) the ids are BOS + the same ids.
        auto with_bos = tok.encode(v.input, /*add_bos=*/true);
        if (tok.vocab().add_bos()) {
            REQUIRE(!with_bos.empty());
            CHECK(with_bos.front() == tok.bos());
            with_bos.erase(with_bos.begin());
        }
        CHECK(with_bos == ids);
    }
}

}  // namespace

TEST_CASE("tokenizer: the vector files split into 46 inputs, byte-exact") {
    const auto v = test::read_vocab_vectors(kSpm);
    REQUIRE(v.size() == 46);
    CHECK(v[0].input == "ied 4 \xC2\xBD months");
    CHECK(v[2].input.empty());
    CHECK(v[3].input == " ");
    CHECK(v[6].input == "\t");
    CHECK(v[7].input == "\n");
    CHECK(v[8].input == "\n\n");
    CHECK(v[10].input == "\t\n");
    CHECK(v[2].ids.empty());
    // Both files share the inputs.
    const auto g = test::read_vocab_vectors(kGpt2);
    REQUIRE(g.size() == v.size());
    for (std::size_t i = 0; i < v.size(); ++i) CHECK(g[i].input == v[i].input);
}

TEST_CASE("tokenizer: every llama-spm vector matches llama.cpp") { check_vectors(kSpm, 46); }

TEST_CASE("tokenizer: every gpt-2 vector matches llama.cpp") { check_vectors(kGpt2, 46); }

TEST_CASE("tokenizer: the vocab files' metadata as read") {
    const auto spm = Tokenizer::from_gguf(GgufFile::open(kSpm));
    CHECK(spm.vocab().model() == TokenizerModel::Spm);
    CHECK(spm.n_vocab() == 32000);
    CHECK(spm.bos() == 1);
    CHECK(spm.eos() == 2);
    CHECK(spm.vocab().unk() == 0);
    CHECK(spm.vocab().type(0) == TokenType::Unknown);
    CHECK(spm.vocab().type(1) == TokenType::Control);
    CHECK(spm.vocab().type(3) == TokenType::Byte);
    CHECK(spm.vocab().text(3) == "<0x00>");
    CHECK(spm.is_eog(2));
    CHECK_FALSE(spm.is_eog(1));

    const auto gpt2 = Tokenizer::from_gguf(GgufFile::open(kGpt2));
    CHECK(gpt2.vocab().model() == TokenizerModel::Bpe);
    CHECK(gpt2.vocab().pre() == "gpt-2");
    CHECK(gpt2.n_vocab() == 50257);
    CHECK(gpt2.vocab().merges().size() == 50000);
    CHECK(gpt2.bos() == 50256);
    CHECK(gpt2.eos() == 50256);
    CHECK(gpt2.is_eog(50256));
    CHECK_FALSE(gpt2.vocab().add_bos());
    CHECK(gpt2.token_to_piece(220) == " ");
    CHECK(gpt2.token_to_piece(198) == "\n");
    CHECK(gpt2.token_to_piece(50256).empty());
    CHECK(gpt2.token_to_piece(50256, true) == "<|endoftext|>");
}
