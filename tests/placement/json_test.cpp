// The JSON reader/writer behind profile and cluster files: strict grammar,
// offsets in errors, bounded depth, and lossless round trips.
#include <doctest/doctest.h>

#include <string>

#include <tandem/placement/json.hpp>

using namespace tandem;

namespace {

// The byte offset a FormatError reports for `text`.
std::uint64_t error_offset(const std::string& text) {
    try {
        (void)Json::parse(text, "t.json");
    } catch (const FormatError& e) {
        CHECK(e.file() == "t.json");
        return e.offset();
    }
    FAIL("no FormatError for: " << text);
    return 0;
}

}  // namespace

TEST_CASE("json: values, nesting and member order are read as written") {
    const auto j = Json::parse(R"( {"a": [1, -2.5e3, true, false, null], "b": {"c": "x\ty\u00e9\ud83d\ude00"}, "d": 0} )");
    REQUIRE(j.is_object());
    REQUIRE(j.as_object().size() == 3);
    CHECK(j.as_object()[0].first == "a");
    CHECK(j.as_object()[2].first == "d");
    const auto& a = j.find("a")->as_array();
    REQUIRE(a.size() == 5);
    CHECK(a[0].as_number() == 1);
    CHECK(a[1].as_number() == -2500);
    CHECK(a[2].as_bool());
    CHECK_FALSE(a[3].as_bool());
    CHECK(a[4].is_null());
    // \u00e9 is U+00E9 (2 UTF-8 bytes), the surrogate pair U+1F600 (4 bytes).
    CHECK(j.find("b")->find("c")->as_string() == "x\ty\xc3\xa9\xf0\x9f\x98\x80");
    CHECK(j.find("missing") == nullptr);
    CHECK(a[1].offset() == std::string(R"( {"a": [1, )").size());
}

TEST_CASE("json: dump and parse round-trip, numbers to the last bit") {
    Json j;
    j.set("pi", 3.141592653589793);
    j.set("tiny", 1.0000000000000002e-300);
    j.set("big", std::uint64_t{9007199254740992});
    j.set("s", "quote \" backslash \\ newline \n control \x01");
    Json arr = Json::Array{};
    arr.push(0.1).push(Json(nullptr)).push(Json(Json::Object{}));
    j.set("arr", arr);
    const auto text = j.dump();
    const auto back = Json::parse(text);
    CHECK(back.find("pi")->as_number() == 3.141592653589793);
    CHECK(back.find("tiny")->as_number() == 1.0000000000000002e-300);
    CHECK(back.find("big")->as_number() == 9007199254740992.0);
    CHECK(back.find("s")->as_string() == j.find("s")->as_string());
    CHECK(back.find("arr")->as_array()[0].as_number() == 0.1);
    CHECK(back.dump() == text);
}

TEST_CASE("json: malformed text gives FormatError at the offending byte") {
    CHECK(error_offset("") == 0);
    CHECK(error_offset("{") == 1);
    CHECK(error_offset(R"({"a" 1})") == 5);
    CHECK(error_offset(R"({"a": 1,})") == 8);     // trailing comma
    CHECK(error_offset(R"([1 2])") == 3);
    CHECK(error_offset(R"({"a": 1, "a": 2})") == 9);  // duplicate member
    CHECK(error_offset("[01]") == 2);              // leading zero: "0" then junk
    CHECK(error_offset("[1.]") == 3);
    CHECK(error_offset("[1e]") == 3);
    CHECK(error_offset("[-]") == 2);
    CHECK(error_offset("[1e999]") == 1);           // out of range
    CHECK(error_offset("[tru]") == 1);
    CHECK(error_offset(R"(["a\x"])") == 4);
    CHECK(error_offset(R"(["\ud800"])") == 8);     // lone surrogate
    CHECK(error_offset("[\"a\nb\"]") == 3);        // raw control character
    CHECK(error_offset(R"(["abc)") == 5);
    CHECK(error_offset("{} x") == 3);
    CHECK(error_offset("NaN") == 0);
}

TEST_CASE("json: nesting deeper than the limit is refused, not a stack overflow") {
    std::string deep(100000, '[');
    CHECK_THROWS_AS(Json::parse(deep), FormatError);
    std::string ok = std::string(JsonParser::kMaxDepth, '[') + std::string(JsonParser::kMaxDepth, ']');
    CHECK_NOTHROW(Json::parse(ok));
}
