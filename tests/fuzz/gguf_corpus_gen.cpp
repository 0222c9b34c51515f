// Writes the small crafted GGUF seeds of tests/fuzz/corpus/gguf/ with GgufWriter:
// every value type, nested and empty arrays, v2 and v3, unusual alignments, and
// one valid tensor of every type the reader knows (quantized ones from real
// reference quantization, so dequantization paths are reached from the start).
// Usage: gguf_corpus_gen OUT_DIR
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <tandem/gguf/quant.hpp>
#include <tandem/gguf/writer.hpp>

using namespace tandem;

namespace {

std::vector<std::byte> quantized(GgmlType type, std::uint64_t cols, std::uint64_t rows) {
    std::vector<float> x(cols * rows);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i) * 0.37f) * 2.0f;
    std::vector<std::byte> out(row_bytes(type, cols) * rows);
    if (can_quantize(type)) {
        quantize_row(type, x.data(), out.data(), static_cast<std::int64_t>(x.size()));
    } else {
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>((i * 37 + 11) & 0x3f);
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    try {
        {
            GgufWriter w;  // nothing at all
            w.write(dir + "/empty-v3.gguf");
            w.set_version(2);
            w.write(dir + "/empty-v2.gguf");
        }
        {
            GgufWriter w;
            w.set("general.architecture", "llama");
            w.set("u8", std::uint8_t{7});
            w.set("i8", std::int8_t{-7});
            w.set("u16", std::uint16_t{700});
            w.set("i16", std::int16_t{-700});
            w.set("u32", std::uint32_t{70000});
            w.set("i32", std::int32_t{-70000});
            w.set("f32", 0.5f);
            w.set("bool", true);
            w.set("u64", std::uint64_t{1} << 40);
            w.set("i64", -(std::int64_t{1} << 40));
            w.set("f64", 0.25);
            w.set("nan", std::nanf(""));
            w.set("arr.u32", make_array(std::vector<std::uint32_t>{1, 2, 3}));
            w.set("arr.empty", make_array(GgufValueType::STRING, {}));
            w.set("arr.bool", make_array(GgufValueType::BOOL, {true, false}));
            w.set("arr.arr", make_array(GgufValueType::ARRAY, {make_array(std::vector<std::string>{"a", "b"}),
                                                               make_array(std::vector<std::string>{})}));
            w.write(dir + "/values.gguf");
        }
        {
            GgufWriter w;  // a tokenizer-shaped file
            w.set("tokenizer.ggml.model", "llama");
            w.set("tokenizer.ggml.tokens", make_array(std::vector<std::string>{"<unk>", "<s>", "</s>", "a", "b"}));
            w.set("tokenizer.ggml.scores", make_array(std::vector<float>{0, 0, 0, -1, -2}));
            w.set("tokenizer.ggml.token_type", make_array(std::vector<std::int32_t>{2, 3, 3, 1, 1}));
            w.set("tokenizer.ggml.bos_token_id", std::uint32_t{1});
            w.write(dir + "/tokenizer.gguf");
        }
        // One tensor of each type, several types per file to keep files small.
        int file = 0;
        GgufWriter w;
        for (const auto& t : kGgmlTypes) {
            w.add_tensor(std::string(t.name) + ".weight", t.type, {t.block_size, 2}, quantized(t.type, t.block_size, 2));
            if (w.tensor_count() == 4) {
                w.set("general.alignment", std::uint32_t{file % 2 ? 64u : 32u});
                w.write(dir + "/tensors-" + std::to_string(file++) + ".gguf");
                w = GgufWriter{};
            }
        }
        if (w.tensor_count() > 0) w.write(dir + "/tensors-" + std::to_string(file++) + ".gguf");
        {
            GgufWriter s;  // shapes at the edges: 0 dims, an empty tensor, 4 dims
            s.set("general.alignment", std::uint32_t{8});
            s.add_tensor("scalar", GgmlType::F32, {}, quantized(GgmlType::F32, 1, 1));
            s.add_tensor("empty", GgmlType::F16, {0, 3}, std::vector<std::byte>{});
            s.add_tensor("4d", GgmlType::Q8_0, {32, 2, 1, 2}, quantized(GgmlType::Q8_0, 32, 4));
            s.write(dir + "/shapes.gguf");
        }
    } catch (const Error& e) {
        std::fprintf(stderr, "gguf_corpus_gen: %s\n", e.what());
        return 1;
    }
    return 0;
}
