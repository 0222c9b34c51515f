// Shared helpers for the tokenizer tests: the shipped test vectors, random
// UTF-8, and a minimal in-memory GGUF image for hand-made (hostile) vocabularies.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <tandem/gguf/value.hpp>
#include <tandem/tokenizer/unicode.hpp>

#include "support/paths.hpp"

namespace tandem::test {

inline std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

struct VocabVector {
    std::string input;
    std::vector<std::int32_t> ids;  // without BOS
};

/// The .inp/.out pair next to `gguf`. Inputs are separated by the exact
/// sequence "\n__ggml_vocab_test__\n" (so an input may itself be "" or "\n" and
/// the file ends with the separator); .out holds one line of ids per input.
inline std::vector<VocabVector> read_vocab_vectors(const std::string& gguf) {
    const std::string raw = read_file(gguf + ".inp");
    const std::string out = read_file(gguf + ".out");
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> inputs;
    for (std::size_t pos = 0; pos < raw.size();) {
        const auto next = raw.find(sep, pos);
        if (next == std::string::npos) {
            inputs.push_back(raw.substr(pos));
            break;
        }
        inputs.push_back(raw.substr(pos, next - pos));
        pos = next + sep.size();
    }
    std::vector<VocabVector> v;
    std::istringstream lines(out);
    std::size_t i = 0;
    for (std::string line; std::getline(lines, line); ++i) {
        if (i >= inputs.size()) throw std::runtime_error("more output lines than inputs in " + gguf);
        VocabVector t{inputs[i], {}};
        std::istringstream ids(line);
        for (std::int32_t id; ids >> id;) t.ids.push_back(id);
        v.push_back(std::move(t));
    }
    if (v.size() != inputs.size()) throw std::runtime_error("inputs and outputs differ in number in " + gguf);
    return v;
}

/// Random valid UTF-8: ASCII words and spaces mixed with Latin-1, Cyrillic,
/// CJK, combining marks, emoji, digits, newlines and tabs. With `allow_escape`
/// false, U+2581 (SentencePiece's space mark) is never produced.
inline std::string random_utf8(std::mt19937& rng, std::size_t n_chars, bool allow_escape = true) {
    static constexpr std::pair<char32_t, char32_t> ranges[] = {
        {0x20, 0x7E},     {0x20, 0x20},       {0x61, 0x7A},     {0x30, 0x39},     {0x0A, 0x0A},
        {0x09, 0x09},     {0xA0, 0xFF},       {0x400, 0x44F},   {0x300, 0x36F},   {0x4E00, 0x4FFF},
        {0x1F600, 0x1F64F}, {0x2500, 0x25FF}, {0x1780, 0x17FF}, {0x3000, 0x3003}, {0x10000, 0x10FFFF},
    };
    std::uniform_int_distribution<std::size_t> pick(0, std::size(ranges) - 1);
    std::string s;
    while (n_chars-- > 0) {
        const auto [lo, hi] = ranges[pick(rng)];
        char32_t cp = std::uniform_int_distribution<std::uint32_t>(lo, hi)(rng);
        if ((cp >= 0xD800 && cp <= 0xDFFF) || (!allow_escape && cp == 0x2581)) cp = 'x';
        utf8_append(s, cp);
    }
    return s;
}

/// Builds a GGUF v3 image with metadata only (no tensors), for vocabularies
/// written by hand. Values are tandem::GgufValue, so any type can be stored,
/// including the wrong one for a key.
class MiniGguf {
public:
    MiniGguf& set(std::string key, GgufValue value) {
        kv_.emplace_back(std::move(key), std::move(value));
        return *this;
    }

    std::vector<std::byte> bytes() const {
        std::vector<std::byte> out;
        put<std::uint32_t>(out, 0x46554747);  // "GGUF"
        put<std::uint32_t>(out, 3);
        put<std::uint64_t>(out, 0);  // tensors
        put<std::uint64_t>(out, kv_.size());
        for (const auto& [k, v] : kv_) {
            put_string(out, k);
            put<std::uint32_t>(out, static_cast<std::uint32_t>(v.type()));
            put_value(out, v);
        }
        return out;
    }

private:
    template <typename T>
    static void put(std::vector<std::byte>& out, T v) {
        const auto at = out.size();
        out.resize(at + sizeof(T));
        std::memcpy(out.data() + at, &v, sizeof(T));
    }
    static void put_string(std::vector<std::byte>& out, const std::string& s) {
        put<std::uint64_t>(out, s.size());
        for (char c : s) out.push_back(static_cast<std::byte>(c));
    }
    static void put_value(std::vector<std::byte>& out, const GgufValue& v) {
        std::visit(
            [&](const auto& x) {
                using X = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<X, std::string>) {
                    put_string(out, x);
                } else if constexpr (std::is_same_v<X, std::shared_ptr<const GgufArray>>) {
                    put<std::uint32_t>(out, static_cast<std::uint32_t>(x->element_type));
                    put<std::uint64_t>(out, x->items.size());
                    for (const auto& item : x->items) put_value(out, item);
                } else if constexpr (std::is_same_v<X, bool>) {
                    put<std::uint8_t>(out, x ? 1 : 0);
                } else {
                    put<X>(out, x);
                }
            },
            v.storage());
    }

    std::vector<std::pair<std::string, GgufValue>> kv_;
};

}  // namespace tandem::test
