// Tokenizer: text <-> token ids for a model, built from its GGUF metadata alone.
//
//   auto tok = Tokenizer::from_gguf(GgufFile::open("model.gguf"));
//   std::vector<std::int32_t> ids = tok.encode("Hello world", /*add_bos=*/true);
//   std::string text = tok.decode(ids);
//
// One facade over the two algorithms (spm.hpp, bpe.hpp). It adds what both
// share: special tokens found in the text, BOS, rendering ids back to bytes,
// and the end-of-generation set. A Tokenizer is immutable after construction:
// encode/decode are const and safe to call from many threads at once.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/gguf/reader.hpp"
#include "tandem/tokenizer/bpe.hpp"
#include "tandem/tokenizer/pretokenizer.hpp"
#include "tandem/tokenizer/spm.hpp"
#include "tandem/tokenizer/vocab.hpp"

namespace tandem {

class Tokenizer {
public:
    /// Reads and validates the vocabulary of `file` (see vocab.hpp for errors).
    static Tokenizer from_gguf(const GgufFile& file) { return Tokenizer(Vocab::from_gguf(file)); }

    explicit Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
        if (vocab_.model() == TokenizerModel::Spm) {
            spm_ = SpmModel(vocab_);
        } else {
            pre_ = make_pretokenizer(vocab_.pre());
            bpe_ = BpeModel(vocab_, pre_ignores_merges(vocab_.pre()));
        }
        const auto n = vocab_.n_tokens();
        pieces_.resize(static_cast<std::size_t>(n));
        for (std::int32_t id = 0; id < n; ++id) pieces_[static_cast<std::size_t>(id)] = render(id);

        // Special tokens are matched longest first, as llama.cpp does.
        for (std::int32_t id = 0; id < n; ++id) {
            const auto t = vocab_.type(id);
            if ((t == TokenType::Control || t == TokenType::Unknown || t == TokenType::UserDefined) &&
                !vocab_.text(id).empty())
                specials_.push_back(id);
        }
        std::stable_sort(specials_.begin(), specials_.end(), [&](std::int32_t a, std::int32_t b) {
            return vocab_.text(a).size() > vocab_.text(b).size();
        });
        has_user_defined_ = std::any_of(specials_.begin(), specials_.end(),
                                        [&](std::int32_t id) { return vocab_.type(id) == TokenType::UserDefined; });

        // End of generation: EOS, EOT, EOM, and the end-of-turn markers that
        // chat vocabularies carry without a metadata key.
        static constexpr std::string_view kEogTexts[] = {"<|eot_id|>", "<|im_end|>",     "<|end|>",
                                                         "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
                                                         "<|eom_id|>", "<EOT>"};
        for (const auto id : {vocab_.eos(), vocab_.eot(), vocab_.eom()})
            if (id != kNoToken) eog_.push_back(id);
        for (auto text : kEogTexts)
            if (const auto id = vocab_.find(text); id != kNoToken) eog_.push_back(id);
        std::sort(eog_.begin(), eog_.end());
        eog_.erase(std::unique(eog_.begin(), eog_.end()), eog_.end());
    }

    /// Token ids of `text`.
    /// - `add_bos`: start with BOS when the vocabulary asks for one
    ///   (tokenizer.ggml.add_bos_token; SentencePiece and Llama 3 do, GPT-2 does
    ///   not). EOS is never appended: a caller that wants it adds eos().
    /// - `parse_special`: control tokens written in the text ("<s>", "</s>",
    ///   "<|endoftext|>") become those tokens; otherwise they are plain text.
    ///   User-defined tokens are always matched.
    std::vector<std::int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const {
        std::vector<std::int32_t> out;
        out.reserve(text.size() / 3 + 2);
        if (add_bos && vocab_.add_bos() && vocab_.bos() != kNoToken) out.push_back(vocab_.bos());
        if (text.empty()) return out;
        if (!parse_special && !has_user_defined_) {
            encode_text(text, true, out);  // no special token can occur: one fragment
            return out;
        }
        // The dummy prefix goes before the text and after every special token.
        bool after_special = true;
        for (const auto& f : partition(text, parse_special)) {
            if (f.token != kNoToken) {
                out.push_back(f.token);
                after_special = true;
            } else {
                encode_text(text.substr(f.offset, f.length), after_special, out);
                after_special = false;
            }
        }
        return out;
    }

