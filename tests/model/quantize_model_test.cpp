// Requantizing a model: every matrix is exactly quantize_row of its
// dequantized rows, norms and metadata are untouched but for the file type,
// rows that cannot take the type are kept (or refused), and the real
// stories260K model's logits move only by quantization error.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <tandem/gguf/quant.hpp>
#include <tandem/gguf/reader.hpp>
#include <tandem/gguf/writer.hpp>
#include <tandem/model/model.hpp>
#include <tandem/model/quantize_model.hpp>
#include <tandem/tokenizer/tokenizer.hpp>

#include "support/paths.hpp"

using namespace tandem;

namespace {


std::uint64_t file_size(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    return static_cast<std::uint64_t>(f.tellg());
}

// The bytes quantize_row writes for `t` converted to `type`, row by row
// through F32: the independent expectation for every converted tensor.
std::vector<std::byte> expected_bytes(const GgufTensorInfo& t, GgmlType type) {
    const auto cols = t.cols();
    std::vector<float> row(static_cast<std::size_t>(cols));
    std::vector<std::byte> out(static_cast<std::size_t>(t.rows() * row_bytes(type, cols)));
    const auto src_rb = row_bytes(t.type, cols), dst_rb = row_bytes(type, cols);
    for (std::uint64_t r = 0; r < t.rows(); ++r) {
        dequantize_row(t.type, t.data.data() + r * src_rb, row.data(), static_cast<std::int64_t>(cols));
        quantize_row(type, row.data(), out.data() + r * dst_rb, static_cast<std::int64_t>(cols));
    }
    return out;
}

// The same model with every tensor dequantized to F32: runs on any engine and
// carries exactly the quantized weights' values.
std::shared_ptr<const Model> dequantized_twin(const GgufFile& q) {
    GgufWriter w;
    for (const auto& [k, v] : q.metadata()) w.set(k, v);
    for (const auto& t : q.tensors()) {
        std::vector<std::byte> bytes(static_cast<std::size_t>(t.n_elements() * sizeof(float)));
        auto* dst = reinterpret_cast<float*>(bytes.data());
        const auto rb = row_bytes(t.type, t.cols());
        for (std::uint64_t r = 0; r < t.rows(); ++r)
            dequantize_row(t.type, t.data.data() + r * rb, dst + r * t.cols(), static_cast<std::int64_t>(t.cols()));
        w.add_tensor(t.name, GgmlType::F32, t.shape, std::move(bytes));
    }
    return Model::from_file(GgufFile::from_owned(w.write_to_memory(), "dequantized"));
}

// Logits (n_tokens, n_vocab) at every position of `tokens`.
Activations forward(const Model& m, const std::vector<std::int32_t>& tokens) {
    ThreadPool pool(2);
    KvStore kv(0, m.config().n_layers, m.config().kv_dim(), m.config().context_length);
    Workspace ws;
    Batch b = Batch::for_sequence(0, tokens, 0);
    b.want_logits.assign(tokens.size(), 1);
    run_blocks(m.arch(), BlockRange::all(m.config()), b, kv, ws, pool);
    return b.logits;
}

std::vector<std::int32_t> story_prompt(const GgufFile& f) {
    return Tokenizer::from_gguf(f).encode("Once upon a time, there was a little girl named Lily. She loved to play", true);
}

// Positions where both logit rows pick the same top token.
double top1_agreement(const Activations& a, const Activations& b) {
    int same = 0;
    for (Eigen::Index r = 0; r < a.rows(); ++r) {
        Eigen::Index ia = 0, ib = 0;
        a.row(r).maxCoeff(&ia);
        b.row(r).maxCoeff(&ib);
        same += ia == ib;
    }
    return static_cast<double>(same) / static_cast<double>(a.rows());
}

}  // namespace

