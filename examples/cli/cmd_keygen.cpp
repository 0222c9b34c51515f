// tandem keygen: makes the cluster key every trusted device shares.
#include <cstdio>
#include <string>

#include <tandem/transport/tls.hpp>

#include "args.hpp"
#include "commands.hpp"

namespace tandem::cli {

int cmd_keygen(int argc, char** argv) {
    Args args(argc, argv, {"help", "h"});
    if (args.flag({"help", "h"})) {
        std::puts("usage: tandem keygen [-o FILE]\n\n"
                  "Writes a new 256-bit cluster key (default: cluster.key, mode 0600). Copy it to every\n"
                  "device of the cluster; workers and coordinators load it with --key FILE. Links between\n"
                  "devices use TLS 1.3 keyed by it; a device without it is refused before any data moves.");
        return 0;
    }
    const auto out = args.str({"o", "out", "output"}, "cluster.key");
    args.reject_unknown();
    ClusterKey::generate().save(out);
    std::printf("wrote cluster key to %s\n", out.c_str());
    return 0;
}

}  // namespace tandem::cli
