// A weight matrix read in place from a GGUF file.
//
// W is row-major (rows, cols): row r is `cols` elements of `type`, stored in
// `row_bytes` bytes (whole quantization blocks) starting at data + r * row_bytes.
// Kernels read the blocks straight from the memory mapping; a full F32 copy of
// a weight is never made.
//
// In ggml shape order a tensor of shape [cols, rows] (shape[0] contiguous) is
// such a matrix; 3-D and 4-D tensors are seen as (shape[1]*shape[2]*..., shape[0]).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "tandem/core/error.hpp"
#include "tandem/gguf/reader.hpp"
#include "tandem/gguf/types.hpp"

namespace tandem {

struct WeightView {
    GgmlType type = GgmlType::F32;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    const std::byte* data = nullptr;  // rows * row_bytes bytes
    std::size_t row_bytes = 0;

    const std::byte* row(std::int64_t r) const noexcept {
        return data + static_cast<std::size_t>(r) * row_bytes;
    }
    std::size_t n_bytes() const noexcept { return static_cast<std::size_t>(rows) * row_bytes; }
};

/// A view of raw blocks: checks that `cols` is a whole number of blocks of
/// `type` and computes the row stride. Throws ConfigError otherwise.
inline WeightView weight_view(GgmlType type, std::int64_t rows, std::int64_t cols, const void* data) {
    const auto& tr = type_traits(type);
    if (rows < 0 || cols <= 0 || cols % static_cast<std::int64_t>(tr.block_size) != 0)
        throw ConfigError("weight of type " + std::string(tr.name) + " with shape (" + std::to_string(rows) + ", " +
                          std::to_string(cols) + "): the row length must be a positive multiple of " +
                          std::to_string(tr.block_size));
    WeightView w;
    w.type = type;
    w.rows = rows;
    w.cols = cols;
    w.data = static_cast<const std::byte*>(data);
    w.row_bytes = static_cast<std::size_t>(row_bytes(type, static_cast<std::uint64_t>(cols)));
    return w;
}

/// The (rows, cols) view of a GGUF tensor: cols = shape[0], rows = the product
/// of the other dimensions. Throws FormatError (naming `file` and the tensor's
/// data offset) when the tensor's bytes do not hold that many rows.
inline WeightView weight_view(const GgufTensorInfo& t, const std::string& file = "") {
    WeightView w;
    try {
        w = weight_view(t.type, static_cast<std::int64_t>(t.rows()), static_cast<std::int64_t>(t.cols()),
                        t.data.data());
    } catch (const ConfigError& e) {
        throw FormatError(file, t.offset, "tensor '" + t.name + "': " + e.what());
    }
    if (w.n_bytes() > t.data.size())
        throw FormatError(file, t.offset, "tensor '" + t.name + "' needs " + std::to_string(w.n_bytes()) +
                                              " bytes but holds " + std::to_string(t.data.size()));
    return w;
}

}  // namespace tandem
