// Hostile GGUF files: each gets a FormatError at the right offset with a message
// that says what is wrong; nothing crashes, hangs or allocates without bound.
// Files are the real stories260K truncated or patched byte by byte, or built
// here field by field (not through GgufWriter, which refuses to write them).
// CI runs this under ASan + UBSan.
#include <doctest/doctest.h>

#include <tandem/gguf/quant.hpp>
#include <tandem/gguf/reader.hpp>

#include <cstring>
#include <random>
#include <string_view>

#include "support/paths.hpp"

using namespace tandem;

namespace {

// Little-endian GGUF image built field by field; `at()` is the next offset.
struct Raw {
    std::vector<std::byte> b;
    std::uint64_t at() const { return b.size(); }
    template <typename T>
    Raw& put(T v) {
        const auto n = b.size();
        b.resize(n + sizeof(T));
        std::memcpy(b.data() + n, &v, sizeof(T));
        return *this;
    }
    Raw& u32(std::uint32_t v) { return put(v); }
    Raw& u64(std::uint64_t v) { return put(v); }
    Raw& str(std::string_view s) {
        u64(s.size());
        for (char c : s) b.push_back(static_cast<std::byte>(c));
        return *this;
    }
    Raw& header(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
        return u32(kGgufMagic).u32(version).u64(n_tensors).u64(n_kv);
    }
    Raw& kv_u32(std::string_view key, std::uint32_t v) { return str(key).u32(4).u32(v); }
    Raw& tensor(std::string_view name, std::vector<std::uint64_t> shape, std::uint32_t type, std::uint64_t offset) {
        str(name).u32(static_cast<std::uint32_t>(shape.size()));
        for (auto d : shape) u64(d);
        return u32(type).u64(offset);
    }
    Raw& pad(std::uint64_t alignment = 32) {
        while (b.size() % alignment) b.push_back(std::byte{0});
        return *this;
    }
    Raw& zeros(std::size_t n) {
        b.resize(b.size() + n);
        return *this;
    }
};

// Parses `bytes`, expecting a FormatError at `offset` whose message contains `what`.
void expect_format_error(std::span<const std::byte> bytes, std::uint64_t offset, std::string_view what) {
    try {
        (void)GgufFile::from_memory(bytes, "hostile.gguf");
        FAIL("parsed without error; expected: " << what);
    } catch (const FormatError& e) {
        CHECK_MESSAGE(e.offset() == offset, e.what());
        CHECK_MESSAGE(std::string_view(e.what()).find(what) != std::string_view::npos, e.what());
        CHECK(e.file() == "hostile.gguf");
    }
}

std::vector<std::byte> real_model() {
    const auto f = GgufFile::open(test::stories260k());
    return {f.bytes().begin(), f.bytes().end()};
}

template <typename T>
void patch(std::vector<std::byte>& b, std::uint64_t at, T v) {
    std::memcpy(b.data() + at, &v, sizeof(T));
}

// Offset of the value that follows key `key` (and its u32 type) in a GGUF image.
std::uint64_t value_offset(std::span<const std::byte> b, std::string_view key) {
    const std::string_view all(reinterpret_cast<const char*>(b.data()), b.size());
    const auto at = all.find(key);
    REQUIRE(at != std::string_view::npos);
    return at + key.size() + 4;
}

}  // namespace

TEST_CASE("gguf hostile: stories260K truncated at every offset of its header fails cleanly") {
    const auto full = real_model();
    const auto ref = GgufFile::from_memory(full);
    const auto data_offset = ref.data_offset();
    REQUIRE(data_offset > 1000);
    for (std::uint64_t n = 0; n <= data_offset; ++n) {
        const std::span<const std::byte> prefix(full.data(), static_cast<std::size_t>(n));
        try {
            (void)GgufFile::from_memory(prefix, "cut.gguf");
            FAIL("a file cut at " << n << " parsed");
        } catch (const FormatError& e) {
            const std::string_view msg = e.what();
            if (e.offset() > n) FAIL("offset " << e.offset() << " beyond the " << n << " bytes: " << msg);
            if (msg.find("truncated") == msg.npos && msg.find("cannot fit") == msg.npos &&
                msg.find("exceeds") == msg.npos && msg.find("lies outside the file") == msg.npos)
                FAIL("unexpected message at " << n << ": " << msg);
        }
    }
}