    /// The text of `ids`. Control and unknown tokens render as nothing unless
    /// `render_special`. With a SentencePiece dummy prefix, the space it put
    /// before the first token (after an optional leading BOS) is removed, so
    /// decode(encode(s, add_bos)) == s for text without U+2581 (which decodes as
    /// a space). Throws KeyError for an id outside the vocabulary.
    std::string decode(std::span<const std::int32_t> ids, bool render_special = false) const {
        std::string out;
        std::size_t i = 0;
        if (!ids.empty() && ids[0] == vocab_.bos() && vocab_.bos() != kNoToken) {
            out += token_to_piece(ids[0], render_special);
            i = 1;
        }
        bool strip = strips_prefix_space();
        for (; i < ids.size(); ++i) {
            std::string_view piece = token_to_piece(ids[i], render_special);
            if (strip) {
                if (!piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
                strip = false;
            }
            out += piece;
        }
        return out;
    }

    /// The bytes one token stands for (not necessarily whole UTF-8 characters:
    /// byte-fallback and byte-level tokens can hold part of one).
    const std::string& token_to_piece(std::int32_t id, bool render_special = false) const {
        if (!vocab_.contains(id))
            throw KeyError("token id " + std::to_string(id) + " is outside the vocabulary of " +
                           std::to_string(vocab_.n_tokens()));
        if (render_special) {
            const auto t = vocab_.type(id);
            if (t == TokenType::Control || t == TokenType::Unknown) return vocab_.text(id);
        }
        return pieces_[static_cast<std::size_t>(id)];
    }

    std::int32_t bos() const noexcept { return vocab_.bos(); }
    std::int32_t eos() const noexcept { return vocab_.eos(); }
    std::int32_t n_vocab() const noexcept { return vocab_.n_tokens(); }
    /// True for tokens that end generation (EOS, EOT, EOM, end-of-turn markers).
    bool is_eog(std::int32_t id) const noexcept { return std::binary_search(eog_.begin(), eog_.end(), id); }
    const std::vector<std::int32_t>& eog_tokens() const noexcept { return eog_; }

    /// Whether decode drops a leading space (SentencePiece's dummy prefix).
    bool strips_prefix_space() const noexcept {
        return vocab_.model() == TokenizerModel::Spm && vocab_.add_space_prefix();
    }
    const Vocab& vocab() const noexcept { return vocab_; }

private:
    struct Fragment {
        std::size_t offset = 0, length = 0;  // raw text [offset, offset + length) when token == kNoToken
        std::int32_t token = kNoToken;
    };

    // Appends the tokens of text that holds no special token.
    void encode_text(std::string_view text, bool after_special, std::vector<std::int32_t>& out) const {
        if (vocab_.model() == TokenizerModel::Spm) {
            spm_.encode(spm_escape(text, vocab_.add_space_prefix() && after_special), out);
            return;
        }
        std::vector<std::string_view> words;
        words.reserve(text.size() / 4 + 1);
        pretokenize(pre_, text, words);
        for (const auto w : words) bpe_.encode_word(vocab_, w, out);
    }

    // Cuts `text` at occurrences of special tokens, longest token first, so a
    // shorter special inside a longer one's text is not matched.
    std::vector<Fragment> partition(std::string_view text, bool parse_special) const {
        std::vector<Fragment> frags{{0, text.size(), kNoToken}};
        if (!parse_special && !has_user_defined_) return frags;
        std::vector<Fragment> next;
        for (const auto id : specials_) {
            if (!parse_special && vocab_.type(id) != TokenType::UserDefined) continue;
            const std::string& s = vocab_.text(id);
            next.clear();
            for (const auto& f : frags) {
                if (f.token != kNoToken) {
                    next.push_back(f);
                    continue;
                }
                const std::size_t end = f.offset + f.length;
                std::size_t pos = f.offset;
                for (;;) {
                    const auto m = text.substr(0, end).find(s, pos);
                    if (m == std::string_view::npos) break;
                    if (m > pos) next.push_back({pos, m - pos, kNoToken});
                    next.push_back({m, s.size(), id});
                    pos = m + s.size();
                }
                if (pos < end) next.push_back({pos, end - pos, kNoToken});
            }
            frags.swap(next);
        }
        return frags;
    }

    // A token's bytes when special tokens are not rendered.
    std::string render(std::int32_t id) const {
        const auto& text = vocab_.text(id);
        switch (vocab_.type(id)) {
            case TokenType::Normal:
                if (vocab_.model() == TokenizerModel::Bpe) return gpt2_text_to_bytes(text);
                return unescape_spaces(text);
            case TokenType::UserDefined: return text;
            case TokenType::Byte: {
                // "<0xXX>"; a malformed byte token renders as its text.
                unsigned v = 0;
                if (text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>' && hex(text[3], v) &&
                    hex(text[4], v))
                    return std::string(1, static_cast<char>(v));
                return text;
            }
            default: return {};  // control, unknown, unused, undefined
        }
    }

    static std::string unescape_spaces(std::string_view s) {
        std::string out;
        out.reserve(s.size());
        for (std::size_t i = 0; i < s.size(); ++i) {
            if (s.compare(i, 3, "\xE2\x96\x81") == 0) {
                out.push_back(' ');
                i += 2;
            } else {
                out.push_back(s[i]);
            }
        }
        return out;
    }

    static bool hex(char c, unsigned& v) {
        unsigned d;
        if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
        else if (c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
        else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
        else return false;
        v = v * 16 + d;
        return true;
    }

    Vocab vocab_;
    SpmModel spm_;
    BpeModel bpe_;
    AnyPreTokenizer pre_;
    std::vector<std::string> pieces_;    // (n_vocab,) bytes of each token, special tokens empty
    std::vector<std::int32_t> specials_; // control/unknown/user-defined ids, longest text first
    bool has_user_defined_ = false;
    std::vector<std::int32_t> eog_;      // sorted
};

}  // namespace tandem
