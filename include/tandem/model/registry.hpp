// Which architectures tandem runs, by GGUF `general.architecture`.
//
// Adding one: write model/<name>.hpp implementing Architecture, add a line to
// kArchitectures below. Anything else is refused with the list of supported names.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "tandem/core/error.hpp"
#include "tandem/gguf/reader.hpp"
#include "tandem/model/architecture.hpp"
#include "tandem/model/llama.hpp"

namespace tandem {

struct ArchitectureEntry {
    std::string_view name;
    std::unique_ptr<Architecture> (*make)(const GgufFile&, const ModelConfig&, BlockRange);
};

inline constexpr ArchitectureEntry kArchitectures[] = {
    {"llama", [](const GgufFile& f, const ModelConfig& c, BlockRange r) -> std::unique_ptr<Architecture> {
         return std::make_unique<LlamaArchitecture>(f, c, r);
     }},
};

inline std::string supported_architectures() {
    std::string s;
    for (const auto& e : kArchitectures) s += (s.empty() ? "" : ", ") + std::string(e.name);
    return s;
}

/// Builds the architecture named by the file, binding the tensors of `blocks`.
inline std::unique_ptr<Architecture> make_architecture(const GgufFile& file, const ModelConfig& config,
                                                       BlockRange blocks) {
    for (const auto& e : kArchitectures)
        if (e.name == config.architecture) return e.make(file, config, blocks);
    throw UnsupportedError(file.name() + ": architecture '" + config.architecture +
                           "' is not supported (supported: " + supported_architectures() + ")");
}

}  // namespace tandem
