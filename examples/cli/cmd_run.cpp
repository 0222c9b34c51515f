// tandem run: generates with a model split over several devices. The
// coordinator (this process) keeps the tokenizer and sampling; workers run the
// blocks in a ring, each sending its output straight to the next.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <tandem/core/memory.hpp>
#include <tandem/runtime/remote_pipeline.hpp>
#include <tandem/tokenizer/stream_decoder.hpp>
#include <tandem/tokenizer/tokenizer.hpp>

#include "args.hpp"
#include "auto_plan.hpp"
#include "commands.hpp"
#include "local_workers.hpp"
#include "model_source.hpp"
#include "net_common.hpp"
#include "sampling_args.hpp"

namespace tandem::cli {

namespace {
constexpr const char* kRunHelp = R"(usage: tandem run [-m MODEL.gguf] (--devices HOST:PORT,... | --local-workers N) [options]

Runs a model split over several devices. Without -m it uses the embedded stories260K.

  -m, --model FILE        GGUF model (the workers need no copy: weights are streamed)
      --devices LIST      workers started with `tandem worker`, in ring order
      --local-workers N   start N workers as child processes on loopback
      --split RANGES      layers per device, e.g. 0:3,3:5 (or raw blocks b0:7,b7:12); default: even
                          (or --plan auto: measured and solved, see below)
  -p, --prompt TEXT       prompt (default: empty)
  -n, --n-predict N       tokens to generate per request (default 128)
      --parallel N        N requests at once (the prompt N times, seeds seed..seed+N-1)
      --in-flight K       requests in the pipeline at once (default: N of --parallel)
      --batch B           steps a device may merge into one forward pass (default 1)
      --encoding E        activations on the wire: f32 (exact, default), f16, q8_0
      --key FILE          cluster key (TLS 1.3); with --local-workers a fresh key is made
      --insecure          plaintext links
      --threads-per-worker T   compute threads of each local worker (default 1)
      --quiet             print only the generated text
      --cache-dir DIR     weight cache shared by the --local-workers (default: each its own)
      --failover          survive a lost worker: re-plan over the others (and any on standby:
                          workers the plan left out, and --standby ones) with the solver on their
                          measured profiles under --plan auto, else an even split; replay the
                          requests; a lost worker's address is dialled again every second, and a
                          worker that answers there stands by for the next re-plan
      --standby LIST      more workers (HOST:PORT,...) connected at the start, holding no blocks
                          until a failover re-plan or a balancer move takes them
      --balance           move blocks at runtime when a worker's measured speed drifts, also onto
                          workers on standby (each is profiled when it connects)
      --balance-threshold X   relative gain needed to move (default 0.2)
      --local-schedule S,...  (--local-workers) each worker's slowdown schedule, one step each
                          (e.g. 0s:1x,5s:4x,0s:1x: worker 2 becomes 4x slower 5 s in)
      --local-noise N,...     (--local-workers) each worker's step-time noise (0..1)
      --trace FILE.json   write a Chrome/Perfetto trace: one track per device (compute, send,
                          receive, idle) and the coordinator's; open it in ui.perfetto.dev
Link timing (also passed to --local-workers):
%s%s)";

wire::Encoding parse_encoding(const std::string& s) {
    if (s == "f32") return wire::Encoding::F32;
    if (s == "f16") return wire::Encoding::F16;
    if (s == "q8_0") return wire::Encoding::Q8_0;
    throw std::runtime_error("unknown --encoding '" + s + "' (f32, f16, q8_0)");
}

}  // namespace

