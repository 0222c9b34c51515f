// GGML tensor types as stored in GGUF files: ids, names, block geometry, and the
// exact byte layout of each quantization block.
//
// Ids and layouts are facts of the GGUF/ggml format; tandem depends on them bit
// for bit. Checked against ggml-common.h (block structs and their size
// static_asserts) and gguf-py's constants.py (GGMLQuantizationType ids and
// GGML_QUANT_SIZES block/type sizes, through NVFP4 = 40 and Q1_0 = 41). Every block is a
// standard-layout struct whose size is checked below, so a block can be read
// in place from a memory-mapped file (all fields are little-endian; tandem
// supports little-endian hosts only, checked in core).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tandem/core/error.hpp"

namespace tandem {

static_assert(std::endian::native == std::endian::little,
              "tandem reads GGUF files in place and needs a little-endian host");

/// Tensor element types (ggml_type). Gaps are ids the format has retired.
enum class GgmlType : std::uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
};

/// Geometry of one type: `block_size` elements are stored in `type_size` bytes.
struct GgmlTypeTraits {
    GgmlType type;
    std::string_view name;
    std::uint32_t block_size;
    std::uint32_t type_size;
    bool dequantizable;  // tandem can turn it into floats
};

inline constexpr std::uint32_t kQK4_0 = 32;
inline constexpr std::uint32_t kQK4_1 = 32;
inline constexpr std::uint32_t kQK5_0 = 32;
inline constexpr std::uint32_t kQK5_1 = 32;
inline constexpr std::uint32_t kQK8_0 = 32;
inline constexpr std::uint32_t kQK8_1 = 32;
inline constexpr std::uint32_t kQK_K = 256;      // super-block size of the K-quants
inline constexpr std::uint32_t kKScaleSize = 12; // packed 6-bit scales/mins of Q4_K, Q5_K

// ---- block layouts (little-endian, packed by construction: no padding) ----

