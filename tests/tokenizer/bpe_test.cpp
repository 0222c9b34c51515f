// Byte-level BPE: GPT-2's byte map, the GPT-2 vocabulary against a naive
// string-based BPE written here, long words (heap path), and a hand-made
// vocabulary for the Llama-3 rules' whole-word shortcut.
#include <doctest/doctest.h>

#include <map>
#include <unordered_map>

#include <tandem/gguf/reader.hpp>
#include <tandem/tokenizer/tokenizer.hpp>

#include "tokenizer/tokenizer_support.hpp"

using namespace tandem;

namespace {

const std::string kGpt2 = test::model_path("vocab/ggml-vocab-gpt-2.gguf");

// Textbook BPE on one word: symbols are the byte characters; after every
// merge rescan all pairs and merge the lowest-ranked one (leftmost on ties).
struct NaiveBpe {
    std::unordered_map<std::string, std::int32_t> ids;
    std::map<std::pair<std::string, std::string>, std::size_t> ranks;

    explicit NaiveBpe(const Vocab& v) {
        for (std::int32_t i = 0; i < v.n_tokens(); ++i) ids.emplace(v.text(i), i);
        for (std::size_t r = 0; r < v.merges().size(); ++r) ranks.emplace(v.merges()[r], r);
    }

    void word(std::string_view bytes, std::vector<std::int32_t>& out) const {
        std::vector<std::string> sym;
        for (char b : bytes) sym.push_back(gpt2_bytes_to_text(std::string_view(&b, 1)));
        for (;;) {
            std::size_t best = SIZE_MAX, best_rank = SIZE_MAX;
            for (std::size_t k = 0; k + 1 < sym.size(); ++k) {
                const auto it = ranks.find({sym[k], sym[k + 1]});
                if (it != ranks.end() && it->second < best_rank) best = k, best_rank = it->second;
            }
            if (best == SIZE_MAX) break;
            sym[best] += sym[best + 1];
            sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best) + 1);
        }
        for (const auto& s : sym) out.push_back(ids.at(s));
    }

    std::vector<std::int32_t> encode(std::string_view text) const {
        std::vector<std::string_view> words;
        Gpt2PreTokenizer{}.split(text, words);
        std::vector<std::int32_t> out;
        for (auto w : words) word(w, out);
        return out;
    }
};

}  // namespace

