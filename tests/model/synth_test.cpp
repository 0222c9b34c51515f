// Synthetic models: deterministic bytes, the layout the engine reads (checked
// against the real stories260K file), sane values, a forward pass that stays
// finite, the real tokenizer (the shipped llama.cpp vectors), and parameter
// totals equal to the published ones.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include <tandem/gguf/quant.hpp>
#include <tandem/gguf/reader.hpp>
#include <tandem/model/config.hpp>
#include <tandem/model/model.hpp>
#include <tandem/model/synth.hpp>
#include <tandem/tokenizer/tokenizer.hpp>

#include "support/paths.hpp"
#include "tokenizer/tokenizer_support.hpp"

using namespace tandem;

namespace {


const std::string kSpm = test::model_path("vocab/ggml-vocab-llama-spm.gguf");
const std::string kGpt2 = test::model_path("vocab/ggml-vocab-gpt-2.gguf");

SynthShape small_shape() {
    SynthShape s;
    s.name = "custom";
    s.dim = 64;
    s.ffn_dim = 96;
    s.n_layers = 2;
    s.n_heads = 4;
    s.n_kv_heads = 2;
    s.n_vocab = 32000;
    s.context_length = 256;
    return s;
}

std::vector<char> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::vector<float> tensor_floats(const GgufTensorInfo& t) {
    std::vector<float> out(static_cast<std::size_t>(t.n_elements()));
    const auto rb = static_cast<std::size_t>(row_bytes(t.type, t.cols()));
    for (std::uint64_t r = 0; r < t.rows(); ++r)
        dequantize_row(t.type, t.data.data() + r * rb, out.data() + r * t.cols(), static_cast<std::int64_t>(t.cols()));
    return out;
}

// Logits (n_tokens, n_vocab) of a whole prompt, every position.
Activations forward(const Model& m, const std::vector<std::int32_t>& tokens) {
    ThreadPool pool(2);
    KvStore kv(0, m.config().n_layers, m.config().kv_dim(), m.config().context_length);
    Workspace ws;
    Batch b = Batch::for_sequence(0, tokens, 0);
    b.want_logits.assign(tokens.size(), 1);
    run_blocks(m.arch(), BlockRange::all(m.config()), b, kv, ws, pool);
    return b.logits;
}

void check_sane_logits(const Activations& logits, std::int64_t n_vocab) {
    REQUIRE(logits.cols() == n_vocab);
    for (Eigen::Index r = 0; r < logits.rows(); ++r) {
        double sum = 0, sq = 0;
        for (Eigen::Index c = 0; c < logits.cols(); ++c) {
            const float v = logits(r, c);
            REQUIRE(std::isfinite(v));
            sum += v;
            sq += static_cast<double>(v) * v;
        }
        const double mean = sum / static_cast<double>(n_vocab);
        const double sd = std::sqrt(sq / static_cast<double>(n_vocab) - mean * mean);
        // Unit-variance hidden state through a head of deviation 1/sqrt(dim): logits ~ N(0, ~1).
        CHECK(sd > 0.1);
        CHECK(sd < 10.0);
    }
}

}  // namespace

TEST_CASE("synth: the same arguments give byte-identical files, whatever the thread count") {
    const auto dir = test::scratch_dir("synth-determinism");
    const auto spm = GgufFile::open(kSpm);
    const auto stories = GgufFile::open(test::stories260k());
    ThreadPool pool(3);
    for (const auto type : {GgmlType::F32, GgmlType::Q8_0, GgmlType::Q4_0}) {
        CAPTURE(type_name(type));
        for (const auto& [shape_, vocab] : {std::pair{small_shape(), &spm}, std::pair{find_synth_shape("stories260K"), &stories}}) {
            const SynthShape& shape = shape_;  // (clang 14 cannot capture structured bindings)
            CAPTURE(shape.name);
            const auto a = dir + "/a.gguf", b = dir + "/b.gguf";
            const auto sa = write_synth_model(a, shape, *vocab, {type, 7, nullptr, {}});
            const auto sb = write_synth_model(b, shape, *vocab, {type, 7, &pool, {}});
            const auto ba = read_bytes(a), bb = read_bytes(b);
            REQUIRE(ba.size() == sa.file_bytes);
            CHECK(ba == bb);
            // In memory, the same bytes again.
            const auto mem = make_synth_writer(shape, *vocab, {type, 7, &pool, {}}).write_to_memory();
            REQUIRE(mem.size() == ba.size());
            CHECK(std::memcmp(mem.data(), ba.data(), ba.size()) == 0);
            // Another seed: same layout, other weights.
            const auto other = make_synth_writer(shape, *vocab, {type, 8, nullptr, {}}).write_to_memory();
            REQUIRE(other.size() == mem.size());
            CHECK(std::memcmp(other.data(), mem.data(), mem.size()) != 0);
        }
    }
}

