// Vocab: a tokenizer's vocabulary as stored in a GGUF file's metadata.
//
// Keys read (all under tokenizer.ggml.):
//   model            "llama" (SentencePiece) | "gpt2" (byte-level BPE)   required
//   pre              pre-tokenizer name (BPE only; "gpt-2", "llama-bpe", "qwen2", ...)
//   tokens           [str] the token texts, id = index                   required
//   scores           [f32] one per token (SPM merge priority)            required for "llama"
//   token_type       [i32] one per token, TokenType values
//   merges           [str] "left right", rank = index                    required for "gpt2"
//   bos/eos/unknown/seperator/padding/eot/eom _token_id   u32; 0xFFFFFFFF (or -1) = none
//   add_bos_token, add_eos_token, add_space_prefix         bool
//
// Everything is validated on load: sizes agree, ids are in range, texts are
// unique. A file that breaks a rule gets FormatError (the GGUF reader cannot
// say where a value sits, so the offset is 0 and the message names the key);
// a missing or mistyped key gets KeyError; an unknown model gets UnsupportedError.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/gguf/reader.hpp"
#include "tandem/tokenizer/flat_table.hpp"

namespace tandem {

/// What a token is, as llama.cpp's converters write it into token_type.
enum class TokenType : std::uint8_t {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,      // <unk>
    Control = 3,      // <s>, </s>, <|endoftext|>: rendered only when asked
    UserDefined = 4,  // added tokens: always matched in text as a whole
    Unused = 5,
    Byte = 6,         // SentencePiece byte fallback <0xXX>
};

/// Which tokenization algorithm a vocabulary uses.
enum class TokenizerModel : std::uint8_t {
    Spm,  // "llama": SentencePiece score-driven merges with byte fallback
    Bpe,  // "gpt2":  byte-level BPE with ranked merges
};

inline constexpr std::int32_t kNoToken = -1;

class Vocab {
public:
    /// Reads and validates the tokenizer metadata of `file`.
    static Vocab from_gguf(const GgufFile& file) {
        Vocab v;
        v.file_ = file.name();
        const auto model = file.get<std::string>("tokenizer.ggml.model");
        if (model == "llama") {
            v.model_ = TokenizerModel::Spm;
        } else if (model == "gpt2") {
            v.model_ = TokenizerModel::Bpe;
        } else {
            throw UnsupportedError(file.name() + ": tokenizer model '" + model +
                                   "' is not supported (supported: 'llama' SentencePiece, 'gpt2' byte-level BPE)");
        }
        v.model_name_ = model;
        v.pre_ = file.get_or<std::string>("tokenizer.ggml.pre", "");

        v.tokens_ = file.get<std::vector<std::string>>("tokenizer.ggml.tokens");
        const std::size_t n = v.tokens_.size();
        if (n == 0) v.fail("tokenizer.ggml.tokens", "the vocabulary is empty");
        if (n > static_cast<std::size_t>(INT32_MAX))
            v.fail("tokenizer.ggml.tokens", std::to_string(n) + " tokens do not fit 32-bit ids");

        if (file.contains("tokenizer.ggml.scores")) {
            v.scores_ = file.get<std::vector<float>>("tokenizer.ggml.scores");
            if (v.scores_.size() != n)
                v.fail("tokenizer.ggml.scores", std::to_string(v.scores_.size()) + " scores for " + std::to_string(n) +
                                                    " tokens");
        } else if (v.model_ == TokenizerModel::Spm) {
            throw KeyError(file.name() + ": no metadata key 'tokenizer.ggml.scores' (SentencePiece merges need scores)");
        } else {
            v.scores_.assign(n, 0.0f);
        }

        v.types_.assign(n, TokenType::Normal);
        if (file.contains("tokenizer.ggml.token_type")) {
            const auto types = file.get<std::vector<std::int32_t>>("tokenizer.ggml.token_type");
            if (types.size() != n)
                v.fail("tokenizer.ggml.token_type",
                       std::to_string(types.size()) + " token types for " + std::to_string(n) + " tokens");
            for (std::size_t i = 0; i < n; ++i) {
                if (types[i] < 0 || types[i] > static_cast<std::int32_t>(TokenType::Byte))
                    v.fail("tokenizer.ggml.token_type",
                           "token " + std::to_string(i) + " has unknown type " + std::to_string(types[i]));
                v.types_[i] = static_cast<TokenType>(types[i]);
            }
        }

        std::int32_t dup = kNoToken;
        if (!v.index_.build(v.tokens_, dup)) {
            const auto first = v.index_.find(v.tokens_, v.tokens_[static_cast<std::size_t>(dup)]);
            v.fail("tokenizer.ggml.tokens", "token " + std::to_string(dup) + " repeats the text of token " +
                                                std::to_string(first));
        }

        if (v.model_ == TokenizerModel::Bpe) {
            const auto merges = file.get<std::vector<std::string>>("tokenizer.ggml.merges");
            v.merges_.reserve(merges.size());
            for (std::size_t i = 0; i < merges.size(); ++i) {
                // Split at the first space after the first byte, so a left part
                // that is itself a space stays whole.
                const auto pos = merges[i].size() > 1 ? merges[i].find(' ', 1) : std::string::npos;
                if (pos == std::string::npos)
                    v.fail("tokenizer.ggml.merges",
                           "merge " + std::to_string(i) + " '" + merges[i] + "' is not two tokens separated by a space");
                v.merges_.emplace_back(merges[i].substr(0, pos), merges[i].substr(pos + 1));
            }
        }

        // Defaults follow llama.cpp: SentencePiece files without the keys mean
        // <unk>=0, <s>=1, </s>=2 and a BOS before every prompt.
        const bool spm = v.model_ == TokenizerModel::Spm;
        v.bos_ = v.read_id(file, "tokenizer.ggml.bos_token_id", spm ? 1 : kNoToken);
        v.eos_ = v.read_id(file, "tokenizer.ggml.eos_token_id", spm ? 2 : kNoToken);
        v.unk_ = v.read_id(file, "tokenizer.ggml.unknown_token_id", spm ? 0 : kNoToken);
        v.sep_ = v.read_id(file, "tokenizer.ggml.seperator_token_id", kNoToken);  // sic: the GGUF key's spelling
        v.pad_ = v.read_id(file, "tokenizer.ggml.padding_token_id", kNoToken);
        v.eot_ = v.read_id(file, "tokenizer.ggml.eot_token_id", kNoToken);
        v.eom_ = v.read_id(file, "tokenizer.ggml.eom_token_id", kNoToken);

        const bool llama3_pre = v.pre_ == "llama3" || v.pre_ == "llama-v3" || v.pre_ == "llama-bpe";
        v.add_bos_ = file.get_or<bool>("tokenizer.ggml.add_bos_token", spm || llama3_pre);
        v.add_eos_ = file.get_or<bool>("tokenizer.ggml.add_eos_token", false);
        v.add_space_prefix_ = file.get_or<bool>("tokenizer.ggml.add_space_prefix", spm);
        if (v.add_bos_ && v.bos_ == kNoToken) v.fail("tokenizer.ggml.add_bos_token", "is true but there is no BOS token");
        if (v.add_eos_ && v.eos_ == kNoToken) v.fail("tokenizer.ggml.add_eos_token", "is true but there is no EOS token");
        return v;
    }

