// A small JSON reader and writer for profile and cluster files.
//
// Why not cereal's JSON archive: cluster files are written by hand, so fields
// are optional, may come in any order, and a mistake must be reported with
// the byte offset where it is (FormatError(file, offset, ...)). cereal's
// archive wants exactly the structure it wrote and reports neither. This
// parser is strict RFC 8259 JSON (no comments, no trailing commas), keeps the
// byte offset of every value, rejects duplicate keys and non-finite numbers,
// and bounds its recursion depth, so a hostile file gets a FormatError, never
// a crash. It is small enough to move to core/ if another layer needs it.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <locale>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "tandem/core/error.hpp"

namespace tandem {

namespace json_detail {

/// std::from_chars for a double (a decimal number, "C" locale): the longest
/// prefix [-]digits[.digits][(e|E)[+-]digits] of [b, e). libc++ before LLVM 20,
/// the C++ library of every Android NDK so far, has no floating-point
/// from_chars (the overload is deleted); there the prefix is read by a stream
/// in the classic locale instead.
inline std::from_chars_result parse_double(const char* b, const char* e, double& v) {
#if defined(_LIBCPP_VERSION) && _LIBCPP_VERSION < 200000
    const char* p = b;
    auto digits = [&] {
        const char* s = p;
        while (p < e && *p >= '0' && *p <= '9') ++p;
        return p - s;
    };
    if (p < e && *p == '-') ++p;
    auto n = digits();
    if (p < e && *p == '.') {
        ++p;
        n += digits();
    }
    if (n == 0) return {b, std::errc::invalid_argument};
    if (p < e && (*p == 'e' || *p == 'E')) {
        const char* mantissa_end = p++;
        if (p < e && (*p == '+' || *p == '-')) ++p;
        if (digits() == 0) p = mantissa_end;  // "2e" is 2, then "e"
    }
    std::istringstream in(std::string(b, p));
    in.imbue(std::locale::classic());
    double x = 0;
    if (!(in >> x)) return {b, std::errc::result_out_of_range};
    v = x;
    return {p, std::errc()};
#else
    return std::from_chars(b, e, v);
#endif
}

}  // namespace json_detail

class Json {
public:
    enum class Type : std::uint8_t { Null, Bool, Number, String, Array, Object };
    using Array = std::vector<Json>;
    using Object = std::vector<std::pair<std::string, Json>>;  // in file order

    Json() = default;
    Json(std::nullptr_t) {}
    Json(bool b) : v_(b) {}
    Json(double d) : v_(d) {}
    Json(int i) : v_(static_cast<double>(i)) {}
    Json(unsigned i) : v_(static_cast<double>(i)) {}
    Json(std::int64_t i) : v_(static_cast<double>(i)) {}
    Json(std::uint64_t i) : v_(static_cast<double>(i)) {}
    Json(std::string s) : v_(std::move(s)) {}
    Json(const char* s) : v_(std::string(s)) {}
    Json(Array a) : v_(std::move(a)) {}
    Json(Object o) : v_(std::move(o)) {}

    Type type() const noexcept { return static_cast<Type>(v_.index()); }
    bool is_null() const noexcept { return type() == Type::Null; }
    bool is_bool() const noexcept { return type() == Type::Bool; }
    bool is_number() const noexcept { return type() == Type::Number; }
    bool is_string() const noexcept { return type() == Type::String; }
    bool is_array() const noexcept { return type() == Type::Array; }
    bool is_object() const noexcept { return type() == Type::Object; }

    /// Byte offset of this value in the text it was parsed from (0 if built).
    std::uint64_t offset() const noexcept { return offset_; }

    // Unchecked accessors: call only after checking the type (std::get throws
    // std::bad_variant_access otherwise). Readers that take user files should
    // use the checked helpers of JsonReader in profile.hpp.
    bool as_bool() const { return std::get<bool>(v_); }
    double as_number() const { return std::get<double>(v_); }
    const std::string& as_string() const { return std::get<std::string>(v_); }
    const Array& as_array() const { return std::get<Array>(v_); }
    Array& as_array() { return std::get<Array>(v_); }
    const Object& as_object() const { return std::get<Object>(v_); }
    Object& as_object() { return std::get<Object>(v_); }

    /// The member `key` of an object, or nullptr (also when not an object).
    const Json* find(std::string_view key) const {
        if (!is_object()) return nullptr;
        for (const auto& [k, v] : as_object())
            if (k == key) return &v;
        return nullptr;
    }