/// Q4_0: x = d * (q - 8), q in [0,15]; low nibbles hold elements 0..15, high 16..31.
struct BlockQ4_0 {
    std::uint16_t d;  // F16 scale
    std::uint8_t qs[kQK4_0 / 2];
};
/// Q4_1: x = d * q + m.
struct BlockQ4_1 {
    std::uint16_t d;  // F16
    std::uint16_t m;  // F16
    std::uint8_t qs[kQK4_1 / 2];
};
/// Q5_0: x = d * (q - 16); the fifth bit of element j is bit j of qh.
struct BlockQ5_0 {
    std::uint16_t d;
    std::uint8_t qh[4];
    std::uint8_t qs[kQK5_0 / 2];
};
/// Q5_1: x = d * q + m.
struct BlockQ5_1 {
    std::uint16_t d;
    std::uint16_t m;
    std::uint8_t qh[4];
    std::uint8_t qs[kQK5_1 / 2];
};
/// Q8_0: x = d * q.
struct BlockQ8_0 {
    std::uint16_t d;
    std::int8_t qs[kQK8_0];
};
/// Q8_1: x = d * q; s = d * sum(q) (used as an activation format).
struct BlockQ8_1 {
    std::uint16_t d;
    std::uint16_t s;
    std::int8_t qs[kQK8_1];
};
/// Q2_K: 16 sub-blocks of 16; 4-bit scale and 4-bit min per sub-block.
struct BlockQ2_K {
    std::uint8_t scales[kQK_K / 16];
    std::uint8_t qs[kQK_K / 4];
    std::uint16_t d;
    std::uint16_t dmin;
};
/// Q3_K: 16 sub-blocks of 16; 6-bit signed scales packed in 12 bytes; high bit in hmask.
struct BlockQ3_K {
    std::uint8_t hmask[kQK_K / 8];
    std::uint8_t qs[kQK_K / 4];
    std::uint8_t scales[12];
    std::uint16_t d;
};
/// Q4_K: 8 sub-blocks of 32; 6-bit scales and mins packed in 12 bytes.
struct BlockQ4_K {
    std::uint16_t d;
    std::uint16_t dmin;
    std::uint8_t scales[kKScaleSize];
    std::uint8_t qs[kQK_K / 2];
};
/// Q5_K: as Q4_K plus one high bit per element in qh.
struct BlockQ5_K {
    std::uint16_t d;
    std::uint16_t dmin;
    std::uint8_t scales[kKScaleSize];
    std::uint8_t qh[kQK_K / 8];
    std::uint8_t qs[kQK_K / 2];
};
/// Q6_K: 16 sub-blocks of 16; low 4 bits in ql, high 2 bits in qh, 8-bit scales.
struct BlockQ6_K {
    std::uint8_t ql[kQK_K / 2];
    std::uint8_t qh[kQK_K / 4];
    std::int8_t scales[kQK_K / 16];
    std::uint16_t d;
};
/// Q8_K: x = d * q with an F32 scale; bsums are the sums of each 16 quants.
struct BlockQ8_K {
    float d;
    std::int8_t qs[kQK_K];
    std::int16_t bsums[kQK_K / 16];
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

/// The table of every type id tandem knows. Types it can read but not
/// dequantize (the IQ and ternary families) are listed so that files using them
/// are parsed and the error names the type.
inline constexpr std::array<GgmlTypeTraits, 34> kGgmlTypes{{
    {GgmlType::F32, "F32", 1, 4, true},
    {GgmlType::F16, "F16", 1, 2, true},
    {GgmlType::Q4_0, "Q4_0", kQK4_0, sizeof(BlockQ4_0), true},
    {GgmlType::Q4_1, "Q4_1", kQK4_1, sizeof(BlockQ4_1), true},
    {GgmlType::Q5_0, "Q5_0", kQK5_0, sizeof(BlockQ5_0), true},
    {GgmlType::Q5_1, "Q5_1", kQK5_1, sizeof(BlockQ5_1), true},
    {GgmlType::Q8_0, "Q8_0", kQK8_0, sizeof(BlockQ8_0), true},
    {GgmlType::Q8_1, "Q8_1", kQK8_1, sizeof(BlockQ8_1), true},
    {GgmlType::Q2_K, "Q2_K", kQK_K, sizeof(BlockQ2_K), true},
    {GgmlType::Q3_K, "Q3_K", kQK_K, sizeof(BlockQ3_K), true},
    {GgmlType::Q4_K, "Q4_K", kQK_K, sizeof(BlockQ4_K), true},
    {GgmlType::Q5_K, "Q5_K", kQK_K, sizeof(BlockQ5_K), true},
    {GgmlType::Q6_K, "Q6_K", kQK_K, sizeof(BlockQ6_K), true},
    {GgmlType::Q8_K, "Q8_K", kQK_K, sizeof(BlockQ8_K), true},
    {GgmlType::IQ2_XXS, "IQ2_XXS", kQK_K, 66, false},
    {GgmlType::IQ2_XS, "IQ2_XS", kQK_K, 74, false},
    {GgmlType::IQ3_XXS, "IQ3_XXS", kQK_K, 98, false},
    {GgmlType::IQ1_S, "IQ1_S", kQK_K, 50, false},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 18, false},
    {GgmlType::IQ3_S, "IQ3_S", kQK_K, 110, false},
    {GgmlType::IQ2_S, "IQ2_S", kQK_K, 82, false},
    {GgmlType::IQ4_XS, "IQ4_XS", kQK_K, 136, false},
    {GgmlType::I8, "I8", 1, 1, false},
    {GgmlType::I16, "I16", 1, 2, false},
    {GgmlType::I32, "I32", 1, 4, false},
    {GgmlType::I64, "I64", 1, 8, false},
    {GgmlType::F64, "F64", 1, 8, false},
    {GgmlType::IQ1_M, "IQ1_M", kQK_K, 56, false},
    {GgmlType::BF16, "BF16", 1, 2, true},
    {GgmlType::TQ1_0, "TQ1_0", kQK_K, 54, false},
    {GgmlType::TQ2_0, "TQ2_0", kQK_K, 66, false},
    {GgmlType::MXFP4, "MXFP4", 32, 17, false},
    {GgmlType::NVFP4, "NVFP4", 64, 36, false},
    {GgmlType::Q1_0, "Q1_0", 128, 18, false},
}};

/// Traits of a raw type id, or nullopt when the id is not a ggml type at all.
inline std::optional<GgmlTypeTraits> find_type_traits(std::uint32_t id) noexcept {
    for (const auto& t : kGgmlTypes)
        if (static_cast<std::uint32_t>(t.type) == id) return t;
    return std::nullopt;
}

inline const GgmlTypeTraits& type_traits(GgmlType type) {
    for (const auto& t : kGgmlTypes)
        if (t.type == type) return t;
    throw UnsupportedError("unknown ggml type id " +
                           std::to_string(static_cast<std::uint32_t>(type)));
}

inline std::string_view type_name(GgmlType type) { return type_traits(type).name; }

/// Parses a type name as printed by type_name ("Q8_0", case-insensitive).
inline std::optional<GgmlType> parse_type_name(std::string_view name) noexcept {
    auto upper = [](char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; };
    for (const auto& t : kGgmlTypes) {
        if (t.name.size() != name.size()) continue;
        bool same = true;
        for (std::size_t i = 0; i < name.size() && same; ++i) same = upper(name[i]) == t.name[i];
        if (same) return t.type;
    }
    return std::nullopt;
}

/// Bytes taken by one row of `n` elements; n must be a multiple of the block size.
inline std::uint64_t row_bytes(GgmlType type, std::uint64_t n) {
    const auto& t = type_traits(type);
    return n / t.block_size * t.type_size;
}

}  // namespace tandem
