// Progress of a GGUF file being written tensor by tensor (tandem quantize,
// tandem synth): on a terminal one line redrawn per tensor, in a log one
// line per tenth of the bytes. Files under 64 MiB print nothing.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace tandem::cli {

class WriteProgress {
public:
    /// `p` has tensor, n_tensors, bytes_done, bytes_total and name
    /// (QuantizeProgress, SynthProgress).
    template <class P>
    void operator()(const P& p) {
        if (p.bytes_total < (64u << 20)) return;  // small files are written before progress could matter
        const double frac = p.bytes_total ? static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total) : 1.0;
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
        if (tty_) {
            std::fprintf(stderr, "\r  [%4zu/%zu] %5.1f%%  %6.1f s  %-32s", p.tensor, p.n_tensors, 100.0 * frac, secs,
                         std::string(p.name).c_str());
            if (p.tensor == p.n_tensors) std::fputc('\n', stderr);
        } else if (const int d = static_cast<int>(frac * 10); d != last_decile_) {
            last_decile_ = d;
            std::fprintf(stderr, "  [%4zu/%zu] %5.1f%%  %6.1f s\n", p.tensor, p.n_tensors, 100.0 * frac, secs);
        }
        std::fflush(stderr);
    }
    double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

private:
    bool tty_ = ::isatty(2) != 0;
    std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
    int last_decile_ = -1;
};

}  // namespace tandem::cli