TEST_CASE("synth: the stories260K shape has the real file's configuration and tensors") {
    const auto real = GgufFile::open(test::stories260k());
    const auto image = make_synth_writer(find_synth_shape("stories260K"), real, {GgmlType::F32, 0, nullptr, {}}).write_to_memory();
    const auto synth = GgufFile::from_memory(image, "synth");
    const auto a = read_config(real), b = read_config(synth);
    CHECK(b.architecture == a.architecture);
    CHECK(b.dim == a.dim);
    CHECK(b.n_layers == a.n_layers);
    CHECK(b.n_heads == a.n_heads);
    CHECK(b.n_kv_heads == a.n_kv_heads);
    CHECK(b.head_dim == a.head_dim);
    CHECK(b.ffn_dim == a.ffn_dim);
    CHECK(b.n_vocab == a.n_vocab);
    CHECK(b.rope_dims == a.rope_dims);
    CHECK(b.rope_freq_base == a.rope_freq_base);
    CHECK(b.norm_eps == a.norm_eps);
    CHECK(b.tied_output == a.tied_output);
    CHECK(b.context_length == 512);  // llama2.c's max_seq_len (the converted file says 2048)
    // The same tensors with the same shapes and types (all F32 here).
    REQUIRE(synth.tensors().size() == real.tensors().size());
    for (const auto& t : real.tensors()) {
        CAPTURE(t.name);
        const auto* s = synth.find_tensor(t.name);
        REQUIRE(s != nullptr);
        CHECK(s->shape == t.shape);
        CHECK(s->type == t.type);
    }
    // The parameter count is the real file's element count.
    std::uint64_t elements = 0;
    for (const auto& t : real.tensors()) elements += t.n_elements();
    CHECK(synth_parameter_count(find_synth_shape("stories260K")) == elements);
    // The tokenizer metadata is the real file's, value for value.
    for (const auto& kv : real.metadata()) {
        const std::string& key = kv.first;
        if (key.rfind("tokenizer.", 0) != 0) continue;
        CAPTURE(key);
        REQUIRE(synth.find(key) != nullptr);
        CHECK(*synth.find(key) == kv.second);
    }
}

