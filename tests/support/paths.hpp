// Where the tests find the shipped model data and scratch space.
#pragma once

#include <cstdlib>
#include <string>

#include <unistd.h>

namespace tandem::test {

inline std::string models_dir() { return TANDEM_MODELS_DIR; }
inline std::string model_path(const std::string& name) { return models_dir() + "/" + name; }
inline std::string stories260k() { return model_path("stories260K.gguf"); }

/// A fresh scratch directory under the build tree, unique per process.
inline std::string scratch_dir(const std::string& tag) {
    std::string dir = std::string(TANDEM_BINARY_DIR) + "/test-scratch/" + tag + "-" + std::to_string(::getpid());
    std::string cmd = "mkdir -p '" + dir + "'";
    if (std::system(cmd.c_str()) != 0) return "/tmp";
    return dir;
}

}  // namespace tandem::test
