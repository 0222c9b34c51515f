// Requantizing a GGUF model: every weight matrix to one type, the rest as is.
//
//   auto in = GgufFile::open("model-f32.gguf");
//   auto plan = quantize_model(in, "model-q8_0.gguf", {.type = GgmlType::Q8_0});
//
// Per tensor, in file order:
//   - 1-D tensors (norm weights, biases) are copied byte for byte;
//   - a matrix (2 or more dimensions) already of the target type is copied
//     byte for byte (requantizing would only add error), as llama.cpp does;
//   - any other matrix is dequantized row by row (any type dequantize_row
//     reads) and quantized with quantize_row (ggml's reference quantizers),
//     so each row's bytes are exactly quantize_row(type, dequantize_row(row));
//   - a matrix whose row length is not a whole number of the target's blocks
//     (stories260K's ffn_down has rows of 172; Q8_0 blocks hold 32) is kept in
//     its type and listed as such, or refused with ConfigError when `strict`.
// Metadata is copied in order; general.file_type is set to the llama.cpp
// LLAMA_FTYPE of the target and general.quantization_version to 2 for block
// types (removed for float targets).
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/core/thread_pool.hpp"
#include "tandem/gguf/quant.hpp"
#include "tandem/gguf/reader.hpp"
#include "tandem/gguf/types.hpp"
#include "tandem/gguf/writer.hpp"

namespace tandem {

/// ggml's GGML_QNT_VERSION, written as general.quantization_version.
inline constexpr std::uint32_t kGgmlQuantizationVersion = 2;

/// llama.cpp's `llama_ftype` (general.file_type) for a file whose matrices are
/// all `type`; nullopt for types without a single such value (the K-quant
/// ftypes _S/_M/_L name mixtures, not one type).
inline std::optional<std::uint32_t> llama_file_type(GgmlType type) noexcept {
    switch (type) {
        case GgmlType::F32: return 0;    // LLAMA_FTYPE_ALL_F32
        case GgmlType::F16: return 1;    // LLAMA_FTYPE_MOSTLY_F16
        case GgmlType::Q4_0: return 2;   // LLAMA_FTYPE_MOSTLY_Q4_0
        case GgmlType::Q4_1: return 3;   // LLAMA_FTYPE_MOSTLY_Q4_1
        case GgmlType::Q8_0: return 7;   // LLAMA_FTYPE_MOSTLY_Q8_0
        case GgmlType::Q5_0: return 8;   // LLAMA_FTYPE_MOSTLY_Q5_0
        case GgmlType::Q5_1: return 9;   // LLAMA_FTYPE_MOSTLY_Q5_1
        case GgmlType::Q6_K: return 18;  // LLAMA_FTYPE_MOSTLY_Q6_K
        case GgmlType::BF16: return 32;  // LLAMA_FTYPE_MOSTLY_BF16
        default: return std::nullopt;
    }
}

/// What happens to one tensor.
enum class QuantizeAction : std::uint8_t {
    Quantized,      // dequantized and quantized to the target type
    Copied,         // a matrix already of the target type
    Kept1D,         // a 1-D tensor, copied
    KeptRowLength,  // a matrix whose rows are not whole blocks of the target, copied
};

inline const char* quantize_action_name(QuantizeAction a) noexcept {
    switch (a) {
        case QuantizeAction::Quantized: return "quantized";
        case QuantizeAction::Copied: return "already the target type";
        case QuantizeAction::Kept1D: return "1-D, kept";
        case QuantizeAction::KeptRowLength: return "row length not a multiple of the block size, kept";
    }
    return "?";
}

struct QuantizeEntry {
    std::string name;
    std::vector<std::uint64_t> shape;
    GgmlType from = GgmlType::F32;
    GgmlType to = GgmlType::F32;
    std::uint64_t bytes_before = 0;
    std::uint64_t bytes_after = 0;
    QuantizeAction action = QuantizeAction::Kept1D;
};

struct QuantizePlan {
    GgmlType type = GgmlType::Q8_0;
    std::vector<QuantizeEntry> tensors;  // in file order
    std::uint64_t file_bytes_before = 0;
    std::uint64_t file_bytes_after = 0;

