// bench-paper: the LinguaLinked paper's three experiments on emulated phones,
// over the real transport, in one command.
//
//   1. one request at a time: the optimized placement (latency objective) vs
//      an even split (the paper's baseline), a memory-proportional split and
//      the best single device;
//   2. K requests in flight: the same comparison, throughput objective;
//   3. a device slows down mid-run (--slowdown-schedule), with the runtime
//      balancer off and on (RemoteOptions::balance; --no-balancer: off only).
//
// Every device is a `tandem worker` child process with an emulation preset
// (high-end / mid-range / low-end: compute slowdown by sleeping, memory
// limit, one thread), the coordinator is this process, and links are
// emulated by network namespaces + tc (--net netns), by the transport's token
// bucket (--net shaped), or not at all (--net none). Placement plans with
// this machine's measured block times scaled by each preset's factor and the
// emulated link. Results: a terminal table, results.json, tokens_per_s.png,
// timeline.png and trace.json in --out.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <tandem/device/cpu_device.hpp>
#include <tandem/emulation/emulated_device.hpp>
#include <tandem/placement/solver.hpp>
#include <tandem/runtime/placement_plan.hpp>
#include <tandem/runtime/profiler.hpp>
#include <tandem/runtime/remote_pipeline.hpp>
#include <tandem/tokenizer/tokenizer.hpp>

#include "report.hpp"
#include "workers.hpp"