TEST_CASE("synth: metadata, tensor types and shapes are what the engine reads") {
    const auto spm = GgufFile::open(kSpm);
    auto shape = small_shape();
    shape.rope_freq_base = 500000.0f;
    shape.tied_output = true;
    const auto image = make_synth_writer(shape, spm, {GgmlType::Q8_0, 0, nullptr, {}}).write_to_memory();
    const auto f = GgufFile::from_memory(image, "synth");
    const auto c = read_config(f);
    CHECK(c.architecture == "llama");
    CHECK(c.dim == 64);
    CHECK(c.ffn_dim == 96);
    CHECK(c.n_layers == 2);
    CHECK(c.n_heads == 4);
    CHECK(c.n_kv_heads == 2);
    CHECK(c.head_dim == 16);
    CHECK(c.rope_dims == 16);
    CHECK(c.n_vocab == 32000);
    CHECK(c.context_length == 256);
    CHECK(c.rope_freq_base == 500000.0f);
    CHECK(c.tied_output);
    CHECK(f.get<std::uint32_t>("general.file_type") == 7);  // LLAMA_FTYPE_MOSTLY_Q8_0
    CHECK(f.get<std::uint32_t>("general.quantization_version") == 2);
    CHECK(f.find_tensor("output.weight") == nullptr);
    // Layer tensors as llama.hpp binds them: [cols, rows] in ggml order.
    const std::pair<const char*, std::vector<std::uint64_t>> expect[] = {
        {"token_embd.weight", {64, 32000}},     {"blk.1.attn_q.weight", {64, 64}},  {"blk.1.attn_k.weight", {64, 32}},
        {"blk.1.attn_v.weight", {64, 32}},      {"blk.1.attn_output.weight", {64, 64}},
        {"blk.1.ffn_gate.weight", {64, 96}},    {"blk.1.ffn_up.weight", {64, 96}},  {"blk.1.ffn_down.weight", {96, 64}},
    };
    for (const auto& e : expect) {
        const char* name = e.first;
        CAPTURE(name);
        const auto& t = f.tensor(name);
        CHECK(t.shape == e.second);
        CHECK(t.type == GgmlType::Q8_0);
    }
    for (const char* name : {"blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "output_norm.weight"}) {
        CAPTURE(name);
        CHECK(f.tensor(name).type == GgmlType::F32);
        CHECK(f.tensor(name).shape == std::vector<std::uint64_t>{64});
    }
    // Rows that are not whole Q8_0 blocks stay F32 (stories260K's ffn_down: rows of 172).
    SynthSummary sum;
    const auto stories = GgufFile::open(test::stories260k());
    const auto img2 = make_synth_writer(find_synth_shape("stories260K"), stories, {GgmlType::Q8_0, 0, nullptr, {}}, &sum).write_to_memory();
    const auto g = GgufFile::from_memory(img2, "synth");
    CHECK(g.tensor("blk.3.ffn_down.weight").type == GgmlType::F32);
    CHECK(g.tensor("blk.3.ffn_up.weight").type == GgmlType::Q8_0);
    CHECK(sum.kept_f32.size() == 5);
    CHECK(sum.file_bytes == img2.size());
}

TEST_CASE("synth: weights have mean 0 and deviation 1/sqrt(row length); norms are 1") {
    const auto spm = GgufFile::open(kSpm);
    auto shape = small_shape();
    shape.ffn_dim = 256;
    const auto image = make_synth_writer(shape, spm, {GgmlType::F32, 0, nullptr, {}}).write_to_memory();
    const auto f = GgufFile::from_memory(image, "synth");
    for (const char* name : {"token_embd.weight", "blk.0.ffn_up.weight", "blk.1.ffn_down.weight", "output.weight"}) {
        CAPTURE(name);
        const auto& t = f.tensor(name);
        const auto v = tensor_floats(t);
        const double sigma = 1.0 / std::sqrt(static_cast<double>(t.cols()));
        double sum = 0, sq = 0, mx = 0;
        for (float x : v) {
            sum += x;
            sq += static_cast<double>(x) * x;
            mx = std::max(mx, std::fabs(static_cast<double>(x)));
        }
        const double n = static_cast<double>(v.size());
        const double mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
        CHECK(std::fabs(mean) < 5.0 * sigma / std::sqrt(n));
        CHECK(sd == doctest::Approx(sigma).epsilon(5.0 / std::sqrt(n) + 0.002));
        CHECK(mx <= 3.4642 * sigma);  // Irwin-Hall(4): |x| <= 2 sqrt(3) sigma
        CHECK(mx > 2.5 * sigma);      // ... and the tails are there
        // Consecutive rows are independent streams: correlation near 0.
        const auto cols = static_cast<std::size_t>(t.cols());
        double dot = 0;
        for (std::size_t i = 0; i < std::min<std::size_t>(cols * 64, v.size() - cols); ++i) dot += v[i] * v[i + cols];
        const double m = static_cast<double>(std::min<std::size_t>(cols * 64, v.size() - cols));
        CHECK(std::fabs(dot / m) < 5.0 * sigma * sigma / std::sqrt(m));
    }
    // Two tensors of the same shape differ (seeded by name).
    CHECK(tensor_floats(f.tensor("blk.0.attn_q.weight")) != tensor_floats(f.tensor("blk.1.attn_q.weight")));
    for (const char* name : {"blk.0.attn_norm.weight", "blk.1.ffn_norm.weight", "output_norm.weight"})
        for (float x : tensor_floats(f.tensor(name))) REQUIRE(x == 1.0f);
}

TEST_CASE("synth: quantized weights are quantize_row of the F32 weights of the same seed") {
    const auto stories = GgufFile::open(test::stories260k());
    const auto& shape = find_synth_shape("stories260K");
    const auto f32_image = make_synth_writer(shape, stories, {GgmlType::F32, 3, nullptr, {}}).write_to_memory();
    const auto f32 = GgufFile::from_memory(f32_image, "f32");
    for (const auto type : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16}) {
        CAPTURE(type_name(type));
        const auto q_image = make_synth_writer(shape, stories, {type, 3, nullptr, {}}).write_to_memory();
        const auto q = GgufFile::from_memory(q_image, "q");
        for (const auto& t : f32.tensors()) {
            CAPTURE(t.name);
            const auto& u = q.tensor(t.name);
            if (u.type == GgmlType::F32) {
                CHECK(std::memcmp(u.data.data(), t.data.data(), t.n_bytes()) == 0);
                continue;
            }
            std::vector<std::byte> want(u.n_bytes());
            const auto* src = reinterpret_cast<const float*>(t.data.data());
            const auto rb = row_bytes(type, t.cols());
            for (std::uint64_t r = 0; r < t.rows(); ++r)
                quantize_row(type, src + r * t.cols(), want.data() + r * rb, static_cast<std::int64_t>(t.cols()));
            CHECK(std::memcmp(u.data.data(), want.data(), want.size()) == 0);
        }
    }
}