TEST_CASE("quantize: stories260K to Q8_0 and Q4_0 is quantize_row of every matrix, norms and metadata untouched") {
    const auto in = GgufFile::open(test::stories260k());
    const auto dir = test::scratch_dir("quantize");
    for (const auto type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
        CAPTURE(type_name(type));
        const auto out_path = dir + "/out.gguf";
        const auto plan = quantize_model(in, out_path, {type, false, nullptr, {}});
        const auto out = GgufFile::open(out_path);
        CHECK(plan.file_bytes_before == in.file_size());
        CHECK(plan.file_bytes_after == out.file_size());
        CHECK(out.file_size() == file_size(out_path));
        // 48 tensors: 11 norms, 5 ffn_down with rows of 172 (kept F32), 32 matrices quantized.
        CHECK(plan.count(QuantizeAction::Kept1D) == 11);
        CHECK(plan.count(QuantizeAction::KeptRowLength) == 5);
        CHECK(plan.count(QuantizeAction::Quantized) == 32);
        REQUIRE(out.tensors().size() == in.tensors().size());
        for (std::size_t i = 0; i < in.tensors().size(); ++i) {
            const auto& a = in.tensors()[i];
            const auto& b = out.tensors()[i];
            CAPTURE(a.name);
            REQUIRE(b.name == a.name);  // same order
            CHECK(b.shape == a.shape);
            const bool convert = a.shape.size() == 2 && a.cols() % 32 == 0;
            if (convert) {
                REQUIRE(b.type == type);
                const auto want = expected_bytes(a, type);
                REQUIRE(b.n_bytes() == want.size());
                CHECK(std::memcmp(b.data.data(), want.data(), want.size()) == 0);
            } else {
                REQUIRE(b.type == a.type);
                REQUIRE(b.n_bytes() == a.n_bytes());
                CHECK(std::memcmp(b.data.data(), a.data.data(), a.n_bytes()) == 0);
            }
        }
        // Metadata: every key copied with its value, in order, but the file type.
        const std::uint32_t ftype = type == GgmlType::Q8_0 ? 7 : 2;  // LLAMA_FTYPE_MOSTLY_Q8_0 / _Q4_0
        for (std::size_t i = 0; i < in.metadata().size(); ++i) {
            const std::string& key = in.metadata()[i].first;
            CAPTURE(key);
            REQUIRE(out.metadata()[i].first == key);
            CHECK(out.metadata()[i].second == in.metadata()[i].second);
        }
        CHECK(out.get<std::uint32_t>("general.file_type") == ftype);
        CHECK(out.get<std::uint32_t>("general.quantization_version") == 2);
        CHECK(out.metadata().size() == in.metadata().size() + 2);
        // Sizes: Q8_0 takes 34 bytes per 32 weights, Q4_0 18, instead of 128.
        const double ratio = static_cast<double>(plan.tensor_bytes_after()) / static_cast<double>(plan.tensor_bytes_before());
        CHECK(ratio < (type == GgmlType::Q8_0 ? 0.45 : 0.35));
    }
}

TEST_CASE("quantize: quantized sources are dequantized first; the target type is copied as is") {
    const auto in = GgufFile::open(test::stories260k());
    const auto dir = test::scratch_dir("quantize-requant");
    ThreadPool pool(2);
    quantize_model(in, dir + "/q8.gguf", {GgmlType::Q8_0, false, &pool, {}});
    const auto q8 = GgufFile::open(dir + "/q8.gguf");

    // Q8_0 -> Q4_0: rows go through dequantize_row(Q8_0).
    const auto plan = quantize_model(q8, dir + "/q4.gguf", {GgmlType::Q4_0, false, &pool, {}});
    const auto q4 = GgufFile::open(dir + "/q4.gguf");
    CHECK(plan.count(QuantizeAction::Quantized) == 32);
    for (const auto& t : q8.tensors()) {
        if (t.type != GgmlType::Q8_0) continue;
        CAPTURE(t.name);
        const auto& u = q4.tensor(t.name);
        REQUIRE(u.type == GgmlType::Q4_0);
        const auto want = expected_bytes(t, GgmlType::Q4_0);
        CHECK(std::memcmp(u.data.data(), want.data(), want.size()) == 0);
    }
    CHECK(q4.get<std::uint32_t>("general.file_type") == 2);

    // Q8_0 -> Q8_0: nothing to requantize, the bytes stay.
    const auto same = quantize_model(q8, dir + "/q8b.gguf", {GgmlType::Q8_0, false, nullptr, {}});
    CHECK(same.count(QuantizeAction::Copied) == 32);
    CHECK(same.count(QuantizeAction::Quantized) == 0);
    const auto q8b = GgufFile::open(dir + "/q8b.gguf");
    for (const auto& t : q8.tensors())
        CHECK(std::memcmp(q8b.tensor(t.name).data.data(), t.data.data(), t.n_bytes()) == 0);

    // Back to F16: a float target drops the quantization version.
    quantize_model(q8, dir + "/f16.gguf", {GgmlType::F16, false, nullptr, {}});
    const auto f16 = GgufFile::open(dir + "/f16.gguf");
    CHECK(f16.get<std::uint32_t>("general.file_type") == 1);
    CHECK_FALSE(f16.contains("general.quantization_version"));
    CHECK(f16.tensor("blk.0.ffn_up.weight").type == GgmlType::F16);
    CHECK(f16.tensor("blk.0.ffn_down.weight").type == GgmlType::F16);  // F32 in q8; F16 takes rows of any length
    CHECK(f16.tensor("blk.0.ffn_norm.weight").type == GgmlType::F32);  // 1-D: kept
}

