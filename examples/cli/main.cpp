// tandem: the command-line program. `tandem <command> [options]`; each
// command lives in its own cmd_<name>.cpp and prints its own --help.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "commands.hpp"

namespace {

struct Command {
    const char* name;
    int (*run)(int, char**);
    const char* summary;
};

constexpr Command kCommands[] = {
    {"generate", tandem::cli::cmd_generate, "generate text on this device"},
    {"run", tandem::cli::cmd_run, "generate with the model split over several devices"},
    {"worker", tandem::cli::cmd_worker, "serve blocks of a model for a coordinator"},
    {"keygen", tandem::cli::cmd_keygen, "make the cluster key trusted devices share"},
    {"plan", tandem::cli::cmd_plan, "plan which device runs which blocks (GLPK)"},
    {"synth", tandem::cli::cmd_synth, "write a real-shaped model with random weights"},
    {"quantize", tandem::cli::cmd_quantize, "requantize a model's weight matrices"},
};

void usage() {
    std::fprintf(stderr, "usage: tandem <command> [options]\n\ncommands:\n");
    for (const auto& c : kCommands) std::fprintf(stderr, "  %-10s %s\n", c.name, c.summary);
    std::fprintf(stderr, "\n`tandem <command> --help` describes a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    for (const auto& c : kCommands) {
        if (std::strcmp(argv[1], c.name) != 0) continue;
        try {
            return c.run(argc - 2, argv + 2);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "tandem %s: error: %s\n", c.name, e.what());
            return 1;
        }
    }
    std::fprintf(stderr, "tandem: unknown command '%s'\n\n", argv[1]);
    usage();
    return 2;
}