    /// Appends a member to an object (builds one from null).
    Json& set(std::string key, Json value) {
        if (is_null()) v_ = Object{};
        as_object().emplace_back(std::move(key), std::move(value));
        return *this;
    }
    /// Appends an element to an array (builds one from null).
    Json& push(Json value) {
        if (is_null()) v_ = Array{};
        as_array().push_back(std::move(value));
        return *this;
    }

    /// Serialises with two-space indentation; numbers in their shortest form
    /// that reads back to the same double.
    std::string dump() const {
        std::string out;
        write(out, 0);
        out += '\n';
        return out;
    }

    /// Parses `text`; `source` names it in errors (a file name).
    static Json parse(std::string_view text, const std::string& source = "<json>");

private:
    friend class JsonParser;
    void write(std::string& out, int indent) const;
    static void write_string(std::string& out, const std::string& s);

    std::variant<std::nullptr_t, bool, double, std::string, Array, Object> v_{nullptr};
    std::uint64_t offset_ = 0;
};

inline const char* json_type_name(Json::Type t) noexcept {
    switch (t) {
        case Json::Type::Null: return "null";
        case Json::Type::Bool: return "a boolean";
        case Json::Type::Number: return "a number";
        case Json::Type::String: return "a string";
        case Json::Type::Array: return "an array";
        case Json::Type::Object: return "an object";
    }
    return "?";
}

class JsonParser {
public:
    static constexpr int kMaxDepth = 64;

    JsonParser(std::string_view text, const std::string& source) : s_(text), source_(source) {}

    Json parse_document() {
        skip_ws();
        Json v = value(0);
        skip_ws();
        if (i_ != s_.size()) fail("unexpected text after the JSON value");
        return v;
    }

private:
    [[noreturn]] void fail(const std::string& msg) const { throw FormatError(source_, i_, msg); }

    void skip_ws() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }

    bool literal(std::string_view word) {
        if (s_.substr(i_, word.size()) != word) return false;
        i_ += word.size();
        return true;
    }

    Json value(int depth) {
        if (depth > kMaxDepth) fail("JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
        if (i_ >= s_.size()) fail("unexpected end of JSON text");
        const auto at = i_;
        Json v;
        const char c = s_[i_];
        if (c == '{') {
            v = object(depth);
        } else if (c == '[') {
            v = array(depth);
        } else if (c == '"') {
            v = Json(string());
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            v = Json(number());
        } else if (literal("true")) {
            v = Json(true);
        } else if (literal("false")) {
            v = Json(false);
        } else if (literal("null")) {
            v = Json(nullptr);
        } else {
            fail(std::string("unexpected character '") + printable(c) + "'");
        }
        v.offset_ = at;
        return v;
    }

    static std::string printable(char c) {
        if (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f) return std::string(1, c);
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
        return buf;
    }

    Json object(int depth) {
        ++i_;  // '{'
        Json::Object members;
        skip_ws();
        if (i_ < s_.size() && s_[i_] == '}') {
            ++i_;
            return Json(std::move(members));
        }
        for (;;) {
            skip_ws();
            if (i_ >= s_.size() || s_[i_] != '"') fail("expected a member name in double quotes");
            const auto key_at = i_;
            std::string key = string();
            for (const auto& [k, v] : members)
                if (k == key) {
                    i_ = key_at;
                    fail("duplicate member \"" + key + "\"");
                }
            skip_ws();
            if (i_ >= s_.size() || s_[i_] != ':') fail("expected ':' after a member name");
            ++i_;
            skip_ws();
            Json v = value(depth + 1);
            members.emplace_back(std::move(key), std::move(v));
            skip_ws();
            if (i_ < s_.size() && s_[i_] == ',') {
                ++i_;
                continue;
            }
            if (i_ < s_.size() && s_[i_] == '}') {
                ++i_;
                return Json(std::move(members));
            }
            fail("expected ',' or '}' in an object");
        }
    }

    Json array(int depth) {
        ++i_;  // '['
        Json::Array items;
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ']') {
            ++i_;
            return Json(std::move(items));
        }
        for (;;) {
            skip_ws();
            items.push_back(value(depth + 1));
            skip_ws();
            if (i_ < s_.size() && s_[i_] == ',') {
                ++i_;
                continue;
            }
            if (i_ < s_.size() && s_[i_] == ']') {
                ++i_;
                return Json(std::move(items));
            }
            fail("expected ',' or ']' in an array");
        }
    }