TEST_CASE("gguf hostile: stories260K truncated inside its tensor data names the tensor") {
    const auto full = real_model();
    const auto ref = GgufFile::from_memory(full);
    std::uint64_t end = 0;  // end of the last tensor's bytes
    for (const auto& t : ref.tensors()) end = std::max<std::uint64_t>(end, ref.data_offset() + t.offset + t.n_bytes());
    std::vector<std::uint64_t> cuts{ref.data_offset() + 1, end - 1};
    for (std::uint64_t n = ref.data_offset() + 7; n < end; n += 4093) cuts.push_back(n);
    for (auto n : cuts) {
        try {
            (void)GgufFile::from_memory(std::span<const std::byte>(full.data(), static_cast<std::size_t>(n)));
            FAIL("a file cut at " << n << " parsed");
        } catch (const FormatError& e) {
            CHECK(std::string_view(e.what()).find("lies outside the file") != std::string_view::npos);
            CHECK(e.offset() < ref.data_offset());  // points at the tensor's offset field
        }
    }
    // Cutting only the padding after the last tensor loses nothing.
    CHECK_NOTHROW((void)GgufFile::from_memory(std::span<const std::byte>(full.data(), static_cast<std::size_t>(end))));
}

TEST_CASE("gguf hostile: bad magic and unsupported versions") {
    auto b = real_model();
    patch<std::uint8_t>(b, 0, 'X');
    expect_format_error(b, 0, "bad magic");
    for (std::uint32_t v : {0u, 1u, 4u, 0xffffffffu}) {
        b = real_model();
        patch(b, 4, v);
        expect_format_error(b, 4, "version " + std::to_string(v) + " is not supported");
    }
    b = real_model();
    patch(b, 4, std::uint32_t{0x03000000});
    expect_format_error(b, 4, "big-endian");
    expect_format_error({}, 0, "truncated");
}

TEST_CASE("gguf hostile: absurd counts are refused before anything is allocated") {
    auto b = real_model();
    patch(b, 8, std::uint64_t{1} << 60);
    expect_format_error(b, 8, "tensor count 1152921504606846976");
    b = real_model();
    patch(b, 16, std::uint64_t{1} << 60);
    expect_format_error(b, 16, "metadata count 1152921504606846976");
    b = real_model();
    const auto tokens = value_offset(b, "tokenizer.ggml.tokens");  // array: u32 element type, u64 count
    patch(b, tokens + 4, std::uint64_t{1} << 60);
    expect_format_error(b, tokens + 4, "array of 1152921504606846976 str");
    b = real_model();
    patch(b, tokens + 4, ~std::uint64_t{0});
    expect_format_error(b, tokens + 4, "cannot fit");
    Raw r;
    r.header(0, 1).str("a").u32(9).u32(10);
    const auto count_at = r.at();
    r.u64(std::uint64_t{1} << 60).zeros(64);
    expect_format_error(r.b, count_at, "array of 1152921504606846976 u64");
}

TEST_CASE("gguf hostile: strings longer than the file") {
    auto b = real_model();
    patch(b, 24, std::uint64_t{1} << 40);  // the first key's length
    expect_format_error(b, 24, "string length 1099511627776 exceeds");
    b = real_model();
    const auto arch = value_offset(b, "general.architecture");
    patch(b, arch, ~std::uint64_t{0});
    expect_format_error(b, arch, "string length 18446744073709551615 exceeds");
}

