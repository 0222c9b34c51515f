// SentencePiece tokenizer: the 512-token vocabulary inside stories260K, the
// 32000-token Llama 2 vocabulary against a naive reference written here, special
// tokens, and the dummy-prefix rules of decode.
#include <doctest/doctest.h>

#include <unordered_map>

#include <tandem/gguf/reader.hpp>
#include <tandem/tokenizer/tokenizer.hpp>

#include "tokenizer/tokenizer_support.hpp"

using namespace tandem;

namespace {

const std::string kSpm = test::model_path("vocab/ggml-vocab-llama-spm.gguf");

// Textbook SentencePiece BPE: after every merge, rescan all adjacent pairs and
// merge the one whose concatenation is the highest-scoring token (leftmost on
// ties); characters left without a token become <0xXX> byte tokens.
std::vector<std::int32_t> naive_spm(const Vocab& vocab, std::string_view text, bool add_prefix) {
    std::unordered_map<std::string, std::int32_t> ids;
    for (std::int32_t i = 0; i < vocab.n_tokens(); ++i) ids.emplace(vocab.text(i), i);
    std::string s = add_prefix ? " " : "";
    s += text;
    std::string escaped;
    for (char c : s) escaped += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    std::vector<std::string> sym;
    for (std::size_t i = 0; i < escaped.size();) {
        const auto len = std::min(utf8_lead_length(static_cast<unsigned char>(escaped[i])), escaped.size() - i);
        sym.push_back(escaped.substr(i, len));
        i += len;
    }
    for (;;) {
        std::ptrdiff_t best = -1;
        float best_score = 0;
        for (std::size_t k = 0; k + 1 < sym.size(); ++k) {
            const auto it = ids.find(sym[k] + sym[k + 1]);
            if (it == ids.end()) continue;
            const float score = vocab.score(it->second);
            if (best < 0 || score > best_score) best = static_cast<std::ptrdiff_t>(k), best_score = score;
        }
        if (best < 0) break;
        sym[static_cast<std::size_t>(best)] += sym[static_cast<std::size_t>(best) + 1];
        sym.erase(sym.begin() + best + 1);
    }
    std::vector<std::int32_t> out;
    for (const auto& t : sym) {
        if (const auto it = ids.find(t); it != ids.end()) {
            out.push_back(it->second);
            continue;
        }
        for (unsigned char b : t) {
            char name[8];
            std::snprintf(name, sizeof name, "<0x%02X>", b);
            out.push_back(ids.at(name));
        }
    }
    return out;
}

}  // namespace

TEST_CASE("spm: the tokenizer embedded in stories260K") {
    const auto file = GgufFile::open(test::stories260k());
    const auto tok = Tokenizer::from_gguf(file);
    CHECK(tok.n_vocab() == 512);
    CHECK(tok.bos() == 1);
    CHECK(tok.eos() == 2);
    CHECK(tok.vocab().unk() == 0);
    CHECK(tok.vocab().sep() == kNoToken);  // stored as 0xFFFFFFFF
    CHECK(tok.vocab().pad() == kNoToken);
    CHECK(tok.vocab().add_bos());
    CHECK(tok.is_eog(2));
    CHECK_FALSE(tok.is_eog(1));

    const auto greedy = test::read_file(test::model_path("stories260K.greedy.txt"));
    const auto ids = tok.encode(greedy, /*add_bos=*/true);
    REQUIRE(ids.size() > 2);
    CHECK(ids.front() == 1);
    CHECK(std::count(ids.begin(), ids.end(), 1) == 1);
    for (auto id : ids) CHECK((id >= 0 && id < 512));
    CHECK(tok.decode(ids) == greedy);
    // The ids without BOS equal the naive reference's.
    CHECK(std::vector<std::int32_t>(ids.begin() + 1, ids.end()) == naive_spm(tok.vocab(), greedy, true));
    // A small vocabulary needs byte fallback for what it lacks; it still round-trips.
    const std::string rare = "Lily \xE2\x9C\x85 says \xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xF0\x9F\x98\x81";
    CHECK(tok.decode(tok.encode(rare, true)) == rare);
}

