// Live migration and failover with real worker processes on loopback:
// blocks move between workers while several requests are in flight, and a
// worker killed with SIGKILL mid-generation costs no request its text. The
// expectation is independent of the pipeline: each prompt generated alone by
// the single-device Generator, greedily.
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <mutex>
#include <thread>

#include <tandem/core/thread_pool.hpp>

#include "network/support.hpp"

using namespace tandem;
using namespace tandem::nettest;

namespace {

const std::vector<std::vector<std::int32_t>> kPrompts = {{1, 403, 407}, {1, 300}, {1, 261, 378, 280}};
constexpr std::int32_t kTokens = 60;

std::vector<std::vector<std::int32_t>> alone(const std::shared_ptr<const Model>& model) {
    ThreadPool pool(1);
    Generator g(model, pool);
    std::vector<std::vector<std::int32_t>> out;
    for (const auto& p : kPrompts) out.push_back(g.generate(p, {.max_tokens = kTokens}));
    return out;
}

/// Every request finished without an error and with its text when generated alone.
void check_texts(const std::vector<RequestResult>& results, const std::vector<std::vector<std::int32_t>>& expected) {
    REQUIRE(results.size() == expected.size());
    for (std::size_t i = 0; i < results.size(); ++i) {
        INFO("request " << i);
        CHECK(results[i].error.empty());
        CHECK(results[i].tokens == expected[i]);
    }
}

/// Submits kPrompts; `on_token` runs after every sampled token.
void submit_prompts(RemotePipeline& p, const std::function<void()>& on_token, std::int32_t max_tokens = kTokens) {
    for (const auto& pr : kPrompts) {
        RequestSpec r;
        r.prompt = pr;
        r.max_tokens = max_tokens;
        r.on_token = [on_token](RequestId, std::int32_t) {
            on_token();
            return true;
        };
        p.submit(std::move(r));
    }
}

struct Workers {
    std::string dir, key;
    std::unique_ptr<TlsConfig> tls;
    std::vector<std::unique_ptr<WorkerProcess>> ws;
    Workers(const std::string& tag, int n, const FastLinks& fl) : dir(fresh_dir(tag)), key(make_key(dir)) {
        tls = std::make_unique<TlsConfig>(ClusterKey::load(key));
        for (int i = 0; i < n; ++i)
            ws.push_back(std::make_unique<WorkerProcess>(dir, "w" + std::to_string(i + 1), key, fl.args()));
    }
};

/// The events a pipeline reports (from its own threads), for checks and
/// failure messages.
struct EventLog {
    std::mutex mutex;
    std::vector<std::string> lines;
    std::function<void(const std::string&)> sink() {
        return [this](const std::string& e) {
            std::lock_guard lock(mutex);
            lines.push_back(e);
        };
    }
    std::string text() {
        std::lock_guard lock(mutex);
        std::string all;
        for (const auto& e : lines) all += e + "\n";
        return all;
    }
};

/// A worker's arguments as an emulated phone: 40x slower than this machine
/// (so that a step lasts milliseconds, like a phone's), one thread.
std::vector<std::string> phone_args(const FastLinks& fl) {
    auto a = fl.args();
    for (const auto* x : {"--slowdown", "40", "--threads", "1"}) a.push_back(x);
    return a;
}

}  // namespace

TEST_CASE("resilience: blocks move between workers mid-generation with 3 requests in flight; texts unchanged" *
          doctest::timeout(180)) {
    const FastLinks fl;
    Workers cl("migrate", 3, fl);
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    const auto expected = alone(Model::open(test::stories260k()));
    auto ro = remote_options(cl.tls.get(), fl);
    ro.max_in_flight = 3;
    std::vector<std::string> events;
    ro.on_event = [&](const std::string& e) { events.push_back(e); };
    const auto& c = model->config();
    RemotePipeline p(model, endpoints(cl.ws), Plan::even(c, device_ids(3)), ro);
    // Move most layers onto device 3, then everything back onto devices 1 and 2
    // (device 3 leaves the plan): caches travel both ways.
    const auto first = Plan::parse("0:1,1:2,2:5", c, device_ids(3));
    const auto second = Plan::parse("0:3,3:5", c, device_ids(2));
    p.migrate_at(first, 20);
    p.migrate_at(second, 70);
    for (const auto& pr : kPrompts) p.submit({.prompt = pr, .max_tokens = kTokens});
    const auto results = p.run();
    check_texts(results, expected);
    REQUIRE(p.migration_seconds().size() == 2);
    CHECK(p.plan().describe() == second.describe());
    for (const auto s : p.migration_seconds()) MESSAGE("migration pause: " << s * 1e3 << " ms");
    CHECK(events.size() == 2);
}