TEST_CASE("gguf hostile: tensor infos that lie") {
    SUBCASE("data outside the file") {
        Raw r;
        r.header(1, 0);
        const auto off = r.at() + 8 + 1 + 4 + 8 + 4;
        r.tensor("w", {8}, 0, 64).pad().zeros(32);
        expect_format_error(r.b, off, "tensor 'w': data [");
    }
    SUBCASE("offset far past the end does not overflow") {
        Raw r;
        r.header(1, 0);
        const auto off = r.at() + 8 + 1 + 4 + 8 + 4;
        r.tensor("w", {8}, 0, ~std::uint64_t{31}).pad().zeros(32);
        expect_format_error(r.b, off, "lies outside the file");
    }
    SUBCASE("misaligned data offset") {
        Raw r;
        r.header(1, 0);
        const auto off = r.at() + 8 + 1 + 4 + 8 + 4;
        r.tensor("w", {8}, 0, 8).pad().zeros(64);
        expect_format_error(r.b, off, "data offset 8 is not a multiple of the alignment 32");
    }
    SUBCASE("shape whose product overflows") {
        Raw r;
        r.header(1, 0);
        const auto dim2 = r.at() + 8 + 1 + 4 + 8;
        r.tensor("w", {1ull << 32, 1ull << 32}, 0, 0).pad().zeros(32);
        expect_format_error(r.b, dim2, "shape overflows");
        Raw s;
        s.header(1, 0);
        const auto dim1 = s.at() + 8 + 1 + 4;
        s.tensor("w", {1ull << 63}, 0, 0).pad().zeros(32);
        expect_format_error(s.b, dim1, "shape overflows");
        Raw z;  // a zero dimension does not hide an overflow in the others
        z.header(1, 0);
        const auto dim3 = z.at() + 8 + 1 + 4 + 16;
        z.tensor("w", {0, 1ull << 40, 1ull << 40}, 0, 0).pad();
        expect_format_error(z.b, dim3, "shape overflows");
    }
    SUBCASE("byte size that overflows") {
        Raw r;
        r.header(1, 0);
        const auto dims = r.at() + 8 + 1;
        r.tensor("w", {1ull << 62}, 0, 0).pad();  // 2^62 F32 elements: 2^64 bytes
        expect_format_error(r.b, dims, "byte size overflows");
    }
    SUBCASE("more than four dimensions") {
        Raw r;
        r.header(1, 0);
        const auto dims = r.at() + 8 + 1;
        r.tensor("w", {1, 1, 1, 1, 1}, 0, 0).pad().zeros(32);
        expect_format_error(r.b, dims, "has 5 dimensions");
        Raw s;
        s.header(1, 0).str("w").u32(0xffffffffu).zeros(64);
        expect_format_error(s.b, 24 + 9, "has 4294967295 dimensions");
    }
    SUBCASE("unknown tensor type ids") {
        for (std::uint32_t id : {4u, 31u, 36u, 1000u, 0xffffffffu}) {
            Raw r;
            r.header(1, 0);
            const auto type_at = r.at() + 8 + 1 + 4 + 8;
            r.tensor("w", {32}, id, 0).pad().zeros(128);
            expect_format_error(r.b, type_at, "unknown ggml type id " + std::to_string(id));
        }
    }
    SUBCASE("row length that is not a whole number of blocks") {
        Raw r;
        r.header(1, 0);
        const auto type_at = r.at() + 8 + 1 + 4 + 16;
        r.tensor("w", {16, 2}, 2, 0).pad().zeros(64);  // Q4_0 rows of 16
        expect_format_error(r.b, type_at, "row length 16 is not a multiple of the Q4_0 block size 32");
        Raw s;  // a 0-dim tensor is one element: not a Q8_0 block
        s.header(1, 0);
        const auto type0 = s.at() + 8 + 1 + 4;
        s.tensor("w", {}, 8, 0).pad().zeros(64);
        expect_format_error(s.b, type0, "row length 1");
    }
    SUBCASE("duplicate tensor names") {
        Raw r;
        r.header(2, 0).tensor("w", {8}, 0, 0);
        const auto second = r.at();
        r.tensor("w", {8}, 0, 32).pad().zeros(64);
        expect_format_error(r.b, second, "duplicate tensor name 'w'");
    }
    SUBCASE("tensor infos but no data section") {
        Raw r;
        r.header(1, 0).tensor("w", {8}, 0, 0);
        expect_format_error(r.b, r.at(), "tensor data section is missing");
    }
}

