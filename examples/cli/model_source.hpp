// Opens the model a command names with -m, or the embedded default model.
#pragma once

#include <memory>
#include <string>

#include <tandem/gguf/reader.hpp>

#include "args.hpp"
#include "commands.hpp"

namespace tandem::cli {

/// -m/--model FILE, or the stories260K model embedded in this binary.
inline GgufFile open_model_file(const Args& args) {
    const auto path = args.str({"m", "model"});
    if (!path.empty()) return GgufFile::open(path);
    return GgufFile::from_memory(default_model(), default_model_name());
}

}  // namespace tandem::cli