TEST_CASE("bpe: GPT-2's byte to character map") {
    constexpr auto map = gpt2_byte_to_codepoint();
    CHECK(map[' '] == 0x120);   // Ġ
    CHECK(map['\n'] == 0x10A);  // Ċ
    CHECK(map['\t'] == 0x109);
    CHECK(map[0] == 0x100);
    CHECK(map['!'] == '!');
    CHECK(map[0xAD] == 0x143);  // soft hyphen is the last remapped byte
    CHECK(map[0xFF] == 0xFF);
    std::string all;
    for (unsigned b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
    CHECK(gpt2_text_to_bytes(gpt2_bytes_to_text(all)) == all);
    CHECK(gpt2_bytes_to_text(" a\n") == "\xC4\xA0" "a\xC4\x8A");
}

TEST_CASE("bpe: GPT-2 matches the naive reference, short and long words") {
    const auto tok = Tokenizer::from_gguf(GgufFile::open(kGpt2));
    const NaiveBpe naive(tok.vocab());
    std::mt19937 rng(5);
    for (int round = 0; round < 200; ++round) {
        auto text = test::random_utf8(rng, 1 + rng() % 80);
        CAPTURE(text);
        CHECK(tok.encode(text, false) == naive.encode(text));
        CHECK(tok.decode(tok.encode(text, false)) == text);
    }
    // Words longer than the short-word path (48 bytes) go through the heap.
    std::uniform_int_distribution<int> letter('a', 'z');
    for (int round = 0; round < 40; ++round) {
        std::string word(50 + rng() % 300, 'a');
        for (auto& c : word) c = static_cast<char>(round % 4 == 0 ? 'a' + (round / 4) % 3 : letter(rng));
        const auto text = " " + word + " 12345678901234567890123456789012345678901234567890123";
        CAPTURE(text);
        CHECK(tok.encode(text, false) == naive.encode(text));
        CHECK(tok.decode(tok.encode(text, false)) == text);
    }
    // Repeats make equal-rank pairs: ties must go to the leftmost pair.
    for (const std::string unit : {"3", "a", " ", "ab", "!", "\n", "\xC3\xA9"}) {
        std::string text;
        for (int n = 1; n <= 70; ++n) {
            text += unit;
            CAPTURE(text);
            CHECK(tok.encode(text, false) == naive.encode(text));
        }
    }
    const std::string greedy = test::read_file(test::model_path("stories260K.greedy.txt"));
    CHECK(tok.encode(greedy, false) == naive.encode(greedy));
}

TEST_CASE("bpe: any bytes survive the round trip") {
    const auto tok = Tokenizer::from_gguf(GgufFile::open(kGpt2));
    std::mt19937 rng(9);
    for (int round = 0; round < 100; ++round) {
        std::string s(rng() % 64, '\0');
        for (auto& c : s) c = static_cast<char>(rng());
        CHECK(tok.decode(tok.encode(s, false)) == s);
    }
    CHECK(tok.encode("<|endoftext|>", false, true) == std::vector<std::int32_t>{50256});
    CHECK(tok.encode("a<|endoftext|>b", true, true) == std::vector<std::int32_t>{64, 50256, 65});
    CHECK(tok.encode("<|endoftext|>", false, false).size() > 1);
}

TEST_CASE("bpe: Llama-3 rules emit a word that is a whole token without merging") {
    // Tokens 0..255: the byte characters in byte order; 256 "ab"; 257 "abc";
    // 258 a control BOS. One merge, "a b": "abc" is reachable only whole.
    std::vector<std::string> tokens;
    std::vector<std::int32_t> types(259, 1);
    for (unsigned b = 0; b < 256; ++b) {
        const char c = static_cast<char>(b);
        tokens.push_back(gpt2_bytes_to_text(std::string_view(&c, 1)));
    }
    tokens.push_back("ab");
    tokens.push_back("abc");
    tokens.push_back("<|begin|>");
    types[258] = 3;
    auto make = [&](const std::string& pre) {
        test::MiniGguf g;
        g.set("tokenizer.ggml.model", "gpt2")
            .set("tokenizer.ggml.pre", pre)
            .set("tokenizer.ggml.tokens", make_array(tokens))
            .set("tokenizer.ggml.token_type", make_array(types))
            .set("tokenizer.ggml.merges", make_array(std::vector<std::string>{"a b"}))
            .set("tokenizer.ggml.bos_token_id", std::uint32_t{258});
        return g.bytes();
    };
    const auto gpt2_bytes = make("gpt-2");
    const auto llama_bytes = make("llama-bpe");
    const auto gpt2 = Tokenizer::from_gguf(GgufFile::from_memory(gpt2_bytes, "gpt2-mini"));
    const auto llama = Tokenizer::from_gguf(GgufFile::from_memory(llama_bytes, "llama-mini"));
    // GPT-2 rules merge a+b and stop; its vocabulary does not ask for BOS.
    CHECK(gpt2.encode("abc", true) == std::vector<std::int32_t>{256, 'c'});
    // Llama-3 rules take the whole word, and Llama 3 starts with BOS.
    CHECK(llama.encode("abc", true) == std::vector<std::int32_t>{258, 257});
    CHECK(llama.encode("abcab", false) == std::vector<std::int32_t>{256, 'c', 256});
    CHECK(llama.decode(llama.encode("abc abc", true)) == "abc abc");
    CHECK(llama.decode(std::vector<std::int32_t>{258, 257}, true) == "<|begin|>abc");
}