TEST_CASE("synth: an F32 model loads and its forward pass gives finite, sane logits") {
    const auto dir = test::scratch_dir("synth-forward");
    const auto spm = GgufFile::open(kSpm);
    const auto stories = GgufFile::open(test::stories260k());
    const std::vector<std::int32_t> prompt = {1, 400, 29, 7, 300, 12, 99, 5, 250, 3};
    for (const auto& [shape_, vocab] : {std::pair{small_shape(), &spm}, std::pair{find_synth_shape("stories260K"), &stories}}) {
        const SynthShape& shape = shape_;
        CAPTURE(shape.name);
        const auto path = dir + "/f32.gguf";
        write_synth_model(path, shape, *vocab, {GgmlType::F32, 0, nullptr, {}});
        const auto model = Model::open(path);
        check_sane_logits(forward(*model, prompt), shape.n_vocab);
    }
}

TEST_CASE("synth: quantized models run and stay close to their F32 twin") {
    // The Q8_0 / Q4_0 files of one seed are the F32 file's weights quantized,
    // so their logits differ from it by quantization error only. Random
    // weights have no structure to hide it in: measured relative L2 errors
    // (with the kernels swapped in by hand) 0.023 (Q8_0) and 0.29 (Q4_0);
    // bounds 0.06 and 0.45.
    const auto dir = test::scratch_dir("synth-forward-q");
    const auto spm = GgufFile::open(kSpm);
    const std::vector<std::int32_t> prompt = {1, 400, 29, 7, 300, 12, 99, 5, 250, 3};
    auto shape = small_shape();
    write_synth_model(dir + "/f32.gguf", shape, spm, {GgmlType::F32, 0, nullptr, {}});
    const auto ref = forward(*Model::open(dir + "/f32.gguf"), prompt);
    for (const auto& [type_, tol] : {std::pair{GgmlType::Q8_0, 0.06}, std::pair{GgmlType::Q4_0, 0.45}}) {
        const GgmlType type = type_;
        CAPTURE(type_name(type));
        write_synth_model(dir + "/q.gguf", shape, spm, {type, 0, nullptr, {}});
        const auto logits = forward(*Model::open(dir + "/q.gguf"), prompt);
        check_sane_logits(logits, shape.n_vocab);
        const double rel = (logits - ref).norm() / ref.norm();
        MESSAGE(type_name(type), ": relative L2 error ", rel);
        CHECK(rel < tol);
    }
}

TEST_CASE("synth: the tokenizer is the real one (llama.cpp's vectors pass on the synthetic file)") {
    SUBCASE("SentencePiece, as is") {
        const auto spm = GgufFile::open(kSpm);
        const auto image = make_synth_writer(small_shape(), spm, {GgmlType::Q8_0, 0, nullptr, {}}).write_to_memory();
        const auto f = GgufFile::from_memory(image, "synth");
        const auto tok = Tokenizer::from_gguf(f);
        const auto vectors = test::read_vocab_vectors(kSpm);
        REQUIRE(vectors.size() > 10);
        for (const auto& v : vectors) {
            CAPTURE(v.input);
            const auto ids = tok.encode(v.input, false);
            CHECK(ids == v.ids);
            CHECK(tok.decode(ids) == v.input);
        }
        CHECK(tok.encode("Hello world", true) == Tokenizer::from_gguf(spm).encode("Hello world", true));
        CHECK(f.get<std::vector<std::string>>("tokenizer.ggml.tokens") == spm.get<std::vector<std::string>>("tokenizer.ggml.tokens"));
    }
    SUBCASE("GPT-2 BPE padded to the Llama 3 vocabulary size") {
        const auto gpt2 = GgufFile::open(kGpt2);
        auto shape = small_shape();
        shape.n_vocab = 128256;
        SynthSummary sum;
        const auto image = make_synth_writer(shape, gpt2, {GgmlType::Q8_0, 0, nullptr, {}}, &sum).write_to_memory();
        const auto f = GgufFile::from_memory(image, "synth");
        CHECK(sum.tokenizer_tokens == 50257);
        CHECK(f.get<std::string>("general.name").find("padded from 50257 to 128256") != std::string::npos);
        CHECK(read_config(f).n_vocab == 128256);
        CHECK(f.tensor("token_embd.weight").shape == std::vector<std::uint64_t>{64, 128256});
        const auto tok = Tokenizer::from_gguf(f);
        CHECK(tok.vocab().n_tokens() == 128256);
        CHECK(tok.vocab().text(50256) == "<|endoftext|>");
        CHECK(tok.vocab().text(50257) == "[PAD50257]");
        CHECK(tok.vocab().text(128255) == "[PAD128255]");
        CHECK(tok.vocab().type(128255) == TokenType::Unused);
        CHECK(tok.vocab().type(1000) == TokenType::Normal);
        const auto vectors = test::read_vocab_vectors(kGpt2);
        REQUIRE(vectors.size() > 10);
        for (const auto& v : vectors) {
            CAPTURE(v.input);
            const auto ids = tok.encode(v.input, false);
            CHECK(ids == v.ids);
            CHECK(tok.decode(ids) == v.input);
        }
        // Padding is never produced by text.
        for (auto id : tok.encode("[PAD50257] and [PAD128255]", false, true)) CHECK(id < 50257);
    }
}

