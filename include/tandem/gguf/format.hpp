// Human-readable text for GGUF metadata values, types and shapes (what
// tandem-inspect and `tandem inspect` print). Returns strings; never prints.
//
//   format_value(v)        "llama", 5, 1e-05, true, ["<unk>", "<s>", ... (512 items)]
//   format_value_type(v)   u32, str, [str], [[str]]
//   format_shape(shape)    [64, 512]
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "tandem/gguf/value.hpp"

namespace tandem {

/// A string as a double-quoted literal: control bytes and quotes escaped,
/// cut after `max_bytes` bytes with "..." (UTF-8 sequences are kept whole).
inline std::string quote_string(const std::string& s, std::size_t max_bytes = 60) {
    std::string out = "\"";
    std::size_t i = 0;
    for (; i < s.size() && i < max_bytes; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\x%02x", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    // Finish a multi-byte UTF-8 character cut by the limit.
    while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xc0) == 0x80) out += s[i++];
    out += '"';
    if (i < s.size()) out += "... (" + std::to_string(s.size()) + " bytes)";
    return out;
}

/// The value's type: "u32", "str", "[f32]", "[[str]]" (an empty array of arrays: "[[]]").
inline std::string format_value_type(const GgufValue& v) {
    if (!v.is_array()) return value_type_name(v.type());
    const auto& a = v.array();
    std::string out = "[";
    if (a.element_type != GgufValueType::ARRAY)
        out += value_type_name(a.element_type);
    else
        out += a.items.empty() ? std::string("[]") : format_value_type(a.items.front());
    out += ']';
    return out;
}

/// The value as text; arrays show their first `max_items` items and the count.
inline std::string format_value(const GgufValue& v, std::size_t max_items = 6, std::size_t max_string = 60) {
    return std::visit(
        [&](const auto& x) -> std::string {
            using X = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<X, std::string>) {
                return quote_string(x, max_string);
            } else if constexpr (std::is_same_v<X, bool>) {
                return x ? "true" : "false";
            } else if constexpr (std::is_same_v<X, std::shared_ptr<const GgufArray>>) {
                std::string out = "[";
                const auto n = x->items.size();
                for (std::size_t i = 0; i < n && i < max_items; ++i) {
                    if (i > 0) out += ", ";
                    out += format_value(x->items[i], max_items, max_string);
                }
                if (n > max_items) out += ", ...";
                out += "]";
                if (n > max_items) out += " (" + std::to_string(n) + " items)";
                return out;
            } else if constexpr (std::is_floating_point_v<X>) {
                char buf[64];  // shortest text that reads back as the same value
                const auto r = std::to_chars(buf, buf + sizeof buf, x);
                return std::string(buf, r.ptr);
            } else {
                return std::to_string(x);
            }
        },
        v.storage());
}

/// A tensor shape in ggml order: "[64, 512]"; a 0-dim tensor is "[]".
inline std::string format_shape(const std::vector<std::uint64_t>& shape) {
    std::string out = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i > 0) out += ", ";
        out += std::to_string(shape[i]);
    }
    return out + "]";
}

}  // namespace tandem
