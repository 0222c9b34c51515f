// tandem worker: serves blocks of a model for a coordinator. Needs no model
// file: the coordinator streams the weights it lacks (cached on disk by
// content hash), or --model maps a local copy.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <tandem/runtime/worker.hpp>

#include "args.hpp"
#include "commands.hpp"
#include "net_common.hpp"

namespace tandem::cli {

namespace {
constexpr const char* kWorkerHelp = R"(usage: tandem worker --listen ADDR:PORT [options]

Serves a slice of a model for a coordinator (tandem run). PORT 0 picks a free port;
the chosen one is printed as "listening on ADDR:PORT".

  --listen ADDR:PORT    where to accept connections (default 127.0.0.1:0)
  --name NAME           this device's name (default: worker)
  --memory-limit SIZE   refuse assignments above this (e.g. 512M, 2G)
  --threads N           compute threads (default: all cores)
  --cache-dir DIR       weight cache (default: $XDG_CACHE_HOME/tandem/NAME or ~/.cache/tandem/NAME)
  --model FILE          a local copy of the model to memory-map instead of receiving weights
  --key FILE            cluster key made by `tandem keygen` (TLS 1.3)
  --insecure            plaintext links, no authentication (trusted test networks only)
Emulating a slower device (a phone on this machine):
  --emulate PRESET      high-end (1.5x slower, 8G, 2 threads), mid-range (3x, 4G, 2),
                        low-end (6x, 2G, 1) or desktop; --memory-limit/--threads override
  --slowdown F          compute F times slower than this machine (sleeps the difference)
  --slowdown-noise N    each step's slowdown varies by up to +-N (0..1), like a phone with other work
  --slowdown-schedule S extra slowdowns over time, e.g. 20s:3x,40s:1x (seconds
                        from when the coordinator assigns blocks)
%s)";

Worker* g_worker = nullptr;
void on_signal(int) {
    if (g_worker) g_worker->stop();
}
}  // namespace

int cmd_worker(int argc, char** argv) {
    Args args(argc, argv, {"help", "h", "insecure"});
    if (args.flag({"help", "h"})) {
        std::printf(kWorkerHelp, kLinkHelp);
        return 0;
    }
    WorkerOptions opt;
    const auto listen = WorkerEndpoint::parse(args.str({"listen"}, "127.0.0.1:0"), true);
    opt.host = listen.host;
    opt.port = listen.port;
    opt.name = args.str({"name"}, "worker");
    if (args.has("emulate")) {
        opt.emulation = EmulationProfile::preset(args.str({"emulate"}));
        opt.memory_limit = opt.emulation.memory_bytes;
        opt.threads = opt.emulation.threads;
    }
    if (args.has("slowdown")) opt.emulation.slowdown = args.num<double>({"slowdown"}, 1.0);
    if (args.has("slowdown-noise")) opt.emulation.noise = args.num<double>({"slowdown-noise"}, 0.0);
    if (args.has("slowdown-schedule"))
        opt.emulation.schedule = SlowdownSchedule::parse(args.str({"slowdown-schedule"}));
    if (args.has("memory-limit")) opt.memory_limit = parse_bytes(args.str({"memory-limit"}));
    if (args.has("threads") || args.has("t")) opt.threads = args.num<unsigned>({"threads", "t"}, 0);
    opt.cache_dir = args.str({"cache-dir"}, default_cache_dir(opt.name));
    opt.model_path = args.str({"model", "m"});
    auto tls = tls_from_args(args);
    opt.tls = tls.get();
    link_options_from_args(args, opt.link, opt.heartbeat);
    opt.log = [name = opt.name](const std::string& line) { log_line(name, line); };
    args.reject_unknown();

    Worker worker(opt);
    g_worker = &worker;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::printf("tandem worker '%s' listening on %s:%u (%s)\n", opt.name.c_str(), opt.host.c_str(),
                static_cast<unsigned>(worker.port()), tls ? "TLS 1.3, cluster key" : "plaintext, --insecure");
    std::fflush(stdout);
    worker.run();
    g_worker = nullptr;
    return 0;
}

}  // namespace tandem::cli
