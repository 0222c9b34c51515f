// GGUF reader on the real shipped model: metadata, tensor table, in-place data.
#include <doctest/doctest.h>

#include <tandem/gguf/reader.hpp>

#include "support/paths.hpp"

using namespace tandem;

TEST_CASE("gguf: reads the real stories260K model in place") {
    const auto f = GgufFile::open(test::stories260k());
    CHECK(f.version() == 3);
    CHECK(f.get<std::string>("general.architecture") == "llama");
    CHECK(f.get<std::uint32_t>("llama.block_count") == 5);
    CHECK(f.get<std::uint32_t>("llama.embedding_length") == 64);
    CHECK(f.get<std::uint32_t>("llama.feed_forward_length") == 172);
    CHECK(f.get<std::uint32_t>("llama.attention.head_count") == 8);
    CHECK(f.get<std::uint32_t>("llama.attention.head_count_kv") == 4);
    CHECK(f.get<std::uint32_t>("llama.context_length") == 2048);  // the file says 2048 (llama2.c trained it at 512)
    CHECK(f.get<std::string>("tokenizer.ggml.model") == "llama");
    CHECK(f.get<std::vector<std::string>>("tokenizer.ggml.tokens").size() == 512);
    CHECK(f.tensors().size() == 48);
    const auto& emb = f.tensor("token_embd.weight");
    CHECK(emb.type == GgmlType::F32);
    CHECK(emb.shape == std::vector<std::uint64_t>{64, 512});
    CHECK(emb.n_bytes() == 64 * 512 * 4);
    // The tensor's bytes are the file's bytes: nothing was copied.
    CHECK(emb.data.data() == f.bytes().data() + f.data_offset() + emb.offset);
    CHECK(f.data_offset() % f.alignment() == 0);
    CHECK_THROWS_AS(f.get<std::uint32_t>("general.architecture"), KeyError);
    CHECK_THROWS_AS(f.get<std::uint32_t>("no.such.key"), KeyError);
    CHECK(f.get_or<std::uint32_t>("no.such.key", 7) == 7);
}