    TokenizerModel model() const noexcept { return model_; }
    const std::string& model_name() const noexcept { return model_name_; }  // "llama" | "gpt2"
    const std::string& pre() const noexcept { return pre_; }                // "" when absent
    const std::string& file() const noexcept { return file_; }

    std::int32_t n_tokens() const noexcept { return static_cast<std::int32_t>(tokens_.size()); }
    bool contains(std::int32_t id) const noexcept { return id >= 0 && id < n_tokens(); }
    const std::string& text(std::int32_t id) const { return tokens_[checked(id)]; }
    float score(std::int32_t id) const { return scores_[checked(id)]; }
    TokenType type(std::int32_t id) const { return types_[checked(id)]; }
    const std::vector<std::string>& tokens() const noexcept { return tokens_; }
    /// BPE merges in rank order (empty for SentencePiece).
    const std::vector<std::pair<std::string, std::string>>& merges() const noexcept { return merges_; }

    /// Id of the token whose text is exactly `s`, or kNoToken.
    std::int32_t find(std::string_view s) const noexcept { return index_.find(tokens_, s); }

    std::int32_t bos() const noexcept { return bos_; }  // kNoToken when the vocabulary has none
    std::int32_t eos() const noexcept { return eos_; }
    std::int32_t unk() const noexcept { return unk_; }
    std::int32_t sep() const noexcept { return sep_; }
    std::int32_t pad() const noexcept { return pad_; }
    std::int32_t eot() const noexcept { return eot_; }
    std::int32_t eom() const noexcept { return eom_; }

    bool add_bos() const noexcept { return add_bos_; }            // prompts start with BOS
    bool add_eos() const noexcept { return add_eos_; }
    bool add_space_prefix() const noexcept { return add_space_prefix_; }  // SPM dummy prefix

private:
    Vocab() = default;

    [[noreturn]] void fail(const std::string& key, const std::string& msg) const {
        throw FormatError(file_, 0, "metadata '" + key + "': " + msg);
    }

    std::size_t checked(std::int32_t id) const {
        if (!contains(id))
            throw KeyError(file_ + ": token id " + std::to_string(id) + " is outside the vocabulary of " +
                           std::to_string(n_tokens()));
        return static_cast<std::size_t>(id);
    }

    // A special-token id: absent key -> `fallback`; 0xFFFFFFFF / -1 -> none;
    // anything else must name a token.
    std::int32_t read_id(const GgufFile& file, std::string_view key, std::int32_t fallback) const {
        const auto* value = file.find(key);
        if (!value) return contains(fallback) ? fallback : kNoToken;
        const auto id = file.get<std::int64_t>(key);
        if (id == -1 || id == 0xFFFFFFFFll) return kNoToken;
        if (id < 0 || id >= n_tokens())
            fail(std::string(key), "token id " + std::to_string(id) + " is outside the vocabulary of " +
                                       std::to_string(n_tokens()));
        return static_cast<std::int32_t>(id);
    }

    TokenizerModel model_ = TokenizerModel::Spm;
    std::string model_name_;
    std::string pre_;
    std::string file_;
    std::vector<std::string> tokens_;  // (n_tokens,)
    std::vector<float> scores_;        // (n_tokens,)
    std::vector<TokenType> types_;     // (n_tokens,)
    std::vector<std::pair<std::string, std::string>> merges_;  // (n_merges,) rank order
    TokenIndex index_;
    std::int32_t bos_ = kNoToken, eos_ = kNoToken, unk_ = kNoToken, sep_ = kNoToken, pad_ = kNoToken;
    std::int32_t eot_ = kNoToken, eom_ = kNoToken;
    bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
};

}  // namespace tandem