TEST_CASE("resilience: a worker killed (SIGKILL) mid-generation with 3 requests in flight; every text unchanged" *
          doctest::timeout(180)) {
    const FastLinks fl;
    Workers cl("failover", 3, fl);
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    const auto expected = alone(Model::open(test::stories260k()));
    auto ro = remote_options(cl.tls.get(), fl);
    ro.max_in_flight = 3;
    ro.failover = true;
    std::vector<std::string> events;
    ro.on_event = [&](const std::string& e) { events.push_back(e); };
    RemotePipeline p(model, endpoints(cl.ws), Plan::even(model->config(), device_ids(3)), ro);
    std::size_t sampled = 0;
    submit_prompts(p, [&] {
        if (++sampled == 40) cl.ws[1]->kill(SIGKILL);  // worker 2, mid-ring
    });
    const auto results = p.run();
    check_texts(results, expected);
    REQUIRE(p.recoveries().size() == 1);
    const auto& ev = p.recoveries().front();
    CHECK(ev.lost == 2);
    CHECK(ev.requests >= 1);
    CHECK(p.plan().stage_of_device(2) == nullptr);
    CHECK(!events.empty());
    MESSAGE("recovered from the kill: re-plan " << ev.replan_seconds * 1e3 << " ms, next token after "
                                                << ev.recovery_seconds * 1e3 << " ms, " << ev.replayed_steps
                                                << " steps replayed for " << ev.requests << " requests");
}

TEST_CASE("resilience: a worker the plan leaves out stands by: a failover uses it, and its own loss stops nothing" *
          doctest::timeout(180)) {
    const FastLinks fl;
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    const auto expected = alone(Model::open(test::stories260k()));
    const auto two = Plan::even(model->config(), {1, 2});  // worker 3 holds no blocks
    SUBCASE("a planned worker is killed: the re-plan takes the standby worker") {
        Workers cl("standby-used", 3, fl);
        auto ro = remote_options(cl.tls.get(), fl);
        ro.max_in_flight = 3;
        ro.failover = true;
        RemotePipeline p(model, endpoints(cl.ws), two, ro);
        CHECK(p.standby() == std::vector<DeviceId>{3});
        std::size_t sampled = 0;
        submit_prompts(p, [&] {
            if (++sampled == 40) cl.ws[1]->kill(SIGKILL);
        });
        const auto results = p.run();
        check_texts(results, expected);
        REQUIRE(p.recoveries().size() == 1);
        CHECK(p.recoveries().front().lost == 2);
        CHECK(p.plan().stage_of_device(3) != nullptr);  // the even split over {1, 3}
        CHECK(p.plan().stage_of_device(2) == nullptr);
    }
    SUBCASE("the standby worker is killed, without failover: the run goes on untouched") {
        Workers cl("standby-lost", 3, fl);
        auto ro = remote_options(cl.tls.get(), fl);
        ro.max_in_flight = 3;
        RemotePipeline p(model, endpoints(cl.ws), two, ro);
        std::size_t sampled = 0;
        submit_prompts(p, [&] {
            if (++sampled == 20) cl.ws[2]->kill(SIGKILL);
        });
        const auto results = p.run();
        check_texts(results, expected);
        CHECK(p.recoveries().empty());
        CHECK(p.plan().describe() == two.describe());
    }
}