TEST_CASE("quantize: strict mode refuses rows that are not whole blocks; bad requests are refused") {
    const auto in = GgufFile::open(test::stories260k());
    const auto dir = test::scratch_dir("quantize-strict");
    try {
        quantize_model(in, dir + "/x.gguf", {GgmlType::Q8_0, true, nullptr, {}});
        FAIL("strict quantization of rows of 172 succeeded");
    } catch (const ConfigError& e) {
        CHECK(std::string(e.what()).find("blk.0.ffn_down.weight") != std::string::npos);
        CHECK(std::string(e.what()).find("172") != std::string::npos);
    }
    std::ifstream gone(dir + "/x.gguf");
    CHECK_FALSE(gone.good());  // nothing written
    // Targets without a quantizer or a single llama file type.
    CHECK_THROWS_AS(plan_quantize(in, {GgmlType::Q4_K, false, nullptr, {}}), ConfigError);
    CHECK_THROWS_AS(plan_quantize(in, {GgmlType::IQ2_XXS, false, nullptr, {}}), ConfigError);
    // A matrix tandem cannot dequantize.
    GgufWriter w;
    w.set("general.architecture", "llama");
    w.add_tensor("w", GgmlType::IQ2_XXS, {256, 2}, std::vector<std::byte>(2 * 66));
    const auto image = w.write_to_memory();
    CHECK_THROWS_AS(plan_quantize(GgufFile::from_memory(image), {GgmlType::Q8_0, false, nullptr, {}}), UnsupportedError);
}

TEST_CASE("quantize: llama file types are llama.cpp's") {
    CHECK(llama_file_type(GgmlType::F32) == 0u);
    CHECK(llama_file_type(GgmlType::F16) == 1u);
    CHECK(llama_file_type(GgmlType::Q4_0) == 2u);
    CHECK(llama_file_type(GgmlType::Q4_1) == 3u);
    CHECK(llama_file_type(GgmlType::Q8_0) == 7u);
    CHECK(llama_file_type(GgmlType::Q5_0) == 8u);
    CHECK(llama_file_type(GgmlType::Q5_1) == 9u);
    CHECK(llama_file_type(GgmlType::Q6_K) == 18u);
    CHECK(llama_file_type(GgmlType::BF16) == 32u);
    CHECK_FALSE(llama_file_type(GgmlType::Q4_K).has_value());
}

TEST_CASE("quantize: stories260K's logits move only by quantization error") {
    // The quantized weights' values, run through the F32 engine: the effect of
    // weight quantization alone on the real model, at every position of a prompt.
    // Measured: relative L2 error of the logits 0.0063 (Q8_0), 0.107 (Q4_0),
    // the top token unchanged at every position; bounds 0.02 and 0.2.
    const auto in = GgufFile::open(test::stories260k());
    const auto dir = test::scratch_dir("quantize-logits");
    const auto prompt = story_prompt(in);
    const auto ref = forward(*Model::open(test::stories260k()), prompt);
    for (const auto& [type_, tol, agree] : {std::tuple{GgmlType::Q8_0, 0.02, 0.95}, std::tuple{GgmlType::Q4_0, 0.2, 0.8}}) {
        const GgmlType type = type_;  // (clang 14 cannot capture structured bindings)
        CAPTURE(type_name(type));
        quantize_model(in, dir + "/q.gguf", {type, false, nullptr, {}});
        const auto q = GgufFile::open(dir + "/q.gguf");
        const auto logits = forward(*dequantized_twin(q), prompt);
        const double rel = (logits - ref).norm() / ref.norm();
        MESSAGE(type_name(type), ": relative L2 error ", rel, ", top-1 agreement ", top1_agreement(logits, ref));
        CHECK(rel < tol);
        CHECK(rel > 0.0);  // the weights did change
        CHECK(top1_agreement(logits, ref) >= agree);
    }
}

TEST_CASE("quantize: the quantized stories260K runs on the engine's kernels close to F32") {
    // As above, but through the quantized matmul kernels, which also quantize
    // the activations to Q8_0. Measured with the kernels swapped in by hand:
    // 0.0072 (Q8_0), 0.109 (Q4_0), top token unchanged; bounds 0.03 and 0.2.
    const auto in = GgufFile::open(test::stories260k());
    const auto dir = test::scratch_dir("quantize-kernels");
    const auto prompt = story_prompt(in);
    const auto ref = forward(*Model::open(test::stories260k()), prompt);
    for (const auto& [type_, tol, agree] : {std::tuple{GgmlType::Q8_0, 0.03, 0.95}, std::tuple{GgmlType::Q4_0, 0.2, 0.8}}) {
        const GgmlType type = type_;
        CAPTURE(type_name(type));
        quantize_model(in, dir + "/q.gguf", {type, false, nullptr, {}});
        const auto logits = forward(*Model::open(dir + "/q.gguf"), prompt);
        const double rel = (logits - ref).norm() / ref.norm();
        MESSAGE(type_name(type), " kernels: relative L2 error ", rel, ", top-1 agreement ", top1_agreement(logits, ref));
        CHECK(rel < tol);
        CHECK(top1_agreement(logits, ref) >= agree);
    }
}
