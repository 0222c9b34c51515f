// tandem plan: where each block of a model should run. Gets device profiles
// (measured live from running workers, read from a cluster file, or N copies
// of this machine), solves the placement MILP with GLPK, and prints the plan,
// its predicted time per token, the gain over the usual baselines, and why it
// chose what it chose.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <tandem/device/cpu_device.hpp>
#include <tandem/placement/solver.hpp>
#include <tandem/runtime/placement_plan.hpp>
#include <tandem/runtime/profiler.hpp>

#include "args.hpp"
#include "commands.hpp"
#include "live_plan.hpp"
#include "model_source.hpp"
#include "net_common.hpp"
#include "plan_table.hpp"

namespace tandem::cli {

namespace {

constexpr const char* kPlanHelp = R"(usage: tandem plan [-m MODEL.gguf] (--devices HOST:PORT,... | --profiles FILE | --local N) [options]

Plans which device runs which blocks of a model (GLPK MILP) and predicts the
time per token. Without -m it uses the embedded stories260K model.

  -m, --model FILE        GGUF model to plan for
      --profiles FILE     cluster file: devices and links (format: examples/profiles/README.md);
                          devices given by a speed factor are scaled from this machine's profile
      --local N           plan for N copies of this machine (profiled), with:
        --speeds LIST       speed factor of each copy, e.g. 1,0.5,0.25 (default all 1)
        --memory LIST       memory of each copy, e.g. 2G,1G (one value: all; default: RAM / N)
        --link-ms MS        latency between copies (default 5)
        --link-mbps MBPS    bandwidth between copies (default 100)
      --devices LIST      workers started with `tandem worker` (host:port,...): each is profiled
                          live (it runs the model's blocks on its own device) and every link
                          is probed; with --key FILE (TLS) or --insecure, and:
%s      --objective O       latency (one request, default) or throughput (K requests in flight)
      --in-flight K       requests in flight for throughput (default 4 with throughput, else 1)
      --context N         KV cache positions reserved per sequence (default: the model's)
      --sequences S       sequences whose caches each device keeps (default: K)
      --layers            cut only between whole layers (default: also inside a layer)
      --time-limit S      GLPK time limit in seconds (default 10)
      --threads N         threads of this machine's profile (default: all cores)
      --cache FILE        profile cache (default: $XDG_CACHE_HOME or ~/.cache, tandem/profiles.json)
      --refresh           measure this machine (or with --devices, the workers) again
      --save FILE         write the cluster as planned (absolute times) as a cluster file
Link timing (with --devices):
%s)";

std::string host_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "this-machine";
    return buf;
}

}  // namespace

int cmd_plan(int argc, char** argv) {
    Args args(argc, argv, {"help", "h", "refresh", "refresh-profiles", "layers", "insecure"});
    if (args.flag({"help", "h"})) {
        std::printf(kPlanHelp, kLiveHelp, kLinkHelp);
        return 0;
    }
    const auto devices_list = args.str({"devices"});
    const auto profiles_path = args.str({"profiles"});
    const auto local = args.num<int>({"local"}, 0);
    const auto objective_s = args.str({"objective"}, "latency");
    if (objective_s != "latency" && objective_s != "throughput")
        throw std::runtime_error("--objective must be latency or throughput, not '" + objective_s + "'");
    const auto objective = objective_s == "latency" ? Objective::Latency : Objective::Throughput;
    const auto in_flight = args.num<std::int64_t>({"in-flight"}, objective == Objective::Throughput ? 4 : 1);
    const auto context = args.num<std::int64_t>({"context"}, 0);
    const auto sequences = args.num<std::int64_t>({"sequences"}, in_flight);
    const bool layers = args.flag({"layers"});
    const auto time_limit = args.num<double>({"time-limit"}, 10.0);
    const auto threads = args.num<unsigned>({"threads"}, std::max(1u, std::thread::hardware_concurrency()));
    const auto cache_path = args.str({"cache"});
    const bool refresh = args.flag({"refresh"});
    const auto save_path = args.str({"save"});
    const auto speeds_s = args.str({"speeds"});
    const auto memory_s = args.str({"memory"});
    const auto link_ms = args.num<double>({"link-ms"}, 5.0);
    const auto link_mbps = args.num<double>({"link-mbps"}, 100.0);
    std::unique_ptr<TlsConfig> tls;
    LiveProfileOptions live;
    if (!devices_list.empty()) {
        tls = tls_from_args(args);
        live = live_options_from_args(args, {"cache", "profile-cache"});
        live.refresh = live.refresh || refresh;
        link_options_from_args(args, live.link, live.heartbeat);
        live.tls = tls.get();
        live.log = [](const std::string& l) { log_line("plan", l); };
    }
    auto file = open_model_file(args);
    args.reject_unknown();

    if ((devices_list.empty() ? 0 : 1) + (profiles_path.empty() ? 0 : 1) + (local > 0 ? 1 : 0) != 1)
        throw std::runtime_error("give one of --devices HOST:PORT,..., --profiles FILE or --local N (see --help)");
    if (in_flight < 1 || sequences < 1 || context < 0) throw std::runtime_error("--in-flight, --sequences must be >= 1");

    const auto model = Model::from_file(std::move(file));
    const auto shape = model_shape(*model);
    const auto& c = model->config();

    // This machine's profile: the reference speed factors scale.
    std::optional<DeviceProfile> reference;
    const bool need_reference = local > 0 || (!profiles_path.empty() && cluster_file_needs_reference(profiles_path));
    if (need_reference) {
        CpuDevice cpu({.name = host_name(), .threads = threads});
        bool measured = false;
        const auto cache = cache_path.empty() ? default_profile_cache() : cache_path;
        reference = cached_profile(*model, cpu, cache, refresh, {}, &measured);
        std::fprintf(stderr, "%s this machine (%s, %u threads): attention %s, ffn %s per token (%s %s)\n",
                     measured ? "profiled" : "cached profile of", reference->name.c_str(), reference->threads,
                     format_ms(reference->decode[CostKind::Attention]).c_str(),
                     format_ms(reference->decode[CostKind::Ffn]).c_str(), measured ? "saved to" : "from",
                     cache.c_str());
    }

    Cluster cluster;
    if (local > 0) {
        const auto speeds = split_list(speeds_s);
        const auto mems = split_list(memory_s);
        if (!speeds.empty() && static_cast<int>(speeds.size()) != local)
            throw std::runtime_error("--speeds needs " + std::to_string(local) + " values");
        if (mems.size() > 1 && static_cast<int>(mems.size()) != local)
            throw std::runtime_error("--memory needs one value or " + std::to_string(local));
        std::vector<DeviceProfile> devs;
        for (int i = 0; i < local; ++i) {
            const double speed = speeds.empty() ? 1.0 : std::stod(speeds[static_cast<std::size_t>(i)]);
            auto p = reference->with_speed(speed);
            p.name = "local" + std::to_string(i);
            p.memory_bytes = mems.empty() ? reference->memory_bytes / static_cast<std::uint64_t>(local)
                                          : parse_bytes(mems[mems.size() == 1 ? 0 : static_cast<std::size_t>(i)]);
            devs.push_back(p);
        }
        cluster = Cluster(devs, Link::from_ms_mbps(link_ms, link_mbps));
        cluster.set_link_both(Cluster::kCoordinator, 0, Link::local());  // the coordinator runs on copy 0
    } else if (!devices_list.empty()) {
        std::vector<WorkerEndpoint> endpoints;
        for (const auto& d : split_list(devices_list)) endpoints.push_back(WorkerEndpoint::parse(d));
        const auto lp = profile_live(*model, endpoints, live);
        print_live_profile(stdout, lp);
        cluster = lp.cluster;
    } else {
        cluster = load_cluster(profiles_path, reference ? &*reference : nullptr);
    }
    if (!save_path.empty()) {
        std::FILE* f = std::fopen(save_path.c_str(), "w");
        if (!f) throw std::runtime_error("cannot write " + save_path);
        const auto text = cluster_to_json(cluster).dump();
        std::fwrite(text.data(), 1, text.size(), f);
        std::fclose(f);
    }

    CostOptions copt;
    copt.context = context;
    copt.sequences = sequences;
    copt.in_flight = in_flight;
    const CostModel m(shape, cluster, copt);
    SolverOptions sopt;
    sopt.objective = objective;
    sopt.layer_granularity = layers;
    sopt.time_limit_s = time_limit;
    const auto r = solve_placement(m, sopt);

    print_plan_table(stdout,
                     {.model_name = model->file().name(), .architecture = c.architecture, .n_layers = c.n_layers,
                      .objective = objective, .in_flight = in_flight, .layers = layers},
                     m, r);
    return 0;
}

}  // namespace tandem::cli