TEST_CASE("resilience: a new worker and a killed worker that comes back join, and each failover uses them; texts "
          "unchanged" * doctest::timeout(180)) {
    const FastLinks fl;
    Workers cl("join", 2, fl);
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    const auto expected = alone(Model::open(test::stories260k()));
    auto ro = remote_options(cl.tls.get(), fl);
    ro.max_in_flight = 3;
    ro.failover = true;
    ro.rejoin_interval = std::chrono::milliseconds(100);
    EventLog events;
    ro.on_event = events.sink();
    RemotePipeline p(model, endpoints(cl.ws), Plan::even(model->config(), device_ids(2)), ro);

    // A new device joins before the run: it stands by, holding no blocks.
    WorkerProcess w3(cl.dir, "w3", cl.key, fl.args());
    REQUIRE(p.add_worker(w3.endpoint()) == 3);
    CHECK(p.standby() == std::vector<DeviceId>{3});
    CHECK(p.plan().stage_of_device(3) == nullptr);

    // Mid-generation: worker 2 is killed (the re-plan takes 1 and the standby
    // 3); a worker starts again at worker 2's address and is dialled back in
    // as device 4; then worker 1 is killed (the re-plan takes 3 and 4).
    const auto w2_port = cl.ws[1]->port();
    std::unique_ptr<WorkerProcess> back;
    Plan after_first;
    bool rejoined = false;
    std::size_t sampled = 0;
    submit_prompts(p, [&] {
        ++sampled;
        if (sampled == 30) cl.ws[1]->kill(SIGKILL);
        if (sampled == 70) {
            after_first = p.plan();
            back = std::make_unique<WorkerProcess>(cl.dir, "w2-back", cl.key, fl.args(), "", w2_port);
            // The coordinator dials the address again every 100 ms.
            for (int i = 0; i < 500 && !rejoined; ++i) {
                const auto sb = p.standby();
                rejoined = std::find(sb.begin(), sb.end(), DeviceId{4}) != sb.end();
                if (!rejoined) std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        }
        if (sampled == 100) cl.ws[0]->kill(SIGKILL);
    });
    const auto results = p.run();
    check_texts(results, expected);
    const auto all_events = events.text();
    INFO("events:\n" << all_events);
    CHECK(rejoined);
    REQUIRE(p.recoveries().size() == 2);
    CHECK(p.recoveries()[0].lost == 2);
    CHECK(p.recoveries()[1].lost == 1);
    // The first re-plan used the new device, the second the one that came back.
    CHECK(after_first.stage_of_device(1) != nullptr);
    CHECK(after_first.stage_of_device(3) != nullptr);
    const auto final_plan = p.plan();
    CHECK(final_plan.stages.size() == 2);
    CHECK(final_plan.stage_of_device(3) != nullptr);
    CHECK(final_plan.stage_of_device(4) != nullptr);
    CHECK(all_events.find("join: device 3") != std::string::npos);
    CHECK(all_events.find("join: device 4") != std::string::npos);
    // The device that came back computed steps for the requests.
    CHECK(p.stats(4).steps > 0);
}

TEST_CASE("resilience: a frozen worker (SIGSTOP) is dropped after the idle timeout and generation continues" *
          doctest::timeout(180)) {
    const FastLinks fl;
    Workers cl("frozen", 3, fl);
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    const auto expected = alone(Model::open(test::stories260k()));
    auto ro = remote_options(cl.tls.get(), fl);
    ro.max_in_flight = 2;
    ro.failover = true;
    RemotePipeline p(model, endpoints(cl.ws), Plan::even(model->config(), device_ids(3)), ro);
    std::size_t sampled = 0;
    clock::time_point frozen_at{};
    for (std::size_t i = 0; i < 2; ++i) {
        RequestSpec r;
        r.prompt = kPrompts[i];
        r.max_tokens = kTokens;
        r.on_token = [&](RequestId, std::int32_t) {
            if (++sampled == 30) {
                cl.ws[2]->kill(SIGSTOP);  // the last worker: its output never comes back
                frozen_at = clock::now();
            }
            return true;
        };
        p.submit(std::move(r));
    }
    const auto results = p.run();
    cl.ws[2]->kill(SIGCONT);
    REQUIRE(results.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) CHECK(results[i].tokens == expected[i]);
    REQUIRE(p.recoveries().size() == 1);
    CHECK(p.recoveries().front().lost == 3);
    const double detected = std::chrono::duration<double>(clock::now() - frozen_at).count();
    MESSAGE("frozen worker replaced; whole run finished " << detected << " s after the freeze (idle timeout "
                                                          << fl.idle_ms << " ms)");
}

namespace {

struct BalanceRun {
    std::vector<RequestResult> results;
    int rebalances = 0;
    std::vector<std::string> events;
    Plan final_plan;
    double seconds = 0;
    double tail_tokens_per_s = 0;  // after `tail_from` seconds
    std::vector<DeviceMonitor> monitor;   // the balancer's monitor at the end
    std::map<DeviceId, wire::Stats> stats;  // each final device's counters
    std::string trace;                    // the run's trace (JSON)
};

// Three emulated phones (phone_args); `extra2` shapes worker 2.
BalanceRun balance_run(const std::string& tag, bool balance, const std::vector<std::string>& extra2, double tail_from) {
    const FastLinks fl;
    const auto dir = fresh_dir(tag);
    const auto key = make_key(dir);
    TlsConfig tls(ClusterKey::load(key));
    std::vector<std::unique_ptr<WorkerProcess>> ws;
    for (int i = 0; i < 3; ++i) {
        auto a = phone_args(fl);
        if (i == 1)
            for (const auto& x : extra2) a.push_back(x);
        ws.push_back(std::make_unique<WorkerProcess>(dir, "w" + std::to_string(i + 1), key, a));
    }
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    auto ro = remote_options(&tls, fl);
    ro.max_in_flight = 3;
    ro.balance = balance;
    ro.balance_interval = std::chrono::milliseconds(150);
    TraceRecorder rec;
    ro.trace = &rec;
    BalanceRun out;
    ro.on_event = [&](const std::string& e) { out.events.push_back(e); };
    RemotePipeline p(model, endpoints(ws), Plan::even(model->config(), device_ids(3)), ro);
    const auto t0 = clock::now();
    std::size_t tail_tokens = 0;
    submit_prompts(
        p, [&] {
            if (std::chrono::duration<double>(clock::now() - t0).count() >= tail_from) ++tail_tokens;
        },
        300);
    out.results = p.run();
    out.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    out.tail_tokens_per_s = static_cast<double>(tail_tokens) / std::max(1e-9, out.seconds - tail_from);
    out.rebalances = p.rebalances();
    out.final_plan = p.plan();
    out.monitor = p.monitor();
    for (const auto& st : out.final_plan.stages) out.stats[st.device] = p.stats(st.device);
    out.trace = rec.json();
    return out;
}

std::vector<std::vector<std::int32_t>> alone300() {
    ThreadPool pool(1);
    Generator g(Model::open(test::stories260k()), pool);
    std::vector<std::vector<std::int32_t>> out;
    for (const auto& p : kPrompts) out.push_back(g.generate(p, {.max_tokens = 300}));
    return out;
}

}  // namespace

TEST_CASE("resilience: a worker 4x slower mid-generation loses blocks to the balancer; texts unchanged" *
          doctest::timeout(300)) {
    const auto expected = alone300();
    const std::vector<std::string> slow = {"--slowdown-schedule", "0.8s:4x"};
    const auto on = balance_run("balance-on", true, slow, 0.8);
    REQUIRE(on.results.size() == kPrompts.size());
    for (std::size_t i = 0; i < on.results.size(); ++i) CHECK(on.results[i].tokens == expected[i]);
    for (const auto& e : on.events) MESSAGE(e);
    CHECK(on.rebalances >= 1);
    // No flapping: every move goes to a plan not held before. (A machine much
    // slower than this one, e.g. under ASan, mispredicts and may need a third
    // move, but never goes back.)
    CHECK(on.rebalances <= 3);
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    std::vector<std::string> held = {Plan::even(model->config(), device_ids(3)).describe()};
    for (const auto& e : on.events) {
        const std::string tag = "migration: moved to ";
        if (e.rfind(tag, 0) != 0) continue;
        const auto plan = e.substr(tag.size(), e.find(' ', tag.size()) - tag.size());
        CHECK_MESSAGE(std::find(held.begin(), held.end(), plan) == held.end(), "moved back to " << plan);
        held.push_back(plan);
    }
    CHECK(held.size() == static_cast<std::size_t>(on.rebalances) + 1);
    // Device 2 held 4 of stories260K's 12 blocks under the even split.
    const auto* st = on.final_plan.stage_of_device(2);
    CHECK((st ? st->blocks.size() : 0) < 4);
    // The monitor's view is exposed: every device of the final plan measured,
    // its per-block times (measured by the worker) summing to its step time;
    // steps queued for a device somewhere (3 requests in flight); and the same
    // numbers as trace counters.
    REQUIRE(on.monitor.size() == on.final_plan.stages.size());
    for (const auto& m : on.monitor) {
        INFO("device " << m.device << " blocks " << to_string(m.blocks));
        REQUIRE(m.step_ewma_seconds.has_value());
        CHECK(m.windows > 0);
        CHECK(m.steps > 0);
        CHECK(m.speed > 0);
        REQUIRE(m.block_seconds.size() == static_cast<std::size_t>(m.blocks.size()));
        double sum = 0;
        for (const double b : m.block_seconds) sum += b;
        CHECK(sum == doctest::Approx(*m.step_ewma_seconds).epsilon(1e-9));
        CHECK(m.block_seconds_measured);  // split by the worker's per-block times
        MESSAGE("monitor: device " << m.device << " " << to_string(m.blocks) << ": " << *m.step_ewma_seconds * 1e3
                                   << " ms/step (EWMA), speed " << m.speed / 1e6 << " MB/s, queue "
                                   << m.queue_per_step_seconds * 1e3 << " ms/step, send "
                                   << m.send_per_step_seconds * 1e3 << " ms/step, "
                                   << on.stats.at(m.device).queue_seconds << " s queued in all");
    }
    double queued = 0;
    for (const auto& [d, s] : on.stats) queued += s.queue_seconds;
    CHECK(queued > 0);
    CHECK(on.trace.find(R"x({"name":"monitor: step ms (EWMA)","ph":"C")x") != std::string::npos);
    CHECK(on.trace.find(R"x({"name":"monitor: queue ms/step","ph":"C")x") != std::string::npos);
    // The same run without the balancer, for the throughput after the slowdown
    // (reported here; the paper suite's experiment 3 measures it properly).
    const auto off = balance_run("balance-off", false, slow, 0.8);
    for (std::size_t i = 0; i < off.results.size(); ++i) CHECK(off.results[i].tokens == expected[i]);
    CHECK(off.rebalances == 0);
    MESSAGE("after the slowdown: " << on.tail_tokens_per_s << " tokens/s with the balancer, " << off.tail_tokens_per_s
                                   << " without (" << on.tail_tokens_per_s / off.tail_tokens_per_s << "x); whole runs "
                                   << on.seconds << " s vs " << off.seconds << " s");
}

TEST_CASE("resilience: a worker whose speed is noisy does not make the balancer move blocks back and forth" *
          doctest::timeout(300)) {
    const auto expected = alone300();
    const auto r = balance_run("balance-noisy", true, {"--slowdown-noise", "0.6"}, 0.0);
    for (std::size_t i = 0; i < r.results.size(); ++i) CHECK(r.results[i].tokens == expected[i]);
    for (const auto& e : r.events) MESSAGE(e);
    MESSAGE("rebalances with a noisy device: " << r.rebalances);
    CHECK(r.rebalances == 0);
}

TEST_CASE("resilience: a worker that joins is profiled on arrival, and the balancer moves blocks onto it; texts "
          "unchanged" * doctest::timeout(300)) {
    const auto expected = alone300();
    const FastLinks fl;
    const auto dir = fresh_dir("balance-join");
    const auto key = make_key(dir);
    TlsConfig tls(ClusterKey::load(key));
    // Emulated phones as in balance_run(), all equally fast.
    std::vector<std::unique_ptr<WorkerProcess>> ws;
    for (int i = 0; i < 2; ++i)
        ws.push_back(std::make_unique<WorkerProcess>(dir, "w" + std::to_string(i + 1), key, phone_args(fl)));
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    auto ro = remote_options(&tls, fl);
    ro.max_in_flight = 3;
    ro.balance = true;
    ro.balance_interval = std::chrono::milliseconds(150);
    EventLog events;
    ro.on_event = events.sink();
    const Plan two = Plan::even(model->config(), device_ids(2));
    RemotePipeline p(model, endpoints(ws), two, ro);
    // A third phone joins: it stands by, and is timed on this model's blocks.
    WorkerProcess w3(dir, "w3", key, phone_args(fl));
    REQUIRE(p.add_worker(w3.endpoint()) == 3);
    CHECK(p.standby() == std::vector<DeviceId>{3});
    const auto profiles = p.profiles();
    REQUIRE(profiles.count(3) == 1);
    CHECK(profiles.at(3).decode[CostKind::Ffn] > 0);
    CHECK(profiles.at(3).decode[CostKind::Attention] > 0);
    submit_prompts(p, [] {}, 300);
    const auto results = p.run();
    check_texts(results, expected);
    const auto all_events = events.text();
    INFO("events:\n" << all_events);
    MESSAGE("events:\n" << all_events);
    CHECK(all_events.find("standby: device 3 profiled") != std::string::npos);
    // Two stages of 6 blocks against three of 4 (the same speeds): the
    // balancer's first move takes device 3 in, and it computes steps.
    CHECK(p.rebalances() >= 1);
    CHECK(p.rebalances() <= 3);
    const auto final_plan = p.plan();
    REQUIRE(final_plan.stage_of_device(3) != nullptr);
    CHECK(final_plan.stages.size() == 3);
    CHECK(p.stats(3).steps > 0);
    for (const auto& m : p.monitor())
        if (m.step_ewma_seconds)
            MESSAGE("monitor: device " << m.device << " " << to_string(m.blocks) << ": " << *m.step_ewma_seconds * 1e3
                                       << " ms/step (EWMA)");
}
