// Live placement against real processes: `tandem worker` processes on this
// machine (one emulated 4x slower, the two fast ones too small to hold the
// model alone) are profiled over TLS by the coordinator -- each runs the
// model's blocks on its own device and threads, every link is probed with
// echoes -- the placement is solved with GLPK, and the plan is run in a real
// generation. Predicted and measured time per token are printed and must
// agree within a tolerance; the plan must avoid or lighten the slow device;
// and the predicted gain over the even split must show up in the
// measurement. The CLI paths (`tandem plan --devices`, `tandem run --plan
// auto`) are checked on the same workers.
//
// Tolerance: measured / predicted within [1/2, 2] for the solver's plan and
// for the even split. What it was on this machine (2 cores, load 2-9 from
// other work), over 12 attempts: 1.02 to 1.79, usually 1.3 to 1.6, and
// always above 1. The prediction is low, and for known reasons: a profile
// repeats one block, whose weights then sit in the 32 MiB L3, while a
// generation streams every block's weights from memory; the cost model has
// no term for the runtime's own per-hop work (thread hand-offs, encoding),
// which the echo probes do not see, or for the coordinator's sampling over
// 32000 logits. The rest is noise. Three worker processes, the coordinator
// and unrelated builds share two cores. Each block's profile is a median of
// short runs taken once per attempt, and the same block varied by 2x between
// attempts. The measurement is a different stretch of time under different
// load. An emulated device sleeps 3x its real compute and wakes up late when
// the cores are busy. The model is sized so that compute dominates (about
// 3 ms per token, links 0.1-0.3 ms), which keeps the unmodelled terms small.
// Why not looser: a cost model that drops a stage, double-counts one, or
// ignores the emulated slowdown is off by well over 2x here and fails; the
// independent checks (the slow device avoided or lightened, the predicted
// gain over the even split showing up in the measurement) do not depend on
// the tolerance. The measurement is the median time between consecutive
// tokens, because interference only adds time, in spikes. Up to three
// attempts are made, each measuring afresh: interference can spoil one, a
// wrong model fails all.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <sstream>

#include <tandem/model/synth.hpp>
#include <tandem/placement/solver.hpp>
#include <tandem/runtime/live_profile.hpp>

#include "network/support.hpp"

using namespace tandem;
using namespace tandem::nettest;

namespace {

constexpr double kTolerance = 2.0;  // measured / predicted within [1/kTolerance, kTolerance]
constexpr std::int32_t kMeasuredTokens = 48;

// A llama of 58M parameters in Q8_0 (60 MiB): about 3 ms per token here on one thread.
std::string synth_model(const std::string& dir) {
    const auto path = dir + "/live-plan-q8.gguf";
    SynthShape s;
    s.name = "custom";
    s.dim = 512;
    s.ffn_dim = 1536;
    s.n_layers = 8;
    s.n_heads = 8;
    s.n_kv_heads = 4;
    s.n_vocab = 32000;
    s.context_length = 512;
    s.vocab = SynthVocab::LlamaSpm;
    const auto vocab = GgufFile::open(test::model_path(synth_vocab_file(s.vocab)));
    write_synth_model(path, s, vocab, {.type = GgmlType::Q8_0});
    return path;
}

struct Measured {
    double median_s = 0;  // median time between consecutive tokens
    double mean_s = 0;    // (last token - first token) / (tokens - 1), fastest run
};

// Generates kMeasuredTokens greedy tokens with `placement` three times on one
// pipeline; the time between consecutive tokens (the first two of each run
// dropped: pages of freshly mapped weights) over all runs.
Measured measure(const std::shared_ptr<const Model>& model, const std::vector<WorkerEndpoint>& eps,
                 const Placement& placement, TlsConfig* tls) {
    const auto plan = to_plan(placement, device_ids(eps.size()));
    auto p = connect_when_free(model, eps, plan, remote_options(tls));
    std::vector<double> gaps;
    Measured m{0, 1e9};
    for (int run = 0; run < 3; ++run) {
        std::vector<clock::time_point> at;
        RequestSpec r;
        r.prompt = {1};
        r.max_tokens = kMeasuredTokens;
        r.on_token = [&](RequestId, std::int32_t) {
            at.push_back(clock::now());
            return true;
        };
        p->submit(std::move(r));
        const auto res = p->run();
        REQUIRE(res.size() >= 1);
        REQUIRE(res.back().error.empty());
        REQUIRE(at.size() == static_cast<std::size_t>(kMeasuredTokens));
        for (std::size_t i = 3; i < at.size(); ++i) gaps.push_back(std::chrono::duration<double>(at[i] - at[i - 1]).count());
        m.mean_s = std::min(m.mean_s, std::chrono::duration<double>(at.back() - at.front()).count() / (kMeasuredTokens - 1));
    }
    std::sort(gaps.begin(), gaps.end());
    m.median_s = gaps[gaps.size() / 2];
    return m;
}

// The share of the model's matmul work (weight bytes of every block but the
// embedding, which is a row lookup) that `device` runs under `p`: from the
// model's shape alone, not from the cost model. An even split gives each of
// n devices about 1/n.
double work_share(const ModelShape& shape, const Placement& p, int device) {
    double mine = 0, all = 0;
    for (std::int64_t b = 1; b < shape.n_blocks(); ++b) {
        const auto w = static_cast<double>(shape.blocks[static_cast<std::size_t>(b)].weight_bytes);
        all += w;
        for (const auto& s : p.stages)
            if (s.device == device && b >= s.begin && b < s.end) mine += w;
    }
    return mine / all;
}

struct Attempt {
    std::string text;
    bool ok = false;
};

}  // namespace

