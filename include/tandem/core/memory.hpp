// Process memory as the OS reports it: peak and current resident set size.
// getrusage and /proc/self/statm exist on Linux and Android alike.
#pragma once

#include <cstdint>
#include <cstdio>

#include <sys/resource.h>
#include <unistd.h>

namespace tandem {

/// Peak resident set size of this process, in bytes (0 if unknown).
inline std::uint64_t peak_rss_bytes() noexcept {
    struct rusage ru {};
    if (::getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return static_cast<std::uint64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

/// Current resident set size of this process, in bytes (0 if unknown).
inline std::uint64_t current_rss_bytes() noexcept {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    if (f == nullptr) return 0;
    unsigned long long size = 0, resident = 0;
    const int n = std::fscanf(f, "%llu %llu", &size, &resident);
    std::fclose(f);
    if (n != 2) return 0;
    return static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

inline double to_mib(std::uint64_t bytes) noexcept { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace tandem