TEST_CASE("gguf hostile: metadata values that lie") {
    SUBCASE("unknown value types") {
        for (std::uint32_t t : {13u, 100u, 0xffffffffu}) {
            Raw r;
            r.header(0, 1).str("k");
            const auto at = r.at();
            r.u32(t).zeros(16);
            expect_format_error(r.b, at, "unknown value type " + std::to_string(t));
            Raw a;  // as an array's element type
            a.header(0, 1).str("k").u32(9);
            const auto elem = a.at();
            a.u32(t).u64(1).zeros(16);
            expect_format_error(a.b, elem, "unknown value type " + std::to_string(t));
        }
    }
    SUBCASE("bools other than 0 and 1") {
        Raw r;
        r.header(0, 1).str("k").u32(7);
        const auto at = r.at();
        r.put<std::uint8_t>(2);
        expect_format_error(r.b, at, "bool value 2");
        Raw a;
        a.header(0, 1).str("k").u32(9).u32(7).u64(3).put<std::uint8_t>(1).put<std::uint8_t>(0);
        const auto third = a.at();
        a.put<std::uint8_t>(255);
        expect_format_error(a.b, third, "bool value 255");
    }
    SUBCASE("bad general.alignment") {
        for (std::uint32_t v : {0u, 3u, 48u}) {
            Raw r;
            r.header(0, 1).str("general.alignment").u32(4);
            const auto at = r.at();
            r.u32(v);
            expect_format_error(r.b, at, "is not a power of two");
        }
        Raw u64;
        u64.header(0, 1).str("general.alignment").u32(10);
        const auto at64 = u64.at();
        u64.u64(32);
        expect_format_error(u64.b, at64, "general.alignment must be a u32, not a u64");
        Raw s;
        s.header(0, 1).str("general.alignment").u32(8);
        const auto ats = s.at();
        s.str("32");
        expect_format_error(s.b, ats, "must be a u32, not a str");
    }
    SUBCASE("duplicate keys") {
        Raw r;
        r.header(0, 2).kv_u32("k", 1);
        const auto second = r.at();
        r.kv_u32("k", 2);
        expect_format_error(r.b, second, "duplicate metadata key 'k'");
    }
    SUBCASE("arrays nested too deep, and very deep, without recursing without bound") {
        for (std::uint32_t depth : {kGgufMaxArrayDepth + 1, 100000u}) {
            Raw r;
            r.header(0, 1).str("k").u32(9);
            std::uint64_t fail_at = 0;
            for (std::uint32_t d = 0; d < depth; ++d) {
                if (d == kGgufMaxArrayDepth) fail_at = r.at();
                r.u32(9).u64(1);  // an array of one array of ...
            }
            r.u32(4).u64(0);
            expect_format_error(r.b, fail_at, "arrays nested deeper than 8");
        }
        Raw ok;  // exactly as deep as allowed
        ok.header(0, 1).str("k").u32(9);
        for (std::uint32_t d = 1; d < kGgufMaxArrayDepth; ++d) ok.u32(9).u64(1);
        ok.u32(4).u64(1).u32(7);
        const auto f = GgufFile::from_memory(ok.b);
        const GgufValue* v = &f.at("k");
        for (std::uint32_t d = 1; d < kGgufMaxArrayDepth; ++d) v = &v->array().items.at(0);
        CHECK(v->as<std::vector<std::uint32_t>>() == std::vector<std::uint32_t>{7});
    }
}

TEST_CASE("gguf hostile: random corruption of the real header never escapes as anything but FormatError") {
    const auto full = real_model();
    const auto data_offset = GgufFile::from_memory(full).data_offset();
    std::mt19937 g(7);
    int parsed = 0, refused = 0;
    for (int i = 0; i < 3000; ++i) {
        auto b = full;
        const int flips = 1 + static_cast<int>(g() % 4);
        for (int k = 0; k < flips; ++k) {
            const auto at = g() % data_offset;
            b[at] = static_cast<std::byte>(g() % 4 == 0 ? 0xff : g() & 0xff);
        }
        try {
            const auto f = GgufFile::from_memory(b);
            ++parsed;
            // Whatever parsed must be safe to use.
            for (const auto& t : f.tensors()) {
                if (!can_dequantize(t.type) || t.rows() == 0 || t.cols() == 0) continue;
                std::vector<float> row(static_cast<std::size_t>(t.cols()));
                dequantize_row(t.type, t.data.data(), row.data(), static_cast<std::int64_t>(t.cols()));
            }
        } catch (const FormatError&) {
            ++refused;
        }
    }
    CHECK(parsed + refused == 3000);
    MESSAGE("corrupted headers: " << parsed << " still parsed, " << refused << " refused");
}

TEST_CASE("gguf hostile: tensors added from outside the image are checked like parsed ones") {
    Raw r;
    r.header(0, 0);
    auto f = GgufFile::from_owned(r.b, "assignment");
    const std::vector<std::byte> bytes(64);
    GgufTensorInfo t;
    t.name = "w";
    t.type = GgmlType::F32;
    t.data = bytes;
    // 2^62 * 2^2 wraps to 0 elements * ... a shape must never wrap to match the byte count.
    t.shape = {16, 1ull << 62, 4};
    CHECK_THROWS_WITH_AS(f.add_tensor(t, nullptr), doctest::Contains("overflows"), ConfigError);
    t.shape = {16, 1, 1, 1, 1};
    CHECK_THROWS_AS(f.add_tensor(t, nullptr), ConfigError);
    t.shape = {8};
    CHECK_THROWS_AS(f.add_tensor(t, nullptr), ConfigError);  // 32 bytes expected, 64 given
    t.shape = {16};
    f.add_tensor(t, nullptr);
    CHECK(f.tensor("w").n_bytes() == 64);
    CHECK_THROWS_AS(f.add_tensor(t, nullptr), ConfigError);  // duplicate
}

TEST_CASE("gguf hostile: files that cannot be opened are IoErrors") {
    CHECK_THROWS_AS(GgufFile::open(test::models_dir() + "/no-such-file.gguf"), IoError);
    CHECK_THROWS_AS(GgufFile::open(test::models_dir()), IoError);
}
