// GGUF metadata values: the 13 value types, nested arrays, and typed access.
//
// A GgufValue holds exactly one of the format's types; the variant's index is
// the type's id in the file (UINT8 = 0 ... FLOAT64 = 12), so the on-disk tag and
// the C++ type cannot disagree. `as<T>()` converts without loss or throws.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "tandem/core/error.hpp"

namespace tandem {

enum class GgufValueType : std::uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};

inline const char* value_type_name(GgufValueType t) noexcept {
    static constexpr const char* names[] = {"u8",   "i8",  "u16",    "i16", "u32", "i32", "f32",
                                            "bool", "str", "arr", "u64", "i64", "f64"};
    const auto i = static_cast<std::uint32_t>(t);
    return i < 13 ? names[i] : "?";
}

struct GgufArray;

class GgufValue {
public:
    // Alternative i has type id i.
    using Storage = std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t,
                                 std::int32_t, float, bool, std::string, std::shared_ptr<const GgufArray>,
                                 std::uint64_t, std::int64_t, double>;

    GgufValue() = default;
    template <typename T>
        requires std::is_constructible_v<Storage, T&&>
    GgufValue(T&& v) : v_(std::forward<T>(v)) {}  // NOLINT(google-explicit-constructor)
    GgufValue(const char* s) : v_(std::string(s)) {}  // NOLINT: never decays to bool

    GgufValueType type() const noexcept { return static_cast<GgufValueType>(v_.index()); }
    const Storage& storage() const noexcept { return v_; }
    bool is_array() const noexcept { return type() == GgufValueType::ARRAY; }
    const GgufArray& array() const;  // throws KeyError unless is_array()

    /// Converts to T: integers to any integer type that holds the value, floats
    /// to float/double, strings to std::string, arrays to std::vector<U>.
    /// Throws KeyError when the conversion would lose information.
    template <typename T>
    T as() const;

    bool operator==(const GgufValue& o) const;

private:
    Storage v_;
};

struct GgufArray {
    GgufValueType element_type = GgufValueType::UINT8;
    std::vector<GgufValue> items;
    bool operator==(const GgufArray& o) const {
        return element_type == o.element_type && items == o.items;
    }
};

inline const GgufArray& GgufValue::array() const {
    if (!is_array()) throw KeyError(std::string("value is ") + value_type_name(type()) + ", not an array");
    return *std::get<std::shared_ptr<const GgufArray>>(v_);
}

inline bool GgufValue::operator==(const GgufValue& o) const {
    if (v_.index() != o.v_.index()) return false;
    if (is_array()) return array() == o.array();
    return v_ == o.v_;
}

namespace detail {
template <typename T>
struct is_vector : std::false_type {};
template <typename U, typename A>
struct is_vector<std::vector<U, A>> : std::true_type {
    using element = U;
};
}  // namespace detail

template <typename T>
T GgufValue::as() const {
    if constexpr (std::is_same_v<T, std::string>) {
        if (auto* s = std::get_if<std::string>(&v_)) return *s;
        throw KeyError(std::string("expected a string, found ") + value_type_name(type()));
    } else if constexpr (std::is_same_v<T, bool>) {
        if (auto* b = std::get_if<bool>(&v_)) return *b;
        throw KeyError(std::string("expected a bool, found ") + value_type_name(type()));
    } else if constexpr (detail::is_vector<T>::value) {
        using U = typename detail::is_vector<T>::element;
        const GgufArray& a = array();
        T out;
        out.reserve(a.items.size());
        for (const auto& item : a.items) out.push_back(item.template as<U>());
        return out;
    } else if constexpr (std::is_floating_point_v<T>) {
        return std::visit(
            [&](const auto& x) -> T {
                using X = std::decay_t<decltype(x)>;
                if constexpr (std::is_arithmetic_v<X> && !std::is_same_v<X, bool>) return static_cast<T>(x);
                throw KeyError(std::string("expected a number, found ") + value_type_name(type()));
            },
            v_);
    } else if constexpr (std::is_integral_v<T>) {
        return std::visit(
            [&](const auto& x) -> T {
                using X = std::decay_t<decltype(x)>;
                if constexpr (std::is_integral_v<X> && !std::is_same_v<X, bool>) {
                    if (!std::in_range<T>(x)) throw KeyError("integer " + std::to_string(x) + " out of range");
                    return static_cast<T>(x);
                }
                throw KeyError(std::string("expected an integer, found ") + value_type_name(type()));
            },
            v_);
    } else {
        static_assert(sizeof(T) == 0, "unsupported GGUF value conversion");
    }
}

/// Builds an array value from items that all hold `element_type` (checked).
inline GgufValue make_array(GgufValueType element_type, std::vector<GgufValue> items) {
    for (const auto& x : items)
        if (x.type() != element_type)
            throw ConfigError(std::string("array of ") + value_type_name(element_type) + " given a " +
                              value_type_name(x.type()));
    auto a = std::make_shared<GgufArray>();
    a->element_type = element_type;
    a->items = std::move(items);
    return GgufValue(std::shared_ptr<const GgufArray>(std::move(a)));
}

/// Builds an array from a vector of a scalar or string type; the element type
/// follows from U (e.g. std::vector<float> -> array of f32).
template <typename U>
GgufValue make_array(const std::vector<U>& items) {
    std::vector<GgufValue> values;
    values.reserve(items.size());
    for (const auto& x : items) values.emplace_back(x);
    return make_array(GgufValue(U{}).type(), std::move(values));
}

}  // namespace tandem
