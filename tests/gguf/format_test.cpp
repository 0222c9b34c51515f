// Text forms of GGUF values, types and shapes (what tandem-inspect prints).
#include <doctest/doctest.h>

#include <tandem/gguf/format.hpp>

#include <cmath>

using namespace tandem;

TEST_CASE("gguf format: scalars and strings") {
    CHECK(format_value(GgufValue(std::uint32_t{5})) == "5");
    CHECK(format_value(GgufValue(std::int8_t{-7})) == "-7");  // a number, not a character
    CHECK(format_value(GgufValue(std::uint8_t{65})) == "65");
    CHECK(format_value(GgufValue(1e-5f)) == "1e-05");
    CHECK(format_value(GgufValue(0.1)) == "0.1");  // shortest text that reads back
    CHECK(format_value(GgufValue(true)) == "true");
    CHECK(format_value(GgufValue("a\"b\\c\n\x01")) == "\"a\\\"b\\\\c\\n\\x01\"");
    CHECK(format_value(GgufValue(std::string(100, 'x')), 6, 10) == "\"xxxxxxxxxx\"... (100 bytes)");
    // A cut never splits a UTF-8 character: "é" is 2 bytes.
    CHECK(quote_string("ab\xc3\xa9z", 3) == "\"ab\xc3\xa9\"... (5 bytes)");
    CHECK(format_value_type(GgufValue(1.0)) == "f64");
}

TEST_CASE("gguf format: arrays are abbreviated with their count") {
    std::vector<std::uint32_t> v(100);
    for (std::uint32_t i = 0; i < 100; ++i) v[i] = i;
    CHECK(format_value(make_array(v), 3) == "[0, 1, 2, ...] (100 items)");
    CHECK(format_value(make_array(std::vector<std::uint32_t>{1, 2})) == "[1, 2]");
    CHECK(format_value(make_array(GgufValueType::STRING, {})) == "[]");
    const auto nested = make_array(GgufValueType::ARRAY, {make_array(std::vector<std::string>{"a"}),
                                                          make_array(std::vector<std::string>{})});
    CHECK(format_value(nested) == "[[\"a\"], []]");
    CHECK(format_value_type(nested) == "[[str]]");
    CHECK(format_value_type(make_array(GgufValueType::ARRAY, {})) == "[[]]");
    CHECK(format_value_type(make_array(std::vector<float>{})) == "[f32]");
    CHECK(format_shape({64, 512}) == "[64, 512]");
    CHECK(format_shape({}) == "[]");
}