    unsigned hex4() {
        if (i_ + 4 > s_.size()) fail("truncated \\u escape");
        unsigned u = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = s_[i_++];
            u <<= 4;
            if (c >= '0' && c <= '9') u |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') u |= static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') u |= static_cast<unsigned>(c - 'A' + 10);
            else fail("bad hex digit in \\u escape");
        }
        return u;
    }

    static void put_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xc0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xe0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        } else {
            out += static_cast<char>(0xf0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        }
    }

    std::string string() {
        ++i_;  // opening quote
        std::string out;
        for (;;) {
            if (i_ >= s_.size()) fail("unterminated string");
            const char c = s_[i_];
            if (c == '"') {
                ++i_;
                return out;
            }
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
            if (c != '\\') {
                out += c;
                ++i_;
                continue;
            }
            ++i_;
            if (i_ >= s_.size()) fail("unterminated escape");
            const char e = s_[i_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned cp = hex4();
                    if (cp >= 0xd800 && cp < 0xdc00) {
                        if (s_.substr(i_, 2) != "\\u") fail("lone high surrogate in \\u escape");
                        i_ += 2;
                        const unsigned lo = hex4();
                        if (lo < 0xdc00 || lo >= 0xe000) fail("bad low surrogate in \\u escape");
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    } else if (cp >= 0xdc00 && cp < 0xe000) {
                        fail("lone low surrogate in \\u escape");
                    }
                    put_utf8(out, cp);
                    break;
                }
                default: --i_; fail(std::string("unknown escape '\\") + printable(e) + "'");
            }
        }
    }

    double number() {
        // Check the JSON grammar first (from_chars accepts more, e.g. "inf").
        const auto start = i_;
        if (s_[i_] == '-') ++i_;
        auto digits = [&] {
            const auto b = i_;
            while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
            return i_ - b;
        };
        if (i_ < s_.size() && s_[i_] == '0') ++i_;
        else if (digits() == 0) fail("malformed number");
        if (i_ < s_.size() && s_[i_] == '.') {
            ++i_;
            if (digits() == 0) fail("malformed number: no digits after '.'");
        }
        if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
            ++i_;
            if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
            if (digits() == 0) fail("malformed number: no exponent digits");
        }
        double v = 0;
        const auto r = json_detail::parse_double(s_.data() + start, s_.data() + i_, v);
        if (r.ec != std::errc() || !std::isfinite(v)) {
            i_ = start;
            fail("number out of range");
        }
        return v;
    }

    std::string_view s_;
    const std::string& source_;
    std::size_t i_ = 0;
};

inline Json Json::parse(std::string_view text, const std::string& source) {
    return JsonParser(text, source).parse_document();
}

inline void Json::write_string(std::string& out, const std::string& s) {
    out += '"';
    for (const char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    out += '"';
}

inline void Json::write(std::string& out, int indent) const {
    const std::string pad(static_cast<std::size_t>(indent + 2), ' '), close(static_cast<std::size_t>(indent), ' ');
    switch (type()) {
        case Type::Null: out += "null"; break;
        case Type::Bool: out += as_bool() ? "true" : "false"; break;
        case Type::Number: {
            char buf[32];
            const auto r = std::to_chars(buf, buf + sizeof buf, as_number());
            out.append(buf, r.ptr);
            break;
        }
        case Type::String: write_string(out, as_string()); break;
        case Type::Array: {
            const auto& a = as_array();
            // Arrays of numbers (matrices' rows) stay on one line.
            bool flat = true;
            for (const auto& x : a) flat = flat && (x.is_number() || x.is_null() || x.is_bool());
            out += '[';
            for (std::size_t i = 0; i < a.size(); ++i) {
                if (flat) {
                    out += i ? ", " : "";
                } else {
                    out += i ? ",\n" : "\n";
                    out += pad;
                }
                a[i].write(out, indent + 2);
            }
            if (!flat && !a.empty()) out += "\n" + close;
            out += ']';
            break;
        }
        case Type::Object: {
            const auto& o = as_object();
            out += '{';
            for (std::size_t i = 0; i < o.size(); ++i) {
                out += i ? ",\n" : "\n";
                out += pad;
                write_string(out, o[i].first);
                out += ": ";
                o[i].second.write(out, indent + 2);
            }
            if (!o.empty()) out += "\n" + close;
            out += '}';
            break;
        }
    }
}

}  // namespace tandem
