// Live profiling for the CLI: the flags `tandem plan --devices` and `tandem
// run --plan auto` share, the profile cache's default place, and the printout
// of what was measured (devices and links).
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <tandem/runtime/live_profile.hpp>

#include "args.hpp"

namespace tandem::cli {

inline constexpr const char* kLiveHelp = R"(  --profile-cache FILE  device profiles measured before (default: $XDG_CACHE_HOME or
                        ~/.cache, tandem/profiles.json)
  --refresh-profiles    measure the workers again instead of using their cached profiles
  --probe-bytes SIZE    largest echo of the link probes (default 1M)
  --probe-rounds N      echoes per link measurement, the median kept (default 5)
)";

/// tandem/profiles.json under $XDG_CACHE_HOME, ~/.cache or /tmp (directories made as needed).
inline std::string default_profile_cache() {
    std::string base;
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) base = x;
    else if (const char* h = std::getenv("HOME"); h && *h) base = std::string(h) + "/.cache";
    else base = "/tmp";
    ::mkdir(base.c_str(), 0755);
    base += "/tandem";
    ::mkdir(base.c_str(), 0755);
    return base + "/profiles.json";
}

/// The live-profiling flags (kLiveHelp); `cache_flags` are the names the
/// command accepts for the cache file.
inline LiveProfileOptions live_options_from_args(const Args& args, std::initializer_list<std::string> cache_flags = {"profile-cache"}) {
    LiveProfileOptions o;
    o.cache_path = args.str(cache_flags);
    if (o.cache_path.empty()) o.cache_path = default_profile_cache();
    o.refresh = args.flag({"refresh-profiles"});
    if (args.has("probe-bytes")) o.probe.max_bytes = static_cast<std::uint32_t>(parse_bytes(args.str({"probe-bytes"})));
    o.probe.rounds = args.num<std::uint32_t>({"probe-rounds"}, o.probe.rounds);
    validate_probe_request({.host = "x", .port = 1, .rounds = o.probe.rounds, .max_bytes = o.probe.max_bytes,
                            .target_seconds = o.probe.target_seconds});
    return o;
}

/// What was measured: each device's times and every link.
inline void print_live_profile(std::FILE* out, const LiveProfile& lp) {
    const auto& c = lp.cluster;
    std::fprintf(out, "measured live in %.2f s:\n", lp.seconds);
    std::fprintf(out, "  %-14s %-22s %7s %11s %12s %12s %12s  %s\n", "device", "address", "threads", "memory",
                 "attention", "ffn", "head", "profile");
    for (int d = 0; d < c.size(); ++d) {
        const auto& p = c.device(d);
        const auto& w = lp.workers[static_cast<std::size_t>(d)];
        const std::string how = w.cached ? "cached" : "measured in " + std::to_string(w.profile_seconds).substr(0, 5) + " s";
        std::fprintf(out, "  %-14s %-22s %7u %11s %12s %12s %12s  %s\n", p.name.c_str(), w.endpoint.str().c_str(),
                     p.threads, format_bytes(p.memory_bytes).c_str(), format_ms(p.decode[CostKind::Attention]).c_str(),
                     format_ms(p.decode[CostKind::Ffn]).c_str(), format_ms(p.decode[CostKind::Head]).c_str(), how.c_str());
    }
    std::fprintf(out, "  links, from row to column: latency ms / bandwidth Mbit/s\n  %-14s", "");
    for (int b = Cluster::kCoordinator; b < c.size(); ++b) std::fprintf(out, " %20s", c.node_name(b).c_str());
    std::fprintf(out, "\n");
    for (int a = Cluster::kCoordinator; a < c.size(); ++a) {
        std::fprintf(out, "  %-14s", c.node_name(a).c_str());
        for (int b = Cluster::kCoordinator; b < c.size(); ++b) {
            if (a == b) {
                std::fprintf(out, " %20s", "-");
                continue;
            }
            const auto& l = c.link(a, b);
            char cell[64];
            std::snprintf(cell, sizeof cell, "%.3f / %.0f", l.latency_ms(), std::isinf(l.bytes_per_s) ? 0.0 : l.mbps());
            std::fprintf(out, " %20s", cell);
        }
        std::fprintf(out, "\n");
    }
    std::fprintf(out, "\n");
}

}  // namespace tandem::cli