TEST_CASE("placement: live profiles of worker processes predict the measured time per token; the slow device is "
          "avoided" * doctest::timeout(900)) {
    const auto dir = fresh_dir("live-plan");
    const auto key = make_key(dir);
    TlsConfig tls(ClusterKey::load(key));
    const auto path = synth_model(dir);
    const auto model = Model::from_file(GgufFile::open(path), BlockRange{0, 0});
    const auto shape = model_shape(*model);
    const auto weights = shape.total_weight_bytes();

    // Two fast workers that each hold 60% of the weights (so the model must be
    // split), and one 4x slower with room for all of it.
    const FastLinks fl;
    auto args = [&](std::vector<std::string> extra) {
        auto a = fl.args();
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    };
    std::vector<std::unique_ptr<WorkerProcess>> ws;
    ws.push_back(std::make_unique<WorkerProcess>(dir, "fast-1", key, args({"--memory-limit", std::to_string(weights * 6 / 10)})));
    ws.push_back(std::make_unique<WorkerProcess>(dir, "fast-2", key, args({"--memory-limit", std::to_string(weights * 6 / 10)})));
    ws.push_back(std::make_unique<WorkerProcess>(dir, "slow", key,
                                                 args({"--slowdown", "4", "--memory-limit", std::to_string(weights * 4)})));
    const auto eps = endpoints(ws);
    const int slow = 2;

    LiveProfileOptions lo;
    lo.tls = &tls;
    lo.link = fl.link();
    lo.heartbeat = std::chrono::milliseconds(fl.heartbeat_ms);
    lo.cache_path = dir + "/profiles.json";
    lo.profiler.min_run_seconds = 4e-3;

    std::vector<Attempt> attempts;
    for (int i = 0; i < 3 && (attempts.empty() || !attempts.back().ok); ++i) {
        lo.refresh = i > 0;  // a retry measures afresh (a spoiled profile is not reused)
        const auto lp = profile_live(*model, eps, lo);
        REQUIRE(lp.cluster.size() == 3);
        for (const auto& w : lp.workers) CHECK_FALSE(w.cached);  // a fresh cache, then refreshes
        const CostModel m(shape, lp.cluster, {.context = kMeasuredTokens + 2});
        const auto r = solve_placement(m);
        const auto even = even_split(m);
        const auto even_eval = m.evaluate(even);

        const auto got_plan = measure(model, eps, r.placement, &tls);
        const auto got_even = measure(model, eps, even, &tls);
        const double pred_plan = r.evaluation.latency_s, pred_even = even_eval.latency_s;
        const double ratio_plan = got_plan.median_s / pred_plan, ratio_even = got_even.median_s / pred_even;
        auto within = [](double x) { return x > 1 / kTolerance && x < kTolerance; };
        // Avoided or lightened: under half of an even share of the work (an
        // even split gives it a third).
        const double slow_share = work_share(shape, r.placement, slow);
        const bool lightened = slow_share < 1.0 / 6;
        Attempt a;
        a.ok = r.placement.stages.size() >= 2 && lightened && within(ratio_plan) && within(ratio_even) &&
               got_even.median_s > 1.2 * got_plan.median_s;
        std::ostringstream o;
        o << "devices:";
        for (const auto& d : lp.cluster.devices())
            o << " " << d.name << " (attention " << d.decode[CostKind::Attention] * 1e3 << " ms, ffn "
              << d.decode[CostKind::Ffn] * 1e3 << " ms, head " << d.decode[CostKind::Head] * 1e3 << " ms)";
        o << "; coordinator->" << lp.cluster.device(0).name << " "
          << lp.cluster.link(Cluster::kCoordinator, 0).latency_ms() << " ms\n  plan " << r.placement.describe(lp.cluster)
          << " (slow device's share of the work " << slow_share << ")"
          << ": predicted " << pred_plan * 1e3 << " ms/token, measured " << got_plan.median_s * 1e3 << " (median; mean "
          << got_plan.mean_s * 1e3 << "), x" << ratio_plan << "\n  even split " << even.describe(lp.cluster)
          << ": predicted " << pred_even * 1e3 << " ms/token, measured " << got_even.median_s * 1e3 << " (median; mean "
          << got_even.mean_s * 1e3 << "), x" << ratio_even << "\n  gain over the even split: predicted "
          << pred_even / pred_plan << "x, measured " << got_even.median_s / got_plan.median_s << "x";
        a.text = o.str();
        attempts.push_back(a);
        MESSAGE("attempt " << attempts.size() << ": " << a.text);
    }
    CHECK(attempts.back().ok);
}