    std::uint64_t tensor_bytes_before() const noexcept {
        std::uint64_t n = 0;
        for (const auto& t : tensors) n += t.bytes_before;
        return n;
    }
    std::uint64_t tensor_bytes_after() const noexcept {
        std::uint64_t n = 0;
        for (const auto& t : tensors) n += t.bytes_after;
        return n;
    }
    std::size_t count(QuantizeAction a) const noexcept {
        std::size_t n = 0;
        for (const auto& t : tensors) n += t.action == a;
        return n;
    }
};

struct QuantizeProgress {
    std::size_t tensor = 0;  // tensors done (1-based count)
    std::size_t n_tensors = 0;
    std::string_view name;
    std::uint64_t bytes_done = 0;  // output tensor bytes so far
    std::uint64_t bytes_total = 0;
};

struct QuantizeOptions {
    GgmlType type = GgmlType::Q8_0;  // F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q6_K
    bool strict = false;             // refuse a matrix whose rows are not whole blocks instead of keeping it
    ThreadPool* pool = nullptr;      // rows are converted on it when given; must outlive write()
    std::function<void(const QuantizeProgress&)> on_tensor;  // after each tensor, on the writing thread
};

/// Decides each tensor's fate without touching tensor data. Throws
/// ConfigError for an unsupported target or (strict) a matrix that cannot take
/// it, UnsupportedError for a matrix whose type cannot be dequantized.
inline QuantizePlan plan_quantize(const GgufFile& in, const QuantizeOptions& opt) {
    if (!llama_file_type(opt.type) || !can_quantize(opt.type))
        throw ConfigError("cannot quantize a model to " + std::string(type_name(opt.type)) +
                          " (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q6_K)");
    const auto block = type_traits(opt.type).block_size;
    QuantizePlan plan;
    plan.type = opt.type;
    plan.file_bytes_before = in.file_size();
    for (const auto& t : in.tensors()) {
        QuantizeEntry e{t.name, t.shape, t.type, t.type, t.n_bytes(), t.n_bytes(), QuantizeAction::Kept1D};
        if (t.shape.size() >= 2) {
            if (t.type == opt.type) {
                e.action = QuantizeAction::Copied;
            } else if (t.cols() % block != 0) {
                if (opt.strict)
                    throw ConfigError(in.name() + ": tensor '" + t.name + "' has rows of " + std::to_string(t.cols()) +
                                      " elements, not a multiple of the " + std::string(type_name(opt.type)) +
                                      " block size " + std::to_string(block));
                e.action = QuantizeAction::KeptRowLength;
            } else {
                if (!can_dequantize(t.type))
                    throw UnsupportedError(in.name() + ": tensor '" + t.name + "' is " +
                                           std::string(type_name(t.type)) + ", which tandem cannot dequantize");
                e.action = QuantizeAction::Quantized;
                e.to = opt.type;
                e.bytes_after = t.rows() * row_bytes(opt.type, t.cols());
            }
        }
        plan.tensors.push_back(std::move(e));
    }
    return plan;
}

/// A writer for the quantized model. Tensors that are copied are borrowed
/// from `in`'s mapping, so `in` must outlive the writer's write().
inline GgufWriter make_quantize_writer(const GgufFile& in, const QuantizeOptions& opt, QuantizePlan* plan_out = nullptr) {
    auto plan = plan_quantize(in, opt);
    GgufWriter w;
    w.set_version(in.version());
    for (const auto& [key, value] : in.metadata()) w.set(key, value);
    w.set("general.file_type", *llama_file_type(opt.type));
    if (type_traits(opt.type).block_size > 1) w.set("general.quantization_version", kGgmlQuantizationVersion);
    else w.remove("general.quantization_version");

    const auto shared = std::make_shared<const QuantizeOptions>(opt);
    std::uint64_t bytes_total = 0;
    for (const auto& e : plan.tensors) bytes_total += e.bytes_after;
    std::uint64_t bytes_done = 0;
    const std::size_t n = plan.tensors.size();
    for (std::size_t i = 0; i < n; ++i) {
        const auto& e = plan.tensors[i];
        const auto& t = in.tensors()[i];
        bytes_done += e.bytes_after;
        const QuantizeProgress progress{i + 1, n, {}, bytes_done, bytes_total};
        if (e.action != QuantizeAction::Quantized) {
            // Copied bytes: wrapped in a fill so progress is still reported in order.
            w.add_tensor(t.name, t.type, t.shape, [shared, src = t.data, progress, name = t.name](std::span<std::byte> dst) {
                if (!src.empty()) std::memcpy(dst.data(), src.data(), src.size());
                if (shared->on_tensor) {
                    auto p = progress;
                    p.name = name;
                    shared->on_tensor(p);
                }
            });
            continue;
        }
        const std::uint64_t cols = t.cols(), rows = t.rows();
        w.add_tensor(t.name, opt.type, t.shape,
                     [shared, src = t.data, from = t.type, cols, rows, progress, name = t.name](std::span<std::byte> dst) {
                         const auto to = shared->type;
                         const auto src_rb = static_cast<std::size_t>(row_bytes(from, cols));
                         const auto dst_rb = static_cast<std::size_t>(row_bytes(to, cols));
                         auto run = [&](std::int64_t b, std::int64_t e) {
                             std::vector<float> tmp(static_cast<std::size_t>(cols));  // (cols,) one row in F32
                             for (std::int64_t r = b; r < e; ++r) {
                                 dequantize_row(from, src.data() + static_cast<std::size_t>(r) * src_rb, tmp.data(),
                                                static_cast<std::int64_t>(cols));
                                 quantize_row(to, tmp.data(), dst.data() + static_cast<std::size_t>(r) * dst_rb,
                                              static_cast<std::int64_t>(cols));
                             }
                         };
                         if (shared->pool != nullptr && rows > 1)
                             shared->pool->parallel_for(static_cast<std::int64_t>(rows), run);
                         else
                             run(0, static_cast<std::int64_t>(rows));
                         if (shared->on_tensor) {
                             auto p = progress;
                             p.name = name;
                             shared->on_tensor(p);
                         }
                     });
    }
    plan.file_bytes_after = w.file_size();
    if (plan_out) *plan_out = std::move(plan);
    return w;
}

/// Writes `in` quantized to `opt.type` at `path` (via path.part, renamed when
/// complete) and returns what was done to each tensor.
inline QuantizePlan quantize_model(const GgufFile& in, const std::string& path, const QuantizeOptions& opt) {
    QuantizePlan plan;
    const auto w = make_quantize_writer(in, opt, &plan);
    w.write(path);
    return plan;
}

}  // namespace tandem