TEST_CASE("synth: named shapes have the published parameter totals") {
    // Totals of the released checkpoints (Hugging Face safetensors counts).
    const std::pair<const char*, std::uint64_t> published[] = {
        {"tinyllama-1.1b", 1100048384ull},  // ~1.10B
        {"llama-3.2-1b", 1235814400ull},    // ~1.24B (tied head)
        {"llama-3.2-3b", 3212749824ull},    // ~3.21B (tied head)
        {"llama-3-8b", 8030261248ull},      // ~8.03B
    };
    for (const auto& [name_, total] : published) {
        const char* name = name_;
        CAPTURE(name);
        const auto& s = find_synth_shape(name);
        CHECK(synth_parameter_count(s) == total);
        CHECK(s.published_parameters == total);
    }
    // Real shapes: head dims and Llama 3's vocabulary.
    CHECK(find_synth_shape("llama-3.2-3b").head_dim() == 128);
    CHECK(find_synth_shape("llama-3.2-1b").head_dim() == 64);
    CHECK(find_synth_shape("llama-3-8b").n_vocab == 128256);
    CHECK(find_synth_shape("TinyLlama-1.1B").name == "tinyllama-1.1b");  // case-insensitive
    CHECK_THROWS_AS(find_synth_shape("gpt-5"), ConfigError);
}

TEST_CASE("synth: the file size is known before writing, without generating any weight") {
    const auto spm = GgufFile::open(kSpm);
    SynthSummary sum;
    // tinyllama-1.1b in Q8_0: only the metadata is built here.
    const auto w = make_synth_writer(find_synth_shape("tinyllama-1.1b"), spm, {GgmlType::Q8_0, 0, nullptr, {}}, &sum);
    CHECK(w.tensor_count() == 201);  // 22 layers x 9 + embedding, final norm, head
    CHECK(sum.parameters == 1100048384ull);
    CHECK(sum.kept_f32.empty());
    // Q8_0 stores 34 bytes per 32 weights; norms (F32) and the header on top.
    const std::uint64_t norms = (22 * 2 + 1) * 2048;
    const std::uint64_t weights = 1100048384ull - norms;
    CHECK(sum.file_bytes > weights / 32 * 34 + norms * 4);
    CHECK(sum.file_bytes < weights / 32 * 34 + norms * 4 + (4u << 20));
}

TEST_CASE("synth: impossible shapes, tokenizers and types are refused") {
    const auto spm = GgufFile::open(kSpm);
    auto bad = small_shape();
    bad.n_heads = 5;  // 64 % 5 != 0
    CHECK_THROWS_AS(make_synth_writer(bad, spm, {}), ConfigError);
    bad = small_shape();
    bad.n_kv_heads = 3;  // 4 % 3 != 0
    CHECK_THROWS_AS(make_synth_writer(bad, spm, {}), ConfigError);
    bad = small_shape();
    bad.n_layers = 0;
    CHECK_THROWS_AS(make_synth_writer(bad, spm, {}), ConfigError);
    bad = small_shape();
    bad.n_vocab = 1000;  // fewer than the tokenizer's 32000 tokens
    CHECK_THROWS_AS(make_synth_writer(bad, spm, {}), ConfigError);
    CHECK_THROWS_AS(make_synth_writer(small_shape(), spm, {GgmlType::Q4_K, 0, nullptr, {}}), ConfigError);
    // A file without a tokenizer.
    GgufWriter no_tok;
    no_tok.set("general.architecture", "llama");
    const auto image = no_tok.write_to_memory();
    CHECK_THROWS_AS(make_synth_writer(small_shape(), GgufFile::from_memory(image), {}), ConfigError);
}
