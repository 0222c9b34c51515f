// tandem plan: where each block of a model should run. Reads device profiles
// (a cluster file, or N copies of this machine), solves the placement MILP
// with GLPK, and prints the plan, its predicted time per token, the gain over
// the usual baselines, and why it chose what it chose.
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
#include "model_source.hpp"

namespace tandem::cli {

namespace {

constexpr const char* kHelp = R"(usage: tandem plan [-m MODEL.gguf] (--profiles FILE | --local N) [options]

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
      --devices LIST      live profiles from workers (host:port,...): needs the network layer
      --objective O       latency (one request, default) or throughput (K requests in flight)
      --in-flight K       requests in flight for throughput (default 4 with throughput, else 1)
      --context N         KV cache positions reserved per sequence (default: the model's)
      --sequences S       sequences whose caches each device keeps (default: K)
      --layers            cut only between whole layers (default: also inside a layer)
      --time-limit S      GLPK time limit in seconds (default 10)
      --threads N         threads of this machine's profile (default: all cores)
      --cache FILE        profile cache (default: $XDG_CACHE_HOME or ~/.cache, tandem/profiles.json)
      --refresh           measure this machine again instead of using the cache
      --save FILE         write the cluster as planned (absolute times) as a cluster file
)";

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::string cur;
    for (const char c : s) {
        if (c == ',') {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

std::string default_cache_path() {
    std::string base;
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) base = x;
    else if (const char* h = std::getenv("HOME"); h && *h) base = std::string(h) + "/.cache";
    else base = "/tmp";
    ::mkdir(base.c_str(), 0755);
    base += "/tandem";
    ::mkdir(base.c_str(), 0755);
    return base + "/profiles.json";
}

std::string host_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "this-machine";
    return buf;
}

// "embedding + layers 0-2 + attention of 3"
std::string describe_blocks(std::int64_t begin, std::int64_t end, std::int64_t n_blocks) {
    std::vector<std::string> parts;
    std::int64_t b = begin;
    if (b == 0) {
        parts.push_back("embedding");
        b = 1;
    }
    const std::int64_t last = std::min(end, n_blocks - 1);  // middle blocks are [1, n_blocks - 1)
    if (b < last && b % 2 == 0) {  // starts with an FFN half
        parts.push_back("ffn of " + std::to_string((b - 1) / 2));
        ++b;
    }
    const std::int64_t full_end = b + (last - b) / 2 * 2;  // whole layers [b, full_end)
    if (full_end > b) {
        const auto l0 = (b - 1) / 2, l1 = (full_end - 1) / 2 - 1;
        parts.push_back(l0 == l1 ? "layer " + std::to_string(l0)
                                 : "layers " + std::to_string(l0) + "-" + std::to_string(l1));
    }
    if (full_end < last) parts.push_back("attention of " + std::to_string((full_end - 1) / 2));
    if (end == n_blocks) parts.push_back("head");
    std::string out;
    for (const auto& p : parts) out += (out.empty() ? "" : " + ") + p;
    return out;
}

}  // namespace

int cmd_plan(int argc, char** argv) {
    Args args(argc, argv, {"help", "h", "refresh", "layers"});
    if (args.flag({"help", "h"})) {
        std::fputs(kHelp, stdout);
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
    auto file = open_model_file(args);
    args.reject_unknown();

    if (!devices_list.empty())
        throw std::runtime_error("--devices needs live workers: profiling devices over the network comes with "
                                 "`tandem worker` support in the placement layer; for now describe them in a "
                                 "cluster file (--profiles) or use --local N");
    if (profiles_path.empty() == (local <= 0))
        throw std::runtime_error("give either --profiles FILE or --local N (see --help)");
    if (in_flight < 1 || sequences < 1 || context < 0) throw std::runtime_error("--in-flight, --sequences must be >= 1");

    const auto model = Model::from_file(std::move(file));
    const auto shape = model_shape(*model);
    const auto& c = model->config();

    // This machine's profile: the reference speed factors scale.
    std::optional<DeviceProfile> reference;
    const bool need_reference = local > 0 || cluster_file_needs_reference(profiles_path);
    if (need_reference) {
        CpuDevice cpu({.name = host_name(), .threads = threads});
        bool measured = false;
        const auto cache = cache_path.empty() ? default_cache_path() : cache_path;
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
    const auto& e = r.evaluation;

    std::printf("model: %s (%s, %lld layers = %lld blocks, %s of weights), KV cache for %lld positions x %lld sequences\n",
                model->file().name().c_str(), c.architecture.c_str(), static_cast<long long>(c.n_layers),
                static_cast<long long>(c.n_blocks()), format_bytes(shape.total_weight_bytes()).c_str(),
                static_cast<long long>(m.options().context), static_cast<long long>(m.options().sequences));
    std::printf("objective: %s%s; cuts %s\n\n", objective_name(objective),
                objective == Objective::Throughput ? (" with " + std::to_string(in_flight) + " requests in flight").c_str()
                                                   : " of one request",
                layers ? "between layers" : "anywhere (sub-layer)");

    std::printf("%-5s %-14s %-9s %-44s %-23s %11s %11s\n", "stage", "device", "blocks", "runs", "memory used / avail",
                "compute ms", "send ms");
    for (std::size_t i = 0; i < e.stages.size(); ++i) {
        const auto& s = e.stages[i];
        const auto d = static_cast<std::size_t>(s.device);
        const bool bottleneck = e.bottleneck == Bottleneck::Stage && e.bottleneck_index == static_cast<int>(i);
        const std::string mem = format_bytes(e.memory_used[d]) + " / " + format_bytes(e.memory_available[d]);
        std::printf("%-5zu %-14s %-9s %-44s %-23s %11.3f %11.3f%s\n", i, cluster.device(s.device).name.c_str(),
                    (std::to_string(s.begin) + ":" + std::to_string(s.end)).c_str(),
                    describe_blocks(s.begin, s.end, shape.n_blocks()).c_str(), mem.c_str(), s.compute_s * 1e3,
                    s.send_s * 1e3, bottleneck ? "  <- bottleneck" : "");
    }
    for (int d = 0; d < cluster.size(); ++d)
        if (!r.placement.uses(d))
            std::printf("%-5s %-14s %-9s %-44s %-23s\n", "-", cluster.device(d).name.c_str(), "-", "(left out)",
                        ("0 / " + format_bytes(cluster.device(d).memory_bytes)).c_str());
    std::printf("\npredicted: %.3f ms per token for one request (%.1f tokens/s)", e.latency_s * 1e3, 1 / e.latency_s);
    if (in_flight > 1)
        std::printf("; %.3f ms per token with %lld in flight (%.1f tokens/s)", e.throughput_s * 1e3,
                    static_cast<long long>(in_flight), 1 / e.throughput_s);
    std::printf("\n");

    std::string split;
    for (const auto& s : r.placement.stages)
        split += (split.empty() ? "b" : ",b") + std::to_string(s.begin) + ":" + std::to_string(s.end);
    std::printf("as a split: --split %s\n\n", split.c_str());

    std::printf("gain over the usual splits (predicted %s, ms per token; gain = theirs / ours):\n", objective_name(objective));
    for (const auto& b : baselines(m, objective)) {
        if (!b.evaluation) {
            std::printf("  %-22s no single device holds the model\n", b.name.c_str());
            continue;
        }
        const double v = b.evaluation->value(objective);
        std::printf("  %-22s %10.3f ms   %6.2fx%s   %s\n", b.name.c_str(), v * 1e3, v / r.value(),
                    b.evaluation->fits ? "" : "  (exceeds memory)", b.placement->describe(cluster).c_str());
    }
    std::printf("\nwhy:\n");
    for (const auto& line : r.explanation) std::printf("  - %s\n", line.c_str());
    return 0;
}

}  // namespace tandem::cli
