// Embeds models/stories260K.gguf into the tandem binary, so that `tandem
// generate` (and the demo) work from any directory with no model file. The
// .incbin directive (GNU as, also LLVM's integrated assembler, so it works for
// Android NDK builds) includes the file's bytes at assembly time; CMake
// records the file as a dependency of this source.
#include <cstddef>
#include <span>

#include "commands.hpp"

#ifndef TANDEM_DEFAULT_MODEL_PATH
#error "TANDEM_DEFAULT_MODEL_PATH must name the GGUF file to embed"
#endif

__asm__(".section .rodata\n"
        ".balign 64\n"
        ".global tandem_default_model_begin\n"
        "tandem_default_model_begin:\n"
        ".incbin \"" TANDEM_DEFAULT_MODEL_PATH "\"\n"
        ".global tandem_default_model_end\n"
        "tandem_default_model_end:\n"
        ".byte 0\n"
        ".previous\n");

extern "C" const std::byte tandem_default_model_begin[];
extern "C" const std::byte tandem_default_model_end[];

namespace tandem::cli {
std::span<const std::byte> default_model() {
    return {tandem_default_model_begin, static_cast<std::size_t>(tandem_default_model_end - tandem_default_model_begin)};
}
}  // namespace tandem::cli
