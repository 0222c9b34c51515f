// Pieces the networked commands share: TLS from --key/--insecure, the
// default cache directory, and timestamped log lines.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

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
