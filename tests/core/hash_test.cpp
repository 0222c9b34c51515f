// XXH64 against the algorithm's published test vectors, and streaming in
// arbitrary pieces equals hashing in one go.
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include <tandem/core/hash.hpp>

using namespace tandem;

TEST_CASE("core: xxh64 matches the published vectors") {
    CHECK(xxh64("") == 0xef46db3751d8e999ull);
    CHECK(xxh64("a") == 0xd24ec4f1a98c6e5bull);
    CHECK(xxh64("abc") == 4952883123889572249ull);
    CHECK(xxh64("ABC") == 0xe66ae7354fcfee98ull);
    CHECK(xxh64("xxhash") == 0x32dd38952c4bc720ull);
    CHECK(xxh64("abcdefghijklmnopqrstuvwxyz12345") == 0x467605901b01d6f6ull);
    CHECK(xxh64("", 668718853) == 0x04e830582a31a119ull);
    CHECK(xxh64("a", 191961062) == 0x6e05ba2887c97977ull);
    CHECK(hex64(0x0123456789abcdefull) == "0123456789abcdef");
}

TEST_CASE("core: xxh64 streaming equals one-shot for any split") {
    std::mt19937 rng(5);
    std::vector<unsigned char> data(1000);
    for (auto& b : data) b = static_cast<unsigned char>(rng());
    for (std::size_t n : {0u, 1u, 31u, 32u, 33u, 63u, 64u, 100u, 1000u}) {
        const auto whole = xxh64(data.data(), n, 9);
        Xxh64 h(9);
        std::size_t i = 0;
        while (i < n) {
            const std::size_t step = std::min<std::size_t>(n - i, 1 + rng() % 40);
            h.update(data.data() + i, step);
            i += step;
        }
        CHECK(h.digest() == whole);
    }
}