TEST_CASE("spm: matches the naive reference on random text") {
    const auto tok = Tokenizer::from_gguf(GgufFile::open(kSpm));
    const auto small = Tokenizer::from_gguf(GgufFile::open(test::stories260k()));
    std::mt19937 rng(11);
    for (int round = 0; round < 150; ++round) {
        const auto text = test::random_utf8(rng, 1 + rng() % 60, /*allow_escape=*/false);
        CAPTURE(text);
        CHECK(tok.encode(text, false) == naive_spm(tok.vocab(), text, true));
        CHECK(small.encode(text, false) == naive_spm(small.vocab(), text, true));
        CHECK(tok.decode(tok.encode(text, true)) == text);
        CHECK(small.decode(small.encode(text, true)) == text);
    }
    // Repeats make equal-score pairs: ties must go to the leftmost pair.
    for (const std::string unit : {"3", "a", " ", "ab", "!", "\xE2\x96\x81", "\n"}) {
        std::string text;
        for (int n = 1; n <= 40; ++n) {
            text += unit;
            CAPTURE(text);
            CHECK(tok.encode(text, false) == naive_spm(tok.vocab(), text, true));
            CHECK(small.encode(text, false) == naive_spm(small.vocab(), text, true));
        }
    }
}

TEST_CASE("spm: special tokens are parsed only when asked") {
    const auto tok = Tokenizer::from_gguf(GgufFile::open(kSpm));
    // "▁Hello" = 15043: the dummy prefix also follows a special token.
    CHECK(tok.encode("<s>Hello</s>", false, true) == std::vector<std::int32_t>{1, 15043, 2});
    CHECK(tok.encode("Hello</s>", true, true) == std::vector<std::int32_t>{1, 15043, 2});
    const auto plain = tok.encode("<s>Hello</s>", false, false);
    CHECK(std::find(plain.begin(), plain.end(), 1) == plain.end());
    CHECK(std::find(plain.begin(), plain.end(), 2) == plain.end());
    CHECK(tok.decode(plain) == "<s>Hello</s>");
    // Special tokens render only when asked.
    const std::vector<std::int32_t> ids{1, 15043, 2};
    CHECK(tok.decode(ids) == "Hello");
    CHECK(tok.decode(ids, true) == "<s>Hello</s>");
}

TEST_CASE("spm: decode drops only the dummy prefix space") {
    const auto tok = Tokenizer::from_gguf(GgufFile::open(kSpm));
    CHECK(tok.strips_prefix_space());
    const std::vector<std::int32_t> hello{15043};  // "▁Hello"
    CHECK(tok.decode(hello) == "Hello");
    const std::vector<std::int32_t> two_spaces{29871, 15043};  // "▁" "▁Hello" = encode(" Hello")
    CHECK(tok.decode(two_spaces) == " Hello");
    CHECK(tok.encode(" Hello", false) == two_spaces);
    const std::vector<std::int32_t> with_bos{1, 15043};
    CHECK(tok.decode(with_bos) == "Hello");
    CHECK(tok.token_to_piece(15043) == " Hello");
    CHECK(tok.token_to_piece(13) == "\n");  // <0x0A>
    CHECK(tok.token_to_piece(1).empty());
    CHECK(tok.token_to_piece(1, true) == "<s>");
    CHECK(tok.token_to_piece(0, true) == "<unk>");
    // U+2581 is SentencePiece's space mark: it decodes as a space (lossy by design).
    CHECK(tok.decode(tok.encode("a\xE2\x96\x81" "b", false)) == "a b");
    CHECK(tok.encode("", true) == std::vector<std::int32_t>{1});
    CHECK(tok.encode("", false).empty());
    CHECK_THROWS_AS(tok.token_to_piece(32000), KeyError);
    CHECK_THROWS_AS(tok.token_to_piece(-1), KeyError);
    const std::vector<std::int32_t> bad{15043, 40000};
    CHECK_THROWS_AS((void)tok.decode(bad), KeyError);
}

TEST_CASE("spm: invalid UTF-8 falls back to bytes and survives the round trip") {
    const auto tok = Tokenizer::from_gguf(GgufFile::open(kSpm));
    for (std::string s : {std::string("\xFF"), std::string("ab\xC3"), std::string("\xE2\x96"),
                          std::string("x\x80\x80y"), std::string("\xF0\x9F\x98")}) {
        CAPTURE(s);
        const auto ids = tok.encode(s, false);
        CHECK(ids == naive_spm(tok.vocab(), s, true));
        CHECK(tok.decode(ids) == s);
    }
}
