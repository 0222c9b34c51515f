// GGUF writer: write -> read round trips for every value and tensor type,
// versions, alignments, the three tensor sources, validation, and a copy of
// the real stories260K model through the writer.
#include <doctest/doctest.h>

#include <tandem/gguf/reader.hpp>
#include <tandem/gguf/writer.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>

#include "support/paths.hpp"

using namespace tandem;

namespace {

std::vector<std::byte> random_bytes(std::size_t n, unsigned seed) {
    std::mt19937 g(seed);
    std::vector<std::byte> b(n);
    for (auto& x : b) x = static_cast<std::byte>(g() & 0xff);
    return b;
}

std::vector<std::byte> read_whole(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> b(c.size());
    std::memcpy(b.data(), c.data(), c.size());
    return b;
}

bool same_bytes(std::span<const std::byte> a, std::span<const std::byte> b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// Strings, then arrays of strings, nested `depth` times.
GgufValue nested_strings(std::uint32_t depth) {
    if (depth == 0) return make_array(std::vector<std::string>{"a", "", "xyz"});
    return make_array(GgufValueType::ARRAY, {nested_strings(depth - 1), nested_strings(depth - 1)});
}

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

}  // namespace

TEST_CASE("gguf writer: every value type round-trips through a file image") {
    GgufWriter w;
    w.set("u8", std::uint8_t{255});
    w.set("i8", std::int8_t{-128});
    w.set("u16", std::uint16_t{65535});
    w.set("i16", std::int16_t{-32768});
    w.set("u32", std::uint32_t{4000000000u});
    w.set("i32", std::int32_t{-2000000000});
    w.set("f32", -0.0f);
    w.set("f32.inf", std::numeric_limits<float>::infinity());
    w.set("f32.denormal", std::numeric_limits<float>::denorm_min());
    w.set("bool.true", true);
    w.set("bool.false", false);
    w.set("str", std::string("h\xc3\xa9llo\0world", 12));  // UTF-8 and an embedded NUL
    w.set("str.empty", "");
    w.set("u64", std::numeric_limits<std::uint64_t>::max());
    w.set("i64", std::numeric_limits<std::int64_t>::min());
    w.set("f64", 1e-300);
    w.set("arr.u8", make_array(std::vector<std::uint8_t>{0, 1, 255}));
    w.set("arr.i8", make_array(std::vector<std::int8_t>{-1, 127}));
    w.set("arr.u16", make_array(std::vector<std::uint16_t>{7}));
    w.set("arr.i16", make_array(std::vector<std::int16_t>{-7, 8}));
    w.set("arr.u32", make_array(std::vector<std::uint32_t>{1, 2, 3}));
    w.set("arr.i32", make_array(std::vector<std::int32_t>{-1, -2}));
    w.set("arr.f32", make_array(std::vector<float>{0.5f, -1.25f}));
    w.set("arr.bool", make_array(GgufValueType::BOOL, {true, false, true}));
    w.set("arr.str", make_array(std::vector<std::string>{"a", "", "long string"}));
    w.set("arr.u64", make_array(std::vector<std::uint64_t>{1ull << 63}));
    w.set("arr.i64", make_array(std::vector<std::int64_t>{-(1ll << 62)}));
    w.set("arr.f64", make_array(std::vector<double>{3.5, -0.0}));
    w.set("arr.empty.u32", make_array(GgufValueType::UINT32, {}));
    w.set("arr.empty.arr", make_array(GgufValueType::ARRAY, {}));
    w.set("arr.arr.str", nested_strings(1));                     // array of arrays of strings
    w.set("arr.deepest", nested_strings(kGgufMaxArrayDepth - 1));  // as deep as the reader accepts

    for (std::uint32_t version : {2u, 3u}) {
        w.set_version(version);
        const auto image = w.write_to_memory();
        const auto f = GgufFile::from_memory(image);
        CHECK(f.version() == version);
        CHECK(f.tensors().empty());
        REQUIRE(f.metadata().size() == w.metadata().size());
        for (std::size_t i = 0; i < f.metadata().size(); ++i) {
            CHECK(f.metadata()[i].first == w.metadata()[i].first);  // insertion order kept
            CHECK_MESSAGE(f.metadata()[i].second == w.metadata()[i].second, f.metadata()[i].first);
        }
        CHECK(std::signbit(f.get<float>("f32")));
        CHECK(f.get<std::string>("str").size() == 12);
        CHECK(f.get<std::vector<std::vector<std::string>>>("arr.arr.str")[1][2] == "xyz");
        CHECK(f.at("arr.empty.arr").array().items.empty());
        CHECK(f.at("arr.empty.arr").array().element_type == GgufValueType::ARRAY);
    }
}

TEST_CASE("gguf writer: keys keep insertion order; setting a key again replaces it in place") {
    GgufWriter w;
    w.set("a", std::uint32_t{1});
    w.set("b", "two");
    w.set("c", 3.0f);
    w.set("a", "one");  // new type, same place
    CHECK(w.remove("b"));
    CHECK_FALSE(w.remove("b"));
    w.set("b", false);  // comes back last
    const auto image = w.write_to_memory();
    const auto f = GgufFile::from_memory(image);
    REQUIRE(f.metadata().size() == 3);
    CHECK(f.metadata()[0].first == "a");
    CHECK(f.get<std::string>("a") == "one");
    CHECK(f.metadata()[1].first == "c");
    CHECK(f.metadata()[2].first == "b");
    CHECK(f.get<bool>("b") == false);
}

TEST_CASE("gguf writer: every tensor type round-trips, at any alignment, v2 and v3") {
    for (std::uint32_t alignment : {1u, 8u, 32u, 64u, 4096u}) {
        for (std::uint32_t version : {2u, 3u}) {
            GgufWriter w;
            w.set_version(version);
            if (alignment != 32) w.set("general.alignment", alignment);
            w.set("general.name", "every type");
            std::vector<std::vector<std::byte>> data;
            unsigned seed = 1;
            for (const auto& t : kGgmlTypes) {
                const std::vector<std::uint64_t> shape{2ull * t.block_size, 3};
                data.push_back(random_bytes(row_bytes(t.type, shape[0]) * 3, seed++));
                w.add_tensor("t." + std::string(t.name), t.type, shape, std::span<const std::byte>(data.back()));
            }
            w.add_tensor("scalar", GgmlType::F32, {}, random_bytes(4, 99));  // 0 dims: one element, owned
            w.add_tensor("empty", GgmlType::F16, {0, 5}, std::vector<std::byte>{});
            w.add_tensor("4d", GgmlType::Q8_0, {32, 2, 1, 2}, random_bytes(4 * 34, 7));
            const auto image = w.write_to_memory();
            CHECK(image.size() == w.file_size());
            const auto f = GgufFile::from_memory(image);
            CHECK(f.version() == version);
            CHECK(f.alignment() == alignment);
            CHECK(f.data_offset() == w.data_offset());
            CHECK(f.data_offset() % alignment == 0);
            REQUIRE(f.tensors().size() == kGgmlTypes.size() + 3);
            for (std::size_t i = 0; i < kGgmlTypes.size(); ++i) {
                const auto& t = f.tensors()[i];
                CHECK(t.name == "t." + std::string(kGgmlTypes[i].name));
                CHECK(t.type == kGgmlTypes[i].type);
                CHECK(t.shape == std::vector<std::uint64_t>{2ull * kGgmlTypes[i].block_size, 3});
                CHECK(t.offset % alignment == 0);
                CHECK(same_bytes(t.data, data[i]));
            }
            CHECK(f.tensor("scalar").shape.empty());
            CHECK(f.tensor("scalar").n_bytes() == 4);
            CHECK(f.tensor("empty").n_bytes() == 0);
            CHECK(f.tensor("empty").rows() == 5);
            CHECK(same_bytes(f.tensor("4d").data, random_bytes(4 * 34, 7)));
        }
    }
}

TEST_CASE("gguf writer: write(path) streams the same bytes, calling fill callbacks at write time") {
    GgufWriter w;
    int calls = 0;
    w.set("general.architecture", "llama");
    w.add_tensor("filled", GgmlType::F32, {8, 4}, [&](std::span<std::byte> out) {
        ++calls;
        REQUIRE(out.size() == 8 * 4 * 4);
        for (std::size_t i = 0; i < out.size() / 4; ++i) {
            const float v = static_cast<float>(i) * 0.5f;
            std::memcpy(out.data() + 4 * i, &v, 4);
        }
    });
    const auto owned = random_bytes(34 * 2, 5);
    w.add_tensor("borrowed", GgmlType::Q8_0, {64}, owned);  // an lvalue vector is borrowed
    CHECK(calls == 0);
    const auto mem = w.write_to_memory();
    CHECK(calls == 1);
    const auto dir = test::scratch_dir("gguf-writer");
    const auto path = dir + "/out.gguf";
    w.write(path);
    CHECK(calls == 2);
    CHECK(same_bytes(read_whole(path), mem));
    CHECK_FALSE(file_exists(path + ".part"));
    const auto f = GgufFile::open(path);
    float v;
    std::memcpy(&v, f.tensor("filled").data.data() + 4 * 31, 4);
    CHECK(v == 15.5f);
    CHECK(same_bytes(f.tensor("borrowed").data, owned));
    std::remove(path.c_str());
}

TEST_CASE("gguf writer: failures leave no file behind and throw typed errors") {
    GgufWriter w;
    w.add_tensor("x", GgmlType::F32, {4}, [](std::span<std::byte>) { throw ConfigError("generator failed"); });
    const auto dir = test::scratch_dir("gguf-writer-fail");
    CHECK_THROWS_WITH_AS(w.write(dir + "/bad.gguf"), doctest::Contains("generator failed"), ConfigError);
    CHECK_FALSE(file_exists(dir + "/bad.gguf"));
    CHECK_FALSE(file_exists(dir + "/bad.gguf.part"));
    GgufWriter ok;
    CHECK_THROWS_AS(ok.write(dir + "/no/such/dir/x.gguf"), IoError);
    CHECK_THROWS_AS(ok.write(dir), IoError);  // a directory
}

TEST_CASE("gguf writer: invalid input is refused with ConfigError") {
    GgufWriter w;
    const auto b4 = random_bytes(16, 1);
    w.add_tensor("a", GgmlType::F32, {4}, b4);
    CHECK_THROWS_WITH_AS(w.add_tensor("a", GgmlType::F32, {4}, b4), doctest::Contains("duplicate"), ConfigError);
    CHECK_THROWS_WITH_AS(w.add_tensor("b", GgmlType::F32, {5}, b4), doctest::Contains("16 bytes given"), ConfigError);
    CHECK_THROWS_WITH_AS(w.add_tensor("c", GgmlType::Q4_0, {16}, random_bytes(9, 1)), doctest::Contains("block size"),
                         ConfigError);
    CHECK_THROWS_AS(w.add_tensor("d", GgmlType::F32, {1, 1, 1, 1, 1}, b4), ConfigError);
    CHECK_THROWS_WITH_AS(w.add_tensor("e", GgmlType::F32, {1ull << 40, 1ull << 40}, GgufWriter::FillFn([](auto) {})),
                         doctest::Contains("overflows"), ConfigError);
    CHECK_THROWS_AS(w.add_tensor("f", GgmlType::F32, {1ull << 62}, GgufWriter::FillFn([](auto) {})), ConfigError);
    CHECK_THROWS_AS(w.add_tensor("", GgmlType::F32, {4}, b4), ConfigError);
    CHECK_THROWS_AS(w.add_tensor(std::string(64, 'n'), GgmlType::F32, {4}, b4), ConfigError);
    CHECK_THROWS_AS(w.add_tensor("g", static_cast<GgmlType>(31), {4}, b4), ConfigError);
    CHECK_THROWS_AS(w.add_tensor("h", GgmlType::F32, {4}, GgufWriter::FillFn{}), ConfigError);
    CHECK(w.tensor_count() == 1);

    CHECK_THROWS_AS(w.set("general.alignment", std::uint32_t{0}), ConfigError);
    CHECK_THROWS_AS(w.set("general.alignment", std::uint32_t{3}), ConfigError);
    CHECK_THROWS_AS(w.set("general.alignment", std::uint64_t{64}), ConfigError);
    CHECK(w.alignment() == 32);
    CHECK(w.find("general.alignment") == nullptr);
    CHECK_THROWS_AS(w.set("", std::uint8_t{1}), ConfigError);
    CHECK_THROWS_AS(w.set("deep", nested_strings(kGgufMaxArrayDepth)), ConfigError);
    auto mixed = std::make_shared<GgufArray>();
    mixed->element_type = GgufValueType::UINT32;
    mixed->items = {GgufValue(std::uint32_t{1}), GgufValue("two")};
    CHECK_THROWS_AS(w.set("mixed", GgufValue(std::shared_ptr<const GgufArray>(mixed))), ConfigError);
    CHECK_THROWS_AS(w.set("null", GgufValue(std::shared_ptr<const GgufArray>())), ConfigError);
    CHECK_THROWS_AS(w.set_version(1), ConfigError);
    CHECK_THROWS_AS(w.set_version(4), ConfigError);
    CHECK(w.metadata().empty());
}

TEST_CASE("gguf writer: copying stories260K through the writer reproduces the model") {
    const auto src = GgufFile::open(test::stories260k());
    GgufWriter w;
    w.set_version(src.version());
    for (const auto& [key, value] : src.metadata()) w.set(key, value);
    for (const auto& t : src.tensors()) w.add_tensor(t.name, t.type, t.shape, t.data);
    const auto image = w.write_to_memory();
    const auto f = GgufFile::from_memory(image);
    CHECK(f.version() == src.version());
    CHECK(f.alignment() == src.alignment());
    REQUIRE(f.metadata().size() == src.metadata().size());
    for (std::size_t i = 0; i < f.metadata().size(); ++i) {
        CHECK(f.metadata()[i].first == src.metadata()[i].first);
        CHECK(f.metadata()[i].second == src.metadata()[i].second);
    }
    REQUIRE(f.tensors().size() == src.tensors().size());
    for (std::size_t i = 0; i < f.tensors().size(); ++i) {
        const auto &a = f.tensors()[i], &b = src.tensors()[i];
        CHECK(a.name == b.name);
        CHECK(a.type == b.type);
        CHECK(a.shape == b.shape);
        CHECK(a.offset == b.offset);
        CHECK(same_bytes(a.data, b.data));
    }
    // gguf-py wrote the original with the same layout rules, so the copy is the same file.
    CHECK(same_bytes(image, src.bytes()));
}

TEST_CASE("gguf writer: copying the tokenizer-only vocab files reproduces them") {
    for (const char* name : {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf"}) {
        const auto src = GgufFile::open(test::model_path(name));
        GgufWriter w;
        w.set_version(src.version());
        for (const auto& [key, value] : src.metadata()) w.set(key, value);
        const auto image = w.write_to_memory();
        const auto f = GgufFile::from_memory(image);
        REQUIRE(f.metadata().size() == src.metadata().size());
        for (std::size_t i = 0; i < f.metadata().size(); ++i) CHECK(f.metadata()[i] == src.metadata()[i]);
    }
}