namespace tandem::paper {
namespace {

using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

struct Mix {
    std::string name;
    std::vector<std::string> presets;
};

struct ModelCase {
    std::string name;  // short, for the table
    std::string path;
    int tokens = 16;   // generated per request
    int reps = 3;
    std::vector<Mix> mixes;
};

struct Config {
    bool quick = false;
    std::string out = "paper-results";
    std::string cache;  // synthetic models, profiles, worker caches
    std::string net = "auto";
    std::string link = "100mbit,5ms";
    int in_flight = 4;
    double scale = 1.0;  // every preset's slowdown is multiplied by this
    int reps = 0;        // 0: per model
    std::string tandem = TANDEM_CLI_PATH;
    std::string models;  // comma list of stories260K, tinyllama-1.1b, llama-3b; empty: by mode
    std::string netns_script = TANDEM_PAPER_DIR "/netns.sh";
    double slow_at = 0;  // experiment 3: seconds after assignment; 0: by mode
    double slow_factor = 3;
    bool exp3_only = false;  // skip experiments 1 and 2 (experiment 3 uses the throughput plan)
    bool balancer = true;    // experiment 3's "balancer on" arm (--no-balancer: without it)
};

const Mix kMix3{"3dev", {"high-end", "mid-range", "low-end"}};
const Mix kMix4{"4dev", {"high-end", "mid-range", "mid-range", "low-end"}};

struct Env {
    Config cfg;
    NetMode mode = NetMode::Shaped;
    std::string mode_note;        // why this mode, and who adds what
    LinkShape link;               // the emulated link (every pair, the coordinator's too)
    LinkShape transport_shape;    // what the transport itself must add
    std::unique_ptr<NetnsSetup> netns;
    std::string log_dir;
};

std::vector<std::string> split_csv(const std::string& s) {
    std::vector<std::string> out;
    std::string cur;
    for (const char c : s + ",") {
        if (c == ',') {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    return out;
}

bool file_exists(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0;
}

// ---- network mode ------------------------------------------------------------

void choose_network(Env& env) {
    const auto& c = env.cfg;
    env.link = LinkShape::parse(c.link);
    std::string probe_out;
    int probe = -1;
    if (c.net == "auto" || c.net == "netns") probe = run_command(c.netns_script + " probe", &probe_out);
    while (!probe_out.empty() && probe_out.back() == '\n') probe_out.pop_back();
    if (c.net == "auto") {
        env.mode = probe == 0 ? NetMode::Netns : NetMode::Shaped;
        env.mode_note = probe == 0 ? "netns: namespaces, veth, bridge, tc netem + tbf all work"
                                   : "shaped (auto): netns mode unavailable here: " + probe_out;
    } else if (c.net == "netns") {
        if (probe == 1) throw std::runtime_error("--net netns: " + probe_out);
        env.mode = NetMode::Netns;
        env.mode_note = probe == 0 ? "netns: tc netem delay + tbf rate in each node's namespace"
                                   : "netns: tbf rate in each node's namespace; " + probe_out +
                                         ", so the delay is added in the transport";
    } else if (c.net == "shaped") {
        env.mode = NetMode::Shaped;
        env.mode_note = "shaped: token bucket + delay inside the transport";
    } else if (c.net == "none") {
        env.mode = NetMode::None;
        env.mode_note = "none: plain loopback, no link emulation";
    } else {
        throw std::runtime_error("--net must be netns, shaped, none or auto");
    }
    if (env.mode == NetMode::Shaped) env.transport_shape = env.link;
    if (env.mode == NetMode::None) env.link = LinkShape{};
    if (env.mode == NetMode::Netns) {
        char bw[32], delay[32];
        std::snprintf(bw, sizeof bw, "%.0fbit", env.link.bandwidth_bps > 0 ? env.link.bandwidth_bps : 10e9);
        std::snprintf(delay, sizeof delay, "%.3fms", env.link.latency_ms);
        env.netns = std::make_unique<NetnsSetup>(c.netns_script, 4, bw, delay);
        if (!env.netns->kernel_delay()) env.transport_shape = LinkShape{0, env.link.latency_ms, 0};
    }
}

// ---- models and profiles -----------------------------------------------------

std::string ensure_synth(const Env& env, const std::string& shape, const std::string& type, int ctx) {
    const std::string path = env.cfg.cache + "/" + shape + "-" + type + ".gguf";
    if (file_exists(path)) return path;
    std::printf("making %s (once; kept in %s) ...\n", path.c_str(), env.cfg.cache.c_str());
    std::fflush(stdout);
    const auto t0 = clock_type::now();
    std::string out;
    const std::string tmp = path + ".tmp" + std::to_string(::getpid());
    const std::string cmd = env.cfg.tandem + " synth --shape " + shape + " --type " + type + " --ctx " +
                            std::to_string(ctx) + " -o " + tmp;
    if (run_command(cmd, &out) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0)
        throw std::runtime_error("`" + cmd + "` failed: " + out);
    std::printf("  made in %.1f s\n", since(t0));
    return path;
}

DeviceProfile reference_profile(const Env& env, const Model& model) {
    CpuDevice cpu({.name = "this-machine", .threads = 1});
    ProfilerOptions po;
    po.reps = 3;
    po.prefill_tokens = 8;
    po.decode_position = 32;
    bool measured = false;
    auto p = cached_profile(model, cpu, env.cfg.cache + "/profiles.json", false, po, &measured);
    std::printf("  %s this machine (1 thread): attention %.3f ms, ffn %.3f ms, head %.3f ms per token\n",
                measured ? "profiled" : "cached profile of", p.decode[CostKind::Attention] * 1e3,
                p.decode[CostKind::Ffn] * 1e3, p.decode[CostKind::Head] * 1e3);
    return p;
}

double preset_slowdown(const Env& env, const std::string& preset) {
    return EmulationProfile::preset(preset).slowdown * env.cfg.scale;
}

// Memory each device gives the model: a share of what the whole model needs
// (weights + KV caches for 512 positions x K sequences), so that no device
// holds the whole model, as in the paper (whose premise is a model too large
// for one phone), and the even split still fits. The presets' own budgets
// (8/4/2 GiB) would hold all of these models on the high-end phone, and the
// best plan for one request would then be that phone alone.
double memory_share(const std::string& preset) {
    if (preset == "high-end") return 0.65;
    if (preset == "mid-range") return 0.5;
    return 0.4;
}

std::uint64_t device_memory(const Env& env, const ModelShape& shape, const std::string& preset) {
    std::uint64_t need = shape.total_weight_bytes();
    for (const auto& b : shape.blocks)
        need += b.kv_bytes_per_position * 512 * static_cast<std::uint64_t>(env.cfg.in_flight);
    return static_cast<std::uint64_t>(memory_share(preset) * static_cast<double>(need));
}

std::vector<std::string> device_names(const Mix& mix) {
    std::vector<std::string> names;
    for (std::size_t i = 0; i < mix.presets.size(); ++i) names.push_back(mix.presets[i] + "-" + std::to_string(i + 1));
    return names;
}

Cluster make_cluster(const Env& env, const DeviceProfile& ref, const Mix& mix, const ModelShape& shape) {
    std::vector<DeviceProfile> devs;
    const auto names = device_names(mix);
    for (std::size_t i = 0; i < mix.presets.size(); ++i) {
        auto p = ref.with_speed(1.0 / preset_slowdown(env, mix.presets[i]));
        p.name = names[i];
        p.memory_bytes = device_memory(env, shape, mix.presets[i]);
        devs.push_back(p);
    }
    Link l = Link::local();
    if (env.link.active())
        l = {env.link.latency_ms / 1e3, env.link.bandwidth_bps > 0 ? env.link.bytes_per_s() : Link::local().bytes_per_s};
    return Cluster(devs, l);
}

// ---- workers and runs --------------------------------------------------------

std::unique_ptr<WorkerProcesses> start_workers(const Env& env, const std::string& model_path, const Mix& mix,
                                               const Cluster& cluster, const std::map<int, std::string>& schedules = {}) {
    auto w = std::make_unique<WorkerProcesses>();
    const auto names = device_names(mix);
    for (std::size_t i = 0; i < mix.presets.size(); ++i) {
        std::vector<std::string> argv;
        std::string host = "127.0.0.1";
        if (env.mode == NetMode::Netns) {
            argv = {"ip", "netns", "exec", NetnsSetup::worker_netns(static_cast<int>(i))};
            host = NetnsSetup::worker_host(static_cast<int>(i));
        }
        char slow[32];
        std::snprintf(slow, sizeof slow, "%.4g", preset_slowdown(env, mix.presets[i]));
        for (const std::string& a : {env.cfg.tandem, std::string("worker"), std::string("--listen"), host + ":0",
                                    std::string("--name"), names[i], std::string("--emulate"), mix.presets[i],
                                    std::string("--slowdown"), std::string(slow), std::string("--threads"),
                                    std::string("1"), std::string("--model"), model_path, std::string("--insecure"),
                                    std::string("--cache-dir"), env.cfg.cache + "/worker-cache"})
            argv.push_back(a);
        argv.push_back("--memory-limit");
        argv.push_back(std::to_string(cluster.device(static_cast<int>(i)).memory_bytes));
        if (env.transport_shape.active()) {
            char shape[64];
            std::snprintf(shape, sizeof shape, "%.6gbit,%.6gms", env.transport_shape.bandwidth_bps,
                          env.transport_shape.latency_ms);
            if (env.transport_shape.bandwidth_bps <= 0) std::snprintf(shape, sizeof shape, "%.6gms", env.transport_shape.latency_ms);
            argv.push_back("--emulate-link");
            argv.push_back(shape);
        }
        if (const auto it = schedules.find(static_cast<int>(i)); it != schedules.end()) {
            argv.push_back("--slowdown-schedule");
            argv.push_back(it->second);
        }
        w->spawn(argv, env.log_dir + "/" + names[i] + ".log");
    }
    return w;
}

struct Sample {
    double t;
    std::vector<double> busy_s;  // cumulative busy seconds per plan stage
};

struct RunOutcome {
    double tokens_per_s = 0;
    double seconds = 0;
    double setup_seconds = 0;  // pipeline construction: connect, assign, load
    std::size_t tokens = 0;
    std::vector<double> token_times;  // s since run start, every sampled token
    std::vector<Sample> samples;
    std::vector<std::string> events;  // the balancer's, as they happened (with the run time)
    std::vector<std::vector<std::int32_t>> texts;  // each request's tokens, in submission order
    std::vector<RecoveryEvent> recoveries;         // device losses recovered from
};

// Failover for a run: re-plan with `replan` when a worker is lost, and call
// `kill` once `kill_after` tokens have been sampled (0: never).
struct FailoverHooks {
    std::function<Plan(const std::vector<DeviceId>&)> replan;
    std::size_t kill_after = 0;
    std::function<void()> kill;
};

RunOutcome run_once(const Env& env, const std::shared_ptr<const Model>& model, const std::vector<WorkerEndpoint>& eps,
                    const Plan& plan, int k, int tokens, const std::vector<std::int32_t>& prompt, bool balance,
                    bool sample, TraceRecorder* trace, const FailoverHooks* failover = nullptr) {
    RemoteOptions ro;
    ro.link.shape = env.transport_shape;
    ro.link.idle_timeout = std::chrono::milliseconds(30000);  // slow emulated phones on a busy 2-core machine
    ro.max_in_flight = static_cast<std::size_t>(k);
    ro.trace = trace;
    ro.balance = balance;
    if (failover) {
        ro.failover = true;
        ro.replan = [r = failover->replan](const std::vector<DeviceId>& alive, const std::map<DeviceId, DeviceProfile>&) {
            return r(alive);  // every worker was in the suite's cluster: its own profiles
        };
    }
    RunOutcome out;
    std::mutex mu;
    auto t0 = clock_type::now();
    ro.on_event = [&](const std::string& e) {
        std::lock_guard lock(mu);
        char at[32];
        std::snprintf(at, sizeof at, "%.2f s: ", since(t0));
        out.events.push_back(at + e);
    };
    const auto s0 = clock_type::now();
    RemotePipeline p(model, eps, plan, ro);
    out.setup_seconds = since(s0);
    t0 = clock_type::now();
    for (int i = 0; i < k; ++i) {
        RequestSpec r;
        r.prompt = prompt;
        r.max_tokens = tokens;
        r.sampler.seed = static_cast<std::uint64_t>(i);
        r.on_token = [&](RequestId, std::int32_t) {
            std::lock_guard lock(mu);
            out.token_times.push_back(since(t0));
            if (failover && failover->kill && out.token_times.size() == failover->kill_after) failover->kill();
            return true;
        };
        p.submit(std::move(r));
    }
    std::atomic<bool> done{false};
    std::thread poller;
    if (sample)
        poller = std::thread([&] {
            // Worker statistics while the run goes on: busy seconds per device.
            while (!done.load()) {
                Sample s;
                s.t = since(t0);
                try {
                    for (const auto& st : plan.stages) s.busy_s.push_back(p.stats(st.device).busy_seconds);
                } catch (const std::exception&) {
                    return;
                }
                out.samples.push_back(std::move(s));
                std::this_thread::sleep_for(std::chrono::milliseconds(250));
            }
        });
    t0 = clock_type::now();
    std::vector<RequestResult> results;
    try {
        results = p.run();
    } catch (...) {
        done = true;
        if (poller.joinable()) poller.join();
        throw;
    }
    out.seconds = since(t0);
    done = true;
    if (poller.joinable()) poller.join();
    for (const auto& r : results) {
        if (!r.error.empty()) throw std::runtime_error("request failed: " + r.error);
        out.tokens += r.tokens.size();
        out.texts.push_back(r.tokens);
    }
    out.recoveries = p.recoveries();
    out.tokens_per_s = static_cast<double>(out.tokens) / out.seconds;
    return out;
}

// ---- experiments 1 and 2 -----------------------------------------------------

// The cost model's options for a run of K requests in flight (each its own
// sequence, 512 positions): experiments 1-3 and the failover re-plans.
CostOptions suite_cost_options(int k) {
    CostOptions co;
    co.context = 512;
    co.sequences = k;
    co.in_flight = k;
    return co;
}

std::string describe(const Placement& p, const Cluster& c) { return p.describe(c); }

Row run_comparison(const Env& env, const ModelCase& mc, const Mix& mix, const std::shared_ptr<const Model>& model,
                   const Cluster& cluster, const std::vector<WorkerEndpoint>& eps,
                   const std::vector<std::int32_t>& prompt, int experiment, Placement* ours_out) {
    const auto objective = experiment == 1 ? Objective::Latency : Objective::Throughput;
    const int k = experiment == 1 ? 1 : env.cfg.in_flight;
    const auto co = suite_cost_options(k);
    const CostModel m(model_shape(*model), cluster, co);
    SolverOptions so;
    so.objective = objective;
    so.explain = false;
    so.time_limit_s = env.cfg.quick ? 5 : 20;
    const auto solved = solve_placement(m, so);
    if (ours_out) *ours_out = solved.placement;
    std::vector<DeviceId> ids;
    for (int i = 0; i < cluster.size(); ++i) ids.push_back(static_cast<DeviceId>(i + 1));

    Row row;
    row.experiment = experiment;
    row.model = mc.name;
    row.mix = mix.name;
    row.in_flight = k;
    row.tokens = mc.tokens;
    std::vector<std::optional<Placement>> placements{solved.placement};
    std::vector<std::string> names{"ours"};
    for (auto& b : baselines(m, objective)) {
        placements.push_back(b.placement);
        names.push_back(b.name);
    }
    for (std::size_t i = 0; i < placements.size(); ++i) {
        Arm a;
        a.name = names[i];
        if (!placements[i]) {
            a.skipped = "no device holds the model";
            row.arms.push_back(a);
            continue;
        }
        const auto e = m.evaluate(*placements[i]);
        a.placement = describe(*placements[i], cluster);
        a.predicted_tokens_per_s = 1.0 / e.value(objective);
        if (!e.fits) {
            a.skipped = "exceeds a device's memory";
            row.arms.push_back(a);
            continue;
        }
        for (std::size_t j = 0; j < i; ++j)
            if (placements[j] && *placements[j] == *placements[i] && !row.arms[j].tokens_per_s.empty()) {
                a.same_as = row.arms[j].name;
                a.tokens_per_s = row.arms[j].tokens_per_s;
                break;
            }
        if (a.same_as.empty()) {
            const auto plan = to_plan(*placements[i], ids);
            for (int r = 0; r < mc.reps; ++r)
                a.tokens_per_s.push_back(
                    run_once(env, model, eps, plan, k, mc.tokens, prompt, false, false, nullptr).tokens_per_s);
        }
        std::printf("  E%d %-12s %-4s %-20s %8.2f tok/s (predicted %8.2f)  %s%s\n", experiment, mc.name.c_str(),
                    mix.name.c_str(), a.name.c_str(), a.median_tokens_per_s(), a.predicted_tokens_per_s,
                    a.placement.c_str(), a.same_as.empty() ? "" : ("  (same placement as " + a.same_as + ")").c_str());
        std::fflush(stdout);
        row.arms.push_back(a);
    }
    return row;
}

// ---- experiment 3 ------------------------------------------------------------

Json run_slowdown(const Env& env, const ModelCase& mc, const std::shared_ptr<const Model>& model,
                  const Cluster& cluster, const Placement& ours, double ours_tokens_per_s,
                  const std::vector<std::int32_t>& prompt, std::vector<TimelineSeries>& series, TraceRecorder& trace,
                  int* tokens_out) {
    const Mix& mix = mc.mixes.front();
    const int k = env.cfg.in_flight;
    // The device that computes the most under the throughput plan slows down.
    const auto co = suite_cost_options(k);
    const CostModel m(model_shape(*model), cluster, co);
    const auto e = m.evaluate(ours);
    std::size_t worst = 0;
    for (std::size_t i = 0; i < e.stages.size(); ++i)
        if (e.stages[i].compute_s > e.stages[worst].compute_s) worst = i;
    const int victim = e.stages[worst].device;
    const double at = env.cfg.slow_at > 0 ? env.cfg.slow_at : (env.cfg.quick ? 2.0 : 8.0);
    char sched[64];
    std::snprintf(sched, sizeof sched, "%gs:%gx", at, env.cfg.slow_factor);
    // Long enough to run about `at` before the slowdown and 1.5 `at` after
    // it (experiment 2's rate is measured over short runs, so it is generous).
    const int tokens = std::max(8, static_cast<int>(ours_tokens_per_s * at * 2.5 / k));
    *tokens_out = tokens;
    std::printf("\nexperiment 3: %s on %s, K=%d, %d tokens per request; %s slows down %gx at %g s\n", mc.name.c_str(),
                mix.name.c_str(), k, tokens, cluster.device(victim).name.c_str(), env.cfg.slow_factor, at);
    auto workers = start_workers(env, mc.path, mix, cluster, {{victim, sched}});
    std::vector<DeviceId> ids;
    for (int i = 0; i < cluster.size(); ++i) ids.push_back(static_cast<DeviceId>(i + 1));
    const auto plan = to_plan(ours, ids);

    Json arms = Json::Array{};
    std::vector<std::pair<std::string, bool>> modes{{"balancer off", false}};
    if (env.cfg.balancer) modes.push_back({"balancer on", true});
    for (const auto& [label, on] : modes) {
        // The suite's statistics polls and the balancer's take turns on the
        // workers' control links (RemotePipeline serializes them).
        const auto r = run_once(env, model, workers->endpoints(), plan, k, tokens, prompt, on, true, &trace);
        // The schedule's clock starts when the worker is assigned, during setup.
        const double slow_rel = std::max(0.0, at - r.setup_seconds);
        std::size_t before = 0, after = 0;
        for (const double t : r.token_times) (t < slow_rel ? before : after)++;
        const double before_rate = slow_rel > 0 ? static_cast<double>(before) / std::min(slow_rel, r.seconds) : 0;
        const double after_rate = r.seconds > slow_rel ? static_cast<double>(after) / (r.seconds - slow_rel) : 0;
        std::printf("  %-13s %8.2f tok/s overall, %8.2f before the slowdown, %8.2f after (%.1f s)\n", label.c_str(),
                    r.tokens_per_s, before_rate, after_rate, r.seconds);
        for (const auto& e : r.events) std::printf("      %s\n", e.c_str());
        TimelineSeries ts;
        ts.arm = label;
        ts.slowdown_at = slow_rel;
        for (const auto& st : plan.stages) ts.devices.push_back(cluster.device(static_cast<int>(st.device) - 1).name);
        const auto tid_base = static_cast<std::uint32_t>(on ? 200 : 100);
        for (std::size_t d = 0; d < plan.stages.size(); ++d)
            trace.name_track(tid_base + static_cast<std::uint32_t>(d), label + ": " + ts.devices[d] + " (busy, from worker stats)");
        auto samples = r.samples;
        if (samples.empty())  // no worker statistics: a grid for the tokens alone
            for (double t = 0; t < r.seconds + 0.25; t += 0.25)
                samples.push_back({t, std::vector<double>(plan.stages.size(), std::nan(""))});
        for (std::size_t i = 1; i < samples.size(); ++i) {
            const auto& a = samples[i - 1];
            const auto& b = samples[i];
            if (a.busy_s.size() != b.busy_s.size() || b.busy_s.empty()) continue;
            const double dt = b.t - a.t;
            std::vector<double> busy;
            for (std::size_t d = 0; d < b.busy_s.size(); ++d) {
                const double frac = std::clamp((b.busy_s[d] - a.busy_s[d]) / dt, 0.0, 1.0);
                busy.push_back(std::isnan(b.busy_s[d]) ? b.busy_s[d] : frac);
                if (std::isnan(b.busy_s[d])) continue;
                // A span as long as the busy time in this interval, at its start.
                const auto t0 = trace.origin() + std::chrono::duration_cast<clock_type::duration>(
                                                     std::chrono::duration<double>(a.t));
                trace.span(tid_base + static_cast<std::uint32_t>(d), "busy", t0,
                           t0 + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(frac * dt)),
                           "\"fraction\":" + std::to_string(frac));
            }
            std::size_t n = 0;
            for (const double t : r.token_times) n += t >= a.t && t < b.t;
            ts.t.push_back(b.t);
            ts.busy.push_back(busy);
            ts.tokens_per_s.push_back(static_cast<double>(n) / dt);
        }
        series.push_back(ts);
        Json j;
        j.set("arm", label);
        j.set("tokens_per_s", r.tokens_per_s);
        j.set("tokens_per_s_before", before_rate);
        j.set("tokens_per_s_after", after_rate);
        j.set("seconds", r.seconds);
        j.set("slowdown_at_run_seconds", slow_rel);
        Json ev = Json::Array{};
        for (const auto& e : r.events) ev.push(e);
        j.set("events", std::move(ev));
        arms.push(std::move(j));
    }
    Json o;
    o.set("model", mc.name);
    o.set("mix", mix.name);
    o.set("in_flight", k);
    o.set("tokens_per_request", tokens);
    o.set("slowed_device", cluster.device(victim).name);
    o.set("schedule", std::string(sched));
    o.set("placement", ours.describe(cluster));
    o.set("arms", std::move(arms));
    return o;
}

// ---- experiment 3, failover -------------------------------------------------

// A worker is killed (SIGKILL) mid-run with K requests in flight. The same
// workers first run the same requests undisturbed; then one is killed after
// a third of the tokens. Measured: the time from the loss being seen to the
// pipeline running again (re-plan and block moves) and to every replayed
// request sampling its next token, the tokens/s of both runs, and whether
// every text (greedy) came out the same.
Json run_failover(const Env& env, const ModelCase& mc, const std::shared_ptr<const Model>& model,
                  const Cluster& cluster, const Placement& ours, int tokens, const std::vector<std::int32_t>& prompt) {
    const Mix& mix = mc.mixes.front();
    const int k = env.cfg.in_flight;
    std::vector<DeviceId> ids;
    for (int i = 0; i < cluster.size(); ++i) ids.push_back(static_cast<DeviceId>(i + 1));
    const auto plan = to_plan(ours, ids);
    const auto co = suite_cost_options(k);
    const auto shape = model_shape(*model);
    // Re-plan over the survivors (plan devices and those on standby) with
    // the solver: throughput objective, the same cost model as the plan.
    auto solve_over = [&](const std::vector<DeviceId>& alive) {
        SolverOptions so;
        so.objective = Objective::Throughput;
        so.explain = false;
        so.time_limit_s = env.cfg.quick ? 5 : 20;
        return to_plan(solve_placement(CostModel(shape, sub_cluster(cluster, alive), co), so).placement, alive);
    };
    // The victim: a stage of the plan whose loss the other devices can
    // absorb (memory), the middle ones first (their loss cuts the ring).
    std::vector<std::size_t> order;
    for (std::size_t i = 1; i + 1 < plan.stages.size(); ++i) order.push_back(i);
    order.push_back(plan.stages.size() - 1);
    if (plan.stages.size() > 1) order.push_back(0);
    int victim = -1;
    for (const auto i : order) {
        std::vector<DeviceId> rest;
        for (const auto d : ids)
            if (d != plan.stages[i].device) rest.push_back(d);
        try {
            (void)solve_over(rest);
            victim = static_cast<int>(plan.stages[i].device) - 1;
            break;
        } catch (const std::exception&) {  // the others cannot hold the model without it
        }
    }
    if (victim < 0) {
        std::printf("\nexperiment 3, failover: skipped: no device of %s can be lost with the model still fitting\n",
                    mix.name.c_str());
        Json j;
        j.set("skipped", std::string("no device can be lost with the model still fitting on the others"));
        return j;
    }
    FailoverHooks hooks;
    hooks.replan = solve_over;
    std::printf("\nexperiment 3, failover: %s on %s, K=%d, %d tokens per request; %s is killed (SIGKILL) after %d tokens\n",
                mc.name.c_str(), mix.name.c_str(), k, tokens, cluster.device(victim).name.c_str(), tokens * k / 3);
    std::fflush(stdout);
    auto workers = start_workers(env, mc.path, mix, cluster);
    const auto undisturbed = run_once(env, model, workers->endpoints(), plan, k, tokens, prompt, false, false, nullptr, &hooks);
    hooks.kill_after = static_cast<std::size_t>(tokens * k / 3);
    hooks.kill = [&] { workers->kill(static_cast<std::size_t>(victim), SIGKILL); };
    const auto killed = run_once(env, model, workers->endpoints(), plan, k, tokens, prompt, false, false, nullptr, &hooks);
    const bool same = killed.texts == undisturbed.texts;
    std::printf("  undisturbed   %8.2f tok/s (%.1f s)\n", undisturbed.tokens_per_s, undisturbed.seconds);
    std::printf("  killed        %8.2f tok/s (%.1f s); texts %s\n", killed.tokens_per_s, killed.seconds,
                same ? "identical to the undisturbed run" : "DIFFER from the undisturbed run");
    for (const auto& e : killed.events) std::printf("      %s\n", e.c_str());
    Json j;
    j.set("model", mc.name);
    j.set("mix", mix.name);
    j.set("in_flight", k);
    j.set("tokens_per_request", tokens);
    j.set("placement", ours.describe(cluster));
    j.set("killed_device", cluster.device(victim).name);
    j.set("kill_after_tokens", static_cast<double>(hooks.kill_after));
    j.set("undisturbed_tokens_per_s", undisturbed.tokens_per_s);
    j.set("killed_tokens_per_s", killed.tokens_per_s);
    j.set("texts_identical", same);
    Json rec = Json::Array{};
    for (const auto& r : killed.recoveries) {
        Json x;
        x.set("lost", static_cast<double>(r.lost));
        x.set("why", r.why);
        x.set("requests", static_cast<double>(r.requests));
        x.set("replayed_steps", static_cast<double>(r.replayed_steps));
        x.set("replan_ms", r.replan_seconds * 1e3);
        x.set("recovery_ms", r.recovery_seconds * 1e3);
        std::printf("  recovery: device %u lost (%s); re-planned in %.0f ms, every replayed request had its next token "
                    "%.0f ms after the loss was seen (%llu steps replayed for %zu requests)\n",
                    static_cast<unsigned>(r.lost), r.why.c_str(), r.replan_seconds * 1e3, r.recovery_seconds * 1e3,
                    static_cast<unsigned long long>(r.replayed_steps), r.requests);
        rec.push(std::move(x));
    }
    j.set("recoveries", std::move(rec));
    Json ev = Json::Array{};
    for (const auto& e : killed.events) ev.push(e);
    j.set("events", std::move(ev));
    if (!same) throw std::runtime_error("failover changed a text: the suite's results would be wrong");
    if (killed.recoveries.size() != 1)
        throw std::runtime_error("failover: expected one recovery, saw " + std::to_string(killed.recoveries.size()));
    return j;
}

// ---- main --------------------------------------------------------------------

constexpr const char* kHelp = R"(usage: bench-paper [--quick] [options]

Runs the paper's experiments on emulated devices (tandem worker processes).
  --quick            stories260K only, 3 devices, fewer repetitions (< 2 minutes)
  --out DIR          results.json, tokens_per_s.png, timeline.png, trace.json (default paper-results)
  --cache DIR        synthetic models, profiles (default $XDG_CACHE_HOME or ~/.cache, tandem/paper)
  --net MODE         netns | shaped | none (default: netns when it works here, else shaped)
  --link SHAPE       emulated link, every pair (default 100mbit,5ms)
  --in-flight K      requests in flight in experiments 2 and 3 (default 4)
  --scale F          multiply every preset's slowdown by F (default 1)
  --reps N           repetitions per placement (default: 3 quick, 3 stories260K, 3 1.1B, 2 3B)
  --models LIST      stories260K,tinyllama-1.1b,llama-3b (default: all; --quick: stories260K)
  --slow-at S        experiment 3: the slowdown's time after assignment (default 2 quick, 8)
  --slow-factor F    experiment 3: how much slower (default 3)
  --tandem PATH      the tandem program (default: the one built with this suite)
  --exp3-only        only experiment 3 (after one run of experiment 2 for its plan)
  --no-balancer      experiment 3 without its "balancer on" arm (RemoteOptions::balance)
)";

int main_impl(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows up in a log as it happens
    Config cfg;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
            return argv[++i];
        };
        if (a == "--quick") cfg.quick = true;
        else if (a == "--out") cfg.out = next();
        else if (a == "--cache") cfg.cache = next();
        else if (a == "--net") cfg.net = next();
        else if (a == "--link") cfg.link = next();
        else if (a == "--in-flight") cfg.in_flight = std::stoi(next());
        else if (a == "--scale") cfg.scale = std::stod(next());
        else if (a == "--reps") cfg.reps = std::stoi(next());
        else if (a == "--models") cfg.models = next();
        else if (a == "--slow-at") cfg.slow_at = std::stod(next());
        else if (a == "--slow-factor") cfg.slow_factor = std::stod(next());
        else if (a == "--tandem") cfg.tandem = next();
        else if (a == "--exp3-only") cfg.exp3_only = true;
        else if (a == "--balancer") cfg.balancer = true;  // the default; accepted as before
        else if (a == "--no-balancer") cfg.balancer = false;
        else if (a == "--help" || a == "-h") {
            std::fputs(kHelp, stdout);
            return 0;
        } else
            throw std::runtime_error("unknown option " + a + " (see --help)");
    }
    if (cfg.in_flight < 1 || !(cfg.scale >= 1) || cfg.slow_factor < 1) throw std::runtime_error("bad option values");
    if (cfg.cache.empty()) {
        if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) cfg.cache = std::string(x) + "/tandem/paper";
        else if (const char* h = std::getenv("HOME"); h && *h) cfg.cache = std::string(h) + "/.cache/tandem/paper";
        else cfg.cache = "/tmp/tandem-paper";
    }
    run_command("mkdir -p '" + cfg.cache + "' '" + cfg.out + "/logs'");
    const auto wall0 = clock_type::now();

    Env env;
    env.cfg = cfg;
    env.log_dir = cfg.out + "/logs";
    choose_network(env);
    std::printf("tandem paper suite%s: %u cores; network emulation: %s (link %s)\n", cfg.quick ? " (quick)" : "",
                std::thread::hardware_concurrency(), env.mode_note.c_str(), env.link.describe().c_str());
    std::printf("devices: tandem worker processes, 1 compute thread each; slowdowns %s x%g (high-end %.3g, mid-range "
                "%.3g, low-end %.3g)\n\n",
                "preset", cfg.scale, preset_slowdown(env, "high-end"), preset_slowdown(env, "mid-range"),
                preset_slowdown(env, "low-end"));

    std::vector<std::string> wanted = split_csv(cfg.models);
    if (wanted.empty()) wanted = cfg.quick ? std::vector<std::string>{"stories260K"}
                                           : std::vector<std::string>{"stories260K", "tinyllama-1.1b", "llama-3b"};
    std::vector<ModelCase> cases;
    for (const auto& w : wanted) {
        ModelCase mc;
        mc.name = w;
        if (w == "stories260K") {
            mc.path = std::string(TANDEM_MODELS_DIR) + "/stories260K.gguf";
            mc.tokens = cfg.quick ? 24 : 48;
            mc.reps = 3;
            mc.mixes = cfg.quick ? std::vector<Mix>{kMix3} : std::vector<Mix>{kMix3, kMix4};
        } else if (w == "tinyllama-1.1b") {
            mc.path = ensure_synth(env, "tinyllama-1.1b", "q4_0", 1024);
            mc.tokens = 12;
            mc.reps = 3;
            mc.mixes = {kMix3, kMix4};
        } else if (w == "llama-3b") {
            mc.path = ensure_synth(env, "llama-3.2-3b", "q4_0", 1024);
            mc.tokens = 6;
            mc.reps = 2;
            mc.mixes = {kMix3};
        } else {
            throw std::runtime_error("unknown model " + w + " (stories260K, tinyllama-1.1b, llama-3b)");
        }
        if (cfg.reps > 0) mc.reps = cfg.reps;
        cases.push_back(mc);
    }

    std::vector<Row> rows;
    Json exp3 = nullptr;
    std::vector<TimelineSeries> series;
    TraceRecorder trace;
    int exp3_tokens = 0;
    const auto exp3_model = cfg.quick ? std::string("stories260K") : std::string("tinyllama-1.1b");
    for (const auto& mc : cases) {
        std::printf("model %s (%s)\n", mc.name.c_str(), mc.path.c_str());
        const auto model = Model::open(mc.path);
        const auto tokenizer = Tokenizer::from_gguf(model->file());
        auto prompt = tokenizer.encode("Once upon a time", true);
        if (prompt.empty()) prompt.push_back(0);
        const auto ref = reference_profile(env, *model);
        for (const auto& mix : mc.mixes) {
            const auto cluster = make_cluster(env, ref, mix, model_shape(*model));
            auto workers = start_workers(env, mc.path, mix, cluster);
            Placement ours_throughput;
            const bool exp3_here = mc.name == exp3_model && &mix == &mc.mixes.front();
            if (cfg.exp3_only && !exp3_here) continue;
            if (cfg.exp3_only) {
                ModelCase once = mc;
                once.reps = 1;
                rows.push_back(run_comparison(env, once, mix, model, cluster, workers->endpoints(), prompt, 2, &ours_throughput));
            } else {
                rows.push_back(run_comparison(env, mc, mix, model, cluster, workers->endpoints(), prompt, 1, nullptr));
                rows.push_back(run_comparison(env, mc, mix, model, cluster, workers->endpoints(), prompt, 2, &ours_throughput));
            }
            workers.reset();
            if (exp3_here) {
                exp3 = run_slowdown(env, mc, model, cluster, ours_throughput, rows.back().arms.front().median_tokens_per_s(),
                                    prompt, series, trace, &exp3_tokens);
                exp3.set("failover", run_failover(env, mc, model, cluster, ours_throughput, exp3_tokens, prompt));
            }
        }
    }
    print_table(rows);

    // Outputs.
    Json root;
    Json machine;
    machine.set("cores", std::thread::hardware_concurrency());
    root.set("machine", std::move(machine));
    Json net;
    net.set("mode", net_mode_name(env.mode));
    net.set("note", env.mode_note);
    net.set("link", env.link.describe());
    net.set("link_bandwidth_bps", env.link.bandwidth_bps);
    net.set("link_latency_ms", env.link.latency_ms);
    root.set("network", std::move(net));
    root.set("quick", cfg.quick);
    root.set("slowdown_scale", cfg.scale);
    Json list = Json::Array{};
    for (const auto& r : rows) list.push(row_json(r));
    root.set("experiments", std::move(list));
    root.set("experiment3", std::move(exp3));
    std::string plot_log;
    const bool bars = plot_tokens(rows, cfg.out, &plot_log);
    const bool timeline = !series.empty() && plot_timeline(series, cfg.out, &plot_log);
    if (!bars || (!series.empty() && !timeline)) std::fprintf(stderr, "gnuplot failed:\n%s\n", plot_log.c_str());
    trace.write(cfg.out + "/trace.json");
    const double wall = since(wall0);
    root.set("wall_seconds", wall);
    write_file(cfg.out + "/results.json", root.dump());
    std::printf("\nwrote %s/results.json, tokens_per_s.png%s, trace.json; %.1f s in all\n", cfg.out.c_str(),
                timeline ? ", timeline.png" : "", wall);
    return bars && (series.empty() || timeline) ? 0 : 1;
}

}  // namespace
}  // namespace tandem::paper

int main(int argc, char** argv) {
    try {
        return tandem::paper::main_impl(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-paper: %s\n", e.what());
        return 1;
    }
}
