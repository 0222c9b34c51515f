// StreamDecoder: text out as token ids arrive, one at a time, during generation.
//
// A token's bytes need not end on a character boundary: an emoji can arrive as
// four byte-fallback tokens <0xF0> <0x9F> <0x98> <0x81>, and a byte-level BPE
// token can hold half of a CJK character. push() returns only text that is
// complete, holding back a trailing UTF-8 sequence that still waits for its
// continuation bytes; flush() returns what is left at the end. Bytes that can
// never become valid UTF-8 are passed through rather than held, so the
// concatenation of everything returned equals Tokenizer::decode of the same ids.
//
//   StreamDecoder out(tok);
//   for (id : generated) std::cout << out.push(id);
//   std::cout << out.flush();
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tandem/tokenizer/tokenizer.hpp"
#include "tandem/tokenizer/unicode.hpp"

namespace tandem {

class StreamDecoder {
public:
    /// `tokenizer` must outlive the decoder.
    /// `sequence_start`: the ids begin a sequence, so a SentencePiece dummy
    /// prefix space on the first token (after an optional BOS) is dropped, as
    /// decode() does. Pass false when continuing after a prompt.
    explicit StreamDecoder(const Tokenizer& tokenizer, bool sequence_start = true, bool render_special = false)
        : tok_(&tokenizer), render_special_(render_special) {
        reset(sequence_start);
    }

    /// Feeds one id; returns the text it completes (possibly empty).
    /// Throws KeyError for an id outside the vocabulary.
    std::string push(std::int32_t id) {
        std::string_view piece = tok_->token_to_piece(id, render_special_);
        const bool leading_bos = first_ && id == tok_->bos() && id != kNoToken;
        first_ = false;
        if (!leading_bos && strip_) {
            if (!piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
            strip_ = false;
        }
        pending_.append(piece);
        const std::size_t ready = pending_.size() - utf8_incomplete_tail(pending_);
        std::string out = pending_.substr(0, ready);
        pending_.erase(0, ready);
        return out;
    }

    /// Returns the bytes still held (an unfinished UTF-8 sequence, passed on
    /// as it is) and starts over as a continuation (no prefix stripping).
    std::string flush() {
        std::string out;
        out.swap(pending_);
        first_ = false;
        strip_ = false;
        return out;
    }

    /// Forgets held bytes and starts a new sequence.
    void reset(bool sequence_start = true) {
        pending_.clear();
        first_ = true;
        strip_ = sequence_start && tok_->strips_prefix_space();
    }

    /// Bytes currently held back (0..3).
    std::size_t pending() const noexcept { return pending_.size(); }

private:
    const Tokenizer* tok_;
    bool render_special_;
    bool first_ = true;   // no id seen yet (a BOS here keeps the prefix rule armed)
    bool strip_ = false;  // the next content token loses a leading space
    std::string pending_;
};

}  // namespace tandem
