// Pieces the networked commands share: TLS from --key/--insecure, the
// default cache directory, and timestamped log lines.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <initializer_list>
#include <string>
#include <vector>

#include <tandem/runtime/remote_pipeline.hpp>
#if defined(TANDEM_HAS_TLS)
#include <tandem/transport/tls.hpp>
#endif

#include "args.hpp"

namespace tandem::cli {

/// --key FILE gives TLS; --insecure gives plaintext; neither is an error.
inline std::unique_ptr<TlsConfig> tls_from_args(const Args& args) {
    const bool insecure = args.flag({"insecure"});
    const auto key = args.str({"key"});
    if (insecure && !key.empty()) throw std::runtime_error("--key and --insecure exclude each other");
    if (insecure) return nullptr;
    if (key.empty())
        throw std::runtime_error("links need a cluster key: pass --key FILE (make one with `tandem keygen`), or "
                                 "--insecure for plaintext on a trusted test network");
#if defined(TANDEM_HAS_TLS)
    return std::make_unique<TlsConfig>(ClusterKey::load(key));
#else
    throw std::runtime_error("this build has no TLS (TANDEM_WITH_TLS=OFF): only --insecure works");
#endif
}

/// Link timing flags shared by `run` and `worker` (all optional):
///   --idle-timeout MS       a peer silent this long is lost (default 5000)
///   --heartbeat MS          ping period; must stay below every peer's idle timeout (default 1000)
///   --handshake-timeout MS  TCP connect + TLS handshake (default 5000)
///   --frame-grace MS        a started frame's slack before the rate applies (default 2000)
///   --min-rate SIZE         bytes per second a started frame must keep up (default 64K)
///   --max-frame SIZE        largest frame accepted (default 64M)
///   --emulate-link SHAPE    bandwidth and delay of outgoing links, e.g. 100mbit,5ms
inline constexpr const char* kLinkHelp = R"(  --idle-timeout MS     a peer silent this long is lost (default 5000)
  --heartbeat MS        ping period, below every peer's idle timeout (default 1000)
  --handshake-timeout MS  TCP connect + TLS handshake limit (default 5000)
  --frame-grace MS      slack for a started frame before --min-rate applies (default 2000)
  --min-rate SIZE       bytes/s a started frame must keep up: slower peers are cut off (default 64K)
  --max-frame SIZE      largest frame accepted (default 64M)
  --emulate-link SHAPE  emulate a slower network on this side's outgoing links, e.g.
                        100mbit,5ms (bandwidth and one-way delay, shaped in the transport)
)";

inline const std::initializer_list<const char*> kLinkFlags = {"idle-timeout", "heartbeat", "handshake-timeout",
                                                             "frame-grace", "min-rate", "max-frame",
                                                             "emulate-link"};

inline void link_options_from_args(const Args& args, LinkOptions& link, std::chrono::milliseconds& heartbeat) {
    using ms = std::chrono::milliseconds;
    link.idle_timeout = ms(args.num<long long>({"idle-timeout"}, link.idle_timeout.count()));
    heartbeat = ms(args.num<long long>({"heartbeat"}, heartbeat.count()));
    link.handshake_timeout = ms(args.num<long long>({"handshake-timeout"}, link.handshake_timeout.count()));
    link.frame_grace = ms(args.num<long long>({"frame-grace"}, link.frame_grace.count()));
    if (args.has("min-rate")) link.min_rate_bytes_per_s = static_cast<double>(parse_bytes(args.str({"min-rate"})));
    if (args.has("max-frame")) link.max_frame = parse_bytes(args.str({"max-frame"}));
    if (args.has("emulate-link")) link.shape = LinkShape::parse(args.str({"emulate-link"}));
    if (link.idle_timeout.count() <= 0 || heartbeat.count() <= 0 || link.handshake_timeout.count() <= 0 ||
        link.frame_grace.count() < 0 || link.min_rate_bytes_per_s <= 0 || link.max_frame < 1024)
        throw std::runtime_error("link timings must be positive (and --max-frame at least 1K)");
    if (heartbeat >= link.idle_timeout)
        throw std::runtime_error("--heartbeat must be shorter than --idle-timeout, or live peers time out");
}

/// The link flags given on this command line, to pass on to child workers.
inline std::vector<std::string> link_args_given(const Args& args) {
    std::vector<std::string> out;
    for (const char* f : kLinkFlags)
        if (args.has(f)) {
            out.push_back(std::string("--") + f);
            out.push_back(args.str({f}));
        }
    return out;
}

inline std::string default_cache_dir(const std::string& name) {
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/tandem/" + name;
    if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/tandem/" + name;
    return "/tmp/tandem-cache/" + name;
}

inline void log_line(const std::string& who, const std::string& line) {
    using namespace std::chrono;
    const auto ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count() % 100000000;
    std::fprintf(stderr, "[%08lld %s] %s\n", static_cast<long long>(ms), who.c_str(), line.c_str());
}

}  // namespace tandem::cli
