// The real stories260K model reproduces llama2.c's greedy text exactly.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include <tandem/model/model.hpp>
#include <tandem/model/sampler.hpp>

#include "support/paths.hpp"

using namespace tandem;

namespace {
std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// llama2.c's decode: '▁' is a space, <0xXX> a raw byte, and the space after BOS is dropped.
std::string piece(const std::vector<std::string>& vocab, std::int32_t prev, std::int32_t id) {
    std::string p = vocab[static_cast<std::size_t>(id)];
    if (p.size() == 6 && p.rfind("<0x", 0) == 0 && p.back() == '>') return std::string(1, static_cast<char>(std::stoi(p.substr(3, 2), nullptr, 16)));
    std::string out;
    for (std::size_t i = 0; i < p.size();) {
        if (p.compare(i, 3, "\xe2\x96\x81") == 0) {
            out += ' ';
            i += 3;
        } else {
            out += p[i++];
        }
    }
    if (prev == 1 && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
}
}  // namespace

TEST_CASE("model: stories260K greedy text equals llama2.c's") {
    const auto model = Model::open(test::stories260k());
    const auto vocab = model->file().get<std::vector<std::string>>("tokenizer.ggml.tokens");
    ThreadPool pool(2);
    KvStore kv(0, model->config().n_layers, model->config().kv_dim(), model->config().context_length);
    Workspace ws;
    Sampler sampler;
    std::int32_t token = 1;  // BOS
    std::string text;
    for (std::int32_t pos = 0; pos < 120; ++pos) {
        Batch b = Batch::for_sequence(0, std::span(&token, 1), pos);
        run_blocks(model->arch(), BlockRange::all(model->config()), b, kv, ws, pool);
        const std::int32_t next = sampler.sample(std::span<const float>(b.logits.data(), static_cast<std::size_t>(b.logits.cols())));
        if (next == 1) break;
        text += piece(vocab, token, next);
        token = next;
    }
    // The file is run.c's stdout: the text, then the newline run.c prints at the
    // end (and one more from capturing it); the generated text itself ends in "but".
    auto golden = read_text(test::model_path("stories260K.greedy.txt"));
    while (!golden.empty() && golden.back() == '\n') golden.pop_back();
    CHECK(text == golden);
}