TEST_CASE("placement: tandem plan --devices and tandem run --plan auto profile live workers and use the plan" *
          doctest::timeout(300)) {
    const auto dir = fresh_dir("live-plan-cli");
    const auto key = make_key(dir);
    const FastLinks fl;
    auto with = [&](std::vector<std::string> extra) {
        auto a = fl.args();
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    };
    // Every link carries an emulated 2 ms delay: on bare loopback the links
    // measure 0.05-0.2 ms depending on what else the machine runs, and such
    // noise can make a plan that keeps the embedding lookup (0.001 ms) on the
    // slow worker look best. With 2 ms per hop, a plan that uses w2 at all pays
    // a whole extra hop, so the expected plan is not a coin toss. The solver's
    // "slow device is left out" logic is tested on fixed profiles in
    // tests/placement/solver_test.cpp; this test is about the live CLI path.
    // The slow worker is 60x slower, not 6x: at 6x its whole model took
    // 0.37 ms per token, and under ctest -j2 one probe measured
    // coordinator <-> w1 0.74 ms slower each way than coordinator <-> w2 (both
    // the same 2 ms emulated loopback), which made the all-on-w2 plan look
    // faster (CI, release stage). At 60x the compute gap (~3.7 ms per token)
    // is larger than the link noise seen so far.
    const std::vector<std::string> delay = {"--emulate-link", "2ms"};
    std::vector<std::unique_ptr<WorkerProcess>> ws;
    ws.push_back(std::make_unique<WorkerProcess>(dir, "w1", key, with(delay)));
    ws.push_back(std::make_unique<WorkerProcess>(dir, "w2", key, with({"--slowdown", "60", "--emulate-link", "2ms"})));
    const auto devices = ws[0]->endpoint().str() + "," + ws[1]->endpoint().str();
    const auto cache = dir + "/profiles.json";

    // tandem plan: measured, then cached; the table names both workers and
    // leaves the 60x slower one out (stories260K fits on either).
    for (const char* how : {"measured in", "cached"}) {
        const auto r = run_command({cli(), "plan", "--devices", devices, "--key", key, "--profile-cache", cache,
                                    "--heartbeat", "250", "--emulate-link", "2ms"},
                                   dir, 120s);
        INFO("tandem plan: " << r.out << r.err);
        REQUIRE(r.code == 0);
        CHECK(r.out.find("measured live") != std::string::npos);
        CHECK(r.out.find(how) != std::string::npos);
        CHECK(r.out.find("predicted:") != std::string::npos);
        CHECK(r.out.find("w2             -         (left out)") != std::string::npos);
    }

    // tandem run --plan auto over local workers (one 60x slower): the plan is
    // printed, used, and the text is the model's golden greedy text.
    const auto r = run_command({cli(), "run", "--local-workers", "3", "--local-slowdown", "1,1,60", "--plan", "auto",
                                "--profile-cache", dir + "/local-profiles.json", "--cache-dir", dir + "/local-cache",
                                "-n", "120", "--heartbeat", "250", "--emulate-link", "2ms"},
                               dir, 180s);
    INFO("tandem run: " << r.err);
    REQUIRE(r.code == 0);
    CHECK(r.err.find("measured live") != std::string::npos);
    CHECK(r.err.find("predicted:") != std::string::npos);
    CHECK(r.err.find("local-3        -         (left out)") != std::string::npos);
    std::string out = r.out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    CHECK(out == golden_text());
}
