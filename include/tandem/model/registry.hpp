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

/// The registry entry for `name`; UnsupportedError listing the supported names otherwise.
inline const ArchitectureEntry& architecture_entry(const GgufFile& file, std::string_view name) {
    for (const auto& e : kArchitectures)
        if (e.name == name) return e;
    throw UnsupportedError(file.name() + ": architecture '" + std::string(name) +
                           "' is not supported (supported: " + supported_architectures() + ")");
}

/// Refuses a file whose `general.architecture` tandem does not run, before
/// any architecture-specific key is read (so the error names the architecture,
/// not the first `<arch>.` key a foreign file happens to lack).
inline void require_supported_architecture(const GgufFile& file) {
    architecture_entry(file, file.get<std::string>("general.architecture"));
}

/// Builds the architecture named by the file, binding the tensors of `blocks`.
inline std::unique_ptr<Architecture> make_architecture(const GgufFile& file, const ModelConfig& config,
                                                       BlockRange blocks) {
    return architecture_entry(file, config.architecture).make(file, config, blocks);
}

}  // namespace tandem