int cmd_run(int argc, char** argv) {
    Args args(argc, argv, {"help", "h", "insecure", "quiet", "refresh-profiles", "failover", "balance"});
    if (args.flag({"help", "h"})) {
        std::printf(kRunHelp, kLinkHelp, kSamplingHelp);
        std::printf(kAutoPlanHelp, kLiveHelp);
        return 0;
    }
    const auto prompt = args.str({"p", "prompt"});
    const auto n_predict = args.num<std::int32_t>({"n", "n-predict"}, 128);
    const auto parallel = args.num<int>({"parallel"}, 1);
    const auto sc = sampling_from_args(args);
    const bool quiet = args.flag({"quiet"});
    const int local = args.num<int>({"local-workers"}, 0);
    const auto devices_arg = args.str({"devices"});
    const auto standby_arg = args.str({"standby"});
    if (local > 0 && !standby_arg.empty()) throw std::runtime_error("--standby goes with --devices, not --local-workers");
    if ((local > 0) == !devices_arg.empty())
        throw std::runtime_error("give either --devices HOST:PORT,... or --local-workers N");

    const auto trace_path = args.str({"trace"});
    TraceRecorder trace(!trace_path.empty());
    RemoteOptions ro;
    if (!trace_path.empty()) ro.trace = &trace;
    ro.encoding = parse_encoding(args.str({"encoding"}, "f32"));
    ro.max_in_flight = static_cast<std::size_t>(args.num<int>({"in-flight"}, parallel));
    ro.max_batch = static_cast<std::size_t>(args.num<int>({"batch"}, 1));
    ro.failover = args.flag({"failover"});
    if (ro.failover) ro.rejoin_interval = std::chrono::milliseconds(1000);
    ro.balance = args.flag({"balance"});
    ro.balancer.threshold = args.num<double>({"balance-threshold"}, ro.balancer.threshold);
    ro.on_event = [](const std::string& e) { log_line("event", e); };
    link_options_from_args(args, ro.link, ro.heartbeat);
    ro.log = [quiet](const std::string& l) {
        if (!quiet) log_line("coordinator", l);
    };
    std::unique_ptr<TlsConfig> tls;
    std::unique_ptr<LocalWorkers> workers;
    std::vector<WorkerEndpoint> endpoints;
    std::string key_path;
    if (local > 0) {
        std::vector<std::string> extra = {"--threads", std::to_string(args.num<int>({"threads-per-worker"}, 1))};
        for (auto& a : link_args_given(args)) extra.push_back(std::move(a));
        if (const auto cache = args.str({"cache-dir"}); !cache.empty()) {
            extra.push_back("--cache-dir");
            extra.push_back(cache);
        }
        if (args.flag({"insecure"})) {
            extra.push_back("--insecure");
        } else {
            key_path = args.str({"key"});
            if (key_path.empty()) {
                // A fresh key for this run, readable only by us and our children.
                key_path = "/tmp/tandem-local-" + std::to_string(::getpid()) + ".key";
                ClusterKey::generate().save(key_path);
            }
            extra.push_back("--key");
            extra.push_back(key_path);
            tls = std::make_unique<TlsConfig>(ClusterKey::load(key_path));
        }
        workers = std::make_unique<LocalWorkers>(local, extra, "/proc/self/exe", local_worker_flags(args, local));
        endpoints = workers->endpoints();
    } else {
        tls = tls_from_args(args);
        for (const auto& d : split_list(devices_arg)) endpoints.push_back(WorkerEndpoint::parse(d));
    }
    ro.tls = tls.get();
    const auto split = args.str({"split"});
    // --plan auto: profile the workers live and solve the placement (auto_plan.hpp).
    const auto plan_mode = args.str({"plan"});
    if (!plan_mode.empty() && plan_mode != "auto") throw std::runtime_error("--plan takes only 'auto'");
    if (!plan_mode.empty() && !split.empty()) throw std::runtime_error("--plan auto and --split exclude each other");
    LiveProfileOptions live;
    AutoPlanOptions auto_opt;
    if (!plan_mode.empty()) {
        live = live_options_from_args(args);
        live.tls = tls.get();
        live.link = ro.link;
        live.heartbeat = ro.heartbeat;
        live.log = ro.log;
        auto_opt.objective = objective_from_args(args);
        auto_opt.in_flight = static_cast<std::int64_t>(ro.max_in_flight);
        auto_opt.quiet = quiet;
    }
    auto file = open_model_file(args);
    args.reject_unknown();

    const auto tokenizer = Tokenizer::from_gguf(file);
    auto model = Model::from_file(std::move(file), BlockRange{0, 0});
    std::vector<DeviceId> ids;
    for (std::size_t i = 0; i < endpoints.size(); ++i) ids.push_back(static_cast<DeviceId>(i + 1));
    if (!plan_mode.empty())  // the positions a sequence of this run will use
        auto_opt.context = static_cast<std::int64_t>(tokenizer.encode(prompt, true).size()) + n_predict + 1;
    Cluster profiled;
    const Plan plan = !plan_mode.empty() ? auto_plan(*model, endpoints, live, auto_opt, &profiled)
                      : split.empty()    ? Plan::even(model->config(), ids)
                                         : Plan::parse(split, model->config(), ids);

    int last_pct = -1;
    ro.progress = [&](DeviceId id, std::uint64_t done, std::uint64_t total) {
        if (quiet) return;
        const int pct = total ? static_cast<int>(100 * done / total) : 100;
        if (pct == last_pct && done != total) return;
        last_pct = pct;
        std::fprintf(stderr, "\r  weights -> device %u: [%-30s] %3d%% of %.1f MiB", id,
                     std::string(static_cast<std::size_t>(pct * 30 / 100), '#').c_str(), pct, to_mib(total));
        if (done >= total) {
            std::fputc('\n', stderr);
            last_pct = -1;
        }
    };
    if (!quiet)
        std::fprintf(stderr, "plan: %s over %zu devices (%s links, activations %s%s)\n", plan.describe().c_str(),
                     endpoints.size(), tls ? "TLS 1.3" : "plaintext", wire::encoding_name(ro.encoding),
                     ro.link.shape.active() ? (", emulated link " + ro.link.shape.describe()).c_str() : "");
    if (!plan_mode.empty()) {
        if (ro.failover) ro.replan = replan_with(model, profiled, auto_opt);
        // The measured profiles: a worker that joins later is compared with them.
        for (int i = 0; i < profiled.size(); ++i) ro.profiles[static_cast<DeviceId>(i + 1)] = profiled.device(i);
    }
    RemotePipeline pipeline(model, endpoints, plan, ro);
    for (const auto& d : split_list(standby_arg)) pipeline.add_worker(WorkerEndpoint::parse(d));

    auto ids_prompt = tokenizer.encode(prompt, true);
    if (ids_prompt.empty()) ids_prompt.push_back(tokenizer.bos());
    StreamDecoder out(tokenizer, prompt.empty());
    const bool stream = parallel == 1;
    if (stream) {
        std::fputs(prompt.c_str(), stdout);
        std::fflush(stdout);
    }
    for (int i = 0; i < parallel; ++i) {
        RequestSpec r;
        r.prompt = ids_prompt;
        r.max_tokens = n_predict;
        r.sampler = sc;
        r.sampler.seed = sc.seed + static_cast<std::uint64_t>(i);
        r.stop_tokens = tokenizer.eog_tokens();
        if (stream)
            r.on_token = [&](RequestId, std::int32_t id) {
                if (!tokenizer.is_eog(id)) std::fputs(out.push(id).c_str(), stdout);
                std::fflush(stdout);
                return true;
            };
        pipeline.submit(std::move(r));
    }
    const auto t0 = std::chrono::steady_clock::now();
    const auto results = pipeline.run();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (stream) std::fputs((out.flush() + "\n").c_str(), stdout);
    if (!trace_path.empty()) {
        trace.write(trace_path);  // run() has added the workers' spans
        if (!quiet) log_line("trace", trace_path + ": " + std::to_string(trace.size()) + " spans (ui.perfetto.dev)");
    }
    std::size_t total_tokens = 0;
    for (const auto& r : results) {
        total_tokens += r.tokens.size();
        if (!r.error.empty()) std::fprintf(stderr, "request %llu failed: %s\n", static_cast<unsigned long long>(r.id), r.error.c_str());
        if (!stream) {
            StreamDecoder text(tokenizer, prompt.empty());
            std::string body;
            for (const auto t : r.tokens)
                if (!tokenizer.is_eog(t)) body += text.push(t);
            body += text.flush();
            std::printf("--- request %llu ---\n%s%s\n", static_cast<unsigned long long>(r.id), prompt.c_str(), body.c_str());
        }
    }
    if (!quiet) {
        std::fprintf(stderr, "\n%zu requests, %zu tokens in %.2f s: %.1f tokens/s\n", results.size(), total_tokens, secs,
                     static_cast<double>(total_tokens) / secs);
        std::fprintf(stderr, "%-8s %-10s %-14s %8s %10s %10s %12s %14s %14s\n", "device", "blocks", "name", "steps",
                     "busy ms", "queued ms", "weights rx", "bytes/tok/hop", "ms/step (EWMA)");
        std::map<DeviceId, DeviceMonitor> monitor;  // the balancer's, when it ran
        for (auto& m : pipeline.monitor()) monitor[m.device] = m;
        for (const auto& st : pipeline.plan().stages) {  // as it ended (balancing, failover)
            const auto s = pipeline.stats(st.device);
            std::string ewma = "-";
            if (const auto it = monitor.find(st.device); it != monitor.end() && it->second.step_ewma_seconds) {
                char buf[32];
                std::snprintf(buf, sizeof buf, "%.2f", *it->second.step_ewma_seconds * 1e3);
                ewma = buf;
            }
            const auto& ready = pipeline.ready().at(st.device);
            const double per_tok = s.activation_tokens_out ? static_cast<double>(s.activation_bytes_out) /
                                                                  static_cast<double>(s.activation_tokens_out)
                                                            : 0.0;
            std::fprintf(stderr, "%-8u %-10s %-14s %8llu %10.1f %10.1f %9.2f MB %14.0f %14s\n", st.device,
                         to_string(st.blocks).c_str(), pipeline.workers_info().at(st.device).name.c_str(),
                         static_cast<unsigned long long>(s.steps), s.busy_seconds * 1e3, s.queue_seconds * 1e3,
                         static_cast<double>(ready.bytes_received) / 1e6, per_tok, ewma.c_str());
        }
        std::fprintf(stderr, "coordinator peak memory: %.1f MiB\n", to_mib(peak_rss_bytes()));
    }
    if (!key_path.empty() && args.str({"key"}).empty()) ::unlink(key_path.c_str());
    return 0;
}

}  // namespace tandem::cli
