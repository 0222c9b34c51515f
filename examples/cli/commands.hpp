// The subcommands of the `tandem` program, one file each (cmd_<name>.cpp).
#pragma once

#include <span>
#include <string>

namespace tandem::cli {

/// Each takes the arguments after the subcommand name and returns an exit code.
int cmd_generate(int argc, char** argv);
int cmd_run(int argc, char** argv);
int cmd_worker(int argc, char** argv);
int cmd_keygen(int argc, char** argv);
int cmd_plan(int argc, char** argv);
int cmd_synth(int argc, char** argv);
int cmd_quantize(int argc, char** argv);

/// The model embedded in the binary (stories260K), as a GGUF image.
std::span<const std::byte> default_model();
/// A name for the embedded model in messages.
inline const char* default_model_name() { return "<embedded stories260K.gguf>"; }

}  // namespace tandem::cli
