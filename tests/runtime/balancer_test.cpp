// The balancer's logic: the split it computes equals a brute-force search,
// it moves blocks off a device that became slow (once), and a device whose
// speed is merely noisy does not make it move blocks back and forth.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include <tandem/runtime/balancer.hpp>

using namespace tandem;

namespace {

// Every way to cut B blocks into D ordered, possibly empty, contiguous parts.
double brute_force(const std::vector<double>& cost, const std::vector<double>& mem, const std::vector<double>& speed,
                   const std::vector<double>& budget) {
    const std::size_t B = cost.size(), D = speed.size();
    double best = INFINITY;
    std::vector<std::size_t> cuts(D + 1, 0);  // part i is [cuts[i], cuts[i + 1])
    cuts[D] = B;
    auto evaluate = [&] {
        double worst = 0;
        for (std::size_t i = 0; i < D; ++i) {
            double c = 0, m = 0;
            for (auto b = cuts[i]; b < cuts[i + 1]; ++b) {
                c += cost[b];
                m += mem[b];
            }
            if (m > budget[i]) return;
            worst = std::max(worst, c / speed[i]);
        }
        best = std::min(best, worst);
    };
    auto rec = [&](auto&& self, std::size_t d) -> void {  // choose cuts[d] for d in [1, D)
        if (d == D) return evaluate();
        for (auto e = cuts[d - 1]; e <= B; ++e) {
            cuts[d] = e;
            self(self, d + 1);
        }
    };
    rec(rec, 1);
    return best;
}

struct Sim {
    // Each device's true seconds per unit of block cost; the monitor sees
    // busy time = cost of its blocks * that, per step.
    std::map<DeviceId, double> per_unit;
    std::map<DeviceId, DeviceSample> total;
    std::map<DeviceId, DeviceSample> step(const Plan& plan, const std::vector<double>& cost, int steps,
                                          std::mt19937& rng, double noise) {
        std::uniform_real_distribution<double> u(1 - noise, 1 + noise);
        for (const auto& st : plan.stages) {
            double c = 0;
            for (auto b = st.blocks.begin; b < st.blocks.end; ++b) c += cost[static_cast<std::size_t>(b)];
            auto& t = total[st.device];
            for (int i = 0; i < steps; ++i) t.busy_seconds += c * per_unit[st.device] * u(rng);
            t.steps += static_cast<std::uint64_t>(steps);
        }
        return total;
    }
};

}  // namespace

TEST_CASE("balancer: best_split equals brute force on random instances, memory limits included") {
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> uc(0.1, 3.0), us(0.2, 2.0);
    for (int trial = 0; trial < 300; ++trial) {
        const std::size_t B = 2 + rng() % 7, D = 1 + rng() % 4;
        std::vector<double> cost(B), mem(B), speed(D), budget(D);
        for (auto& c : cost) c = uc(rng);
        for (auto& m : mem) m = uc(rng);
        for (auto& s : speed) s = us(rng);
        for (auto& b : budget) b = (rng() % 3 == 0) ? INFINITY : uc(rng) * 3;
        std::vector<DeviceId> ids;
        for (std::size_t i = 0; i < D; ++i) ids.push_back(static_cast<DeviceId>(i + 1));
        const auto r = best_split(cost, mem, ids, speed, budget);
        const double bf = brute_force(cost, mem, speed, budget);
        INFO("trial " << trial);
        if (std::isinf(bf)) {
            CHECK(!r.has_value());
            continue;
        }
        REQUIRE(r.has_value());
        CHECK(r->bottleneck == doctest::Approx(bf).epsilon(1e-12));
        // The plan covers every block once, in order, and respects memory.
        std::int64_t next = 0;
        for (const auto& st : r->plan.stages) {
            CHECK(st.blocks.begin == next);
            next = st.blocks.end;
            double m = 0;
            for (auto b = st.blocks.begin; b < st.blocks.end; ++b) m += mem[static_cast<std::size_t>(b)];
            CHECK(m <= budget[st.device - 1]);
        }
        CHECK(next == static_cast<std::int64_t>(B));
    }
}

TEST_CASE("balancer: a device 4x slower loses blocks, once, after `patience` windows") {
    const std::vector<double> cost(12, 1.0), mem(12, 1.0);
    BalancerOptions o;
    o.patience = 3;
    o.cooldown = 5;
    Balancer bal(o, cost, mem);
    Plan plan = Plan{{{1, {0, 4}}, {2, {4, 8}}, {3, {8, 12}}}};
    Sim sim;
    sim.per_unit = {{1, 1e-3}, {2, 1e-3}, {3, 1e-3}};
    std::mt19937 rng(1);
    int moved_at = -1;
    for (int w = 0; w < 60; ++w) {
        if (w == 10) sim.per_unit[2] = 4e-3;  // device 2 becomes 4x slower
        const auto samples = sim.step(plan, cost, 10, rng, 0.02);
        if (auto d = bal.window(plan, samples, {}, 1000)) {
            CHECK(moved_at == -1);
            moved_at = w;
            plan = d->next;
            CHECK(d->new_bottleneck < d->current_bottleneck);
        }
    }
    REQUIRE(moved_at >= 10 + o.patience - 1);
    CHECK(moved_at <= 10 + o.patience + 1);
    const auto* st2 = plan.stage_of_device(2);
    const std::int64_t held = st2 ? st2->blocks.size() : 0;
    CHECK(held < 4);
    CHECK(bal.moves() == 1);
}

TEST_CASE("balancer: a noisy device does not make blocks flap; a short blip moves nothing") {
    const std::vector<double> cost(12, 1.0), mem(12, 1.0);
    Balancer bal(BalancerOptions{}, cost, mem);
    const Plan start = Plan{{{1, {0, 4}}, {2, {4, 8}}, {3, {8, 12}}}};
    Plan plan = start;
    Sim sim;
    sim.per_unit = {{1, 1e-3}, {2, 1e-3}, {3, 1e-3}};
    std::mt19937 rng(3);
    for (int w = 0; w < 300; ++w) {
        // Device 2 noisy: each step anywhere from 0.4x to 1.6x its speed; and a
        // two-window 3x blip on device 3.
        sim.per_unit[3] = (w == 100 || w == 101) ? 3e-3 : 1e-3;
        sim.step(plan, cost, 10, rng, 0.0);
        std::uniform_real_distribution<double> noisy(0.4, 1.6);
        auto& t2 = sim.total[2];
        const auto* s2 = plan.stage_of_device(2);
        if (s2) {
            // Replace device 2's last 10 steps with noisy ones.
            const double c = static_cast<double>(s2->blocks.size());
            t2.busy_seconds -= 10 * c * 1e-3;
            for (int i = 0; i < 10; ++i) t2.busy_seconds += c * 1e-3 * noisy(rng);
        }
        if (auto d = bal.window(plan, sim.total, {}, 1e6)) plan = d->next;
    }
    MESSAGE("moves over 300 noisy windows: " << bal.moves());
    CHECK(bal.moves() == 0);
    CHECK(plan.describe() == start.describe());
}

TEST_CASE("balancer: no move when the tokens left cannot repay the migration") {
    const std::vector<double> cost(6, 1.0), mem(6, 1.0);
    BalancerOptions o;
    o.migration_seconds = 10.0;  // a very expensive move
    Balancer bal(o, cost, mem);
    const Plan plan = Plan{{{1, {0, 3}}, {2, {3, 6}}}};
    Sim sim;
    sim.per_unit = {{1, 1e-3}, {2, 8e-3}};
    std::mt19937 rng(5);
    for (int w = 0; w < 20; ++w) CHECK(!bal.window(plan, sim.step(plan, cost, 5, rng, 0.0), {}, 100).has_value());
    // With many tokens left, the same drift is worth it.
    Balancer bal2(BalancerOptions{}, cost, mem);
    Sim sim2;
    sim2.per_unit = sim.per_unit;
    bool moved = false;
    for (int w = 0; w < 20 && !moved; ++w) moved = bal2.window(plan, sim2.step(plan, cost, 5, rng, 0.0), {}, 1e6).has_value();
    CHECK(moved);
}

TEST_CASE("balancer: when slowdowns come and go faster than moves pay off, moves stop after failing to deliver") {
    // Every device is, independently, sometimes 2x slower for a few windows
    // (other programs contending for its cores): long enough to pass the
    // patience check, gone again by the time a move has been measured. Each
    // move is predicted from a state that no longer holds, so it does not
    // deliver. Without learning from its moves the balancer moves blocks
    // back and forth for as long as the episodes go on; with it, it stops
    // after a few failed moves (here: 23 moves, 9 of them failed, without;
    // 7 and 4 with).
    const std::vector<double> cost(12, 1.0), mem(12, 1.0);
    auto run = [&](bool learn) {
        BalancerOptions o;
        o.learn_from_moves = learn;
        Balancer bal(o, cost, mem);
        Plan plan{{{1, {0, 4}}, {2, {4, 8}}, {3, {8, 12}}}};
        std::map<DeviceId, DeviceSample> total;
        std::map<DeviceId, double> factor = {{1, 1.0}, {2, 1.0}, {3, 1.0}};
        std::mt19937 rng(11);
        std::bernoulli_distribution flip(0.12);
        for (int w = 0; w < 400; ++w) {
            for (auto& [d, f] : factor)
                if (flip(rng)) f = f == 1.0 ? 2.0 : 1.0;
            for (const auto& st : plan.stages) {
                auto& t = total[st.device];
                t.busy_seconds += 10 * static_cast<double>(st.blocks.size()) * 1e-3 * factor[st.device];
                t.steps += 10;
            }
            if (auto d = bal.window(plan, total, {}, 1e6)) plan = d->next;
        }
        return std::pair{bal.moves(), bal.failed_moves()};
    };
    const auto [naive_moves, naive_failed] = run(false);
    const auto [moves, failed] = run(true);
    MESSAGE("moves over 400 windows: " << naive_moves << " (" << naive_failed << " that did not deliver) without learning, "
                                       << moves << " (" << failed << ") with it");
    CHECK(naive_failed >= 4);  // the scenario does fool the model, again and again
    // Each failure doubles the threshold (0.2 -> 0.4 -> 0.8), each delivered
    // move halves it back: far fewer moves, and fewer that did not deliver.
    CHECK(failed < naive_failed);
    CHECK(moves * 2 <= naive_moves);
}

TEST_CASE("balancer: a move that delivers keeps the threshold where it was") {
    const std::vector<double> cost(12, 1.0), mem(12, 1.0);
    Balancer bal(BalancerOptions{}, cost, mem);
    Plan plan{{{1, {0, 4}}, {2, {4, 8}}, {3, {8, 12}}}};
    Sim sim;
    sim.per_unit = {{1, 1e-3}, {2, 4e-3}, {3, 1e-3}};
    std::mt19937 rng(5);
    for (int w = 0; w < 40; ++w)
        if (auto d = bal.window(plan, sim.step(plan, cost, 10, rng, 0.0), {}, 1e6)) plan = d->next;
    CHECK(bal.moves() == 1);
    CHECK(bal.failed_moves() == 0);
    CHECK(bal.threshold() == doctest::Approx(BalancerOptions{}.threshold));
}

TEST_CASE("balancer: windows with prompt steps are skipped, so a prompt does not look like a slow device") {
    Monitor m(0.3);
    CHECK(!m.add(1, {0.0, 0, 0}));  // the first sample only sets the baseline
    CHECK(m.add(1, {1.0, 10, 10}));  // 10 decode steps, 0.1 s each
    REQUIRE(m.step_seconds(1).has_value());
    CHECK(*m.step_seconds(1) == doctest::Approx(0.1));
    // One window holds a 50-token prompt step: 2 s for 1 step, not a decode speed.
    m.start_window();
    CHECK(!m.add(1, {3.0, 11, 60}));
    CHECK(*m.step_seconds(1) == doctest::Approx(0.1));
    CHECK(!m.any_fresh());                    // nothing new for the trigger
    CHECK(!m.recent_mean(1, 2).has_value());  // still one window measured
    // Decode again: measured from the new baseline.
    m.start_window();
    CHECK(m.add(1, {4.0, 21, 70}));
    CHECK(*m.step_seconds(1) == doctest::Approx(0.1));
    CHECK(*m.recent_mean(1, 2) == doctest::Approx(0.1));
    // Samples without token counts (0) are taken as decode, as before.
    Monitor old(0.3);
    old.add(2, {0.0, 0});
    CHECK(old.add(2, {2.0, 1}));
    CHECK(*old.step_seconds(2) == doctest::Approx(2.0));

    // The balancer: device 2 meets a long prompt step in one window while
    // the others meet theirs in other windows; nothing moves.
    const std::vector<double> cost(12, 1.0), mem(12, 1.0);
    BalancerOptions o;
    o.patience = 1;
    o.cooldown = 0;
    Balancer bal(o, cost, mem);
    const Plan plan = Plan{{{1, {0, 4}}, {2, {4, 8}}, {3, {8, 12}}}};
    std::map<DeviceId, DeviceSample> total;
    for (const DeviceId d : {1u, 2u, 3u}) total[d] = {};
    for (int w = 0; w < 12; ++w) {
        for (const DeviceId d : {1u, 2u, 3u}) {
            auto& t = total[d];
            if (w == 2 + static_cast<int>(d)) {  // this device's prompt step: 40 tokens, 40x a decode step
                t.busy_seconds += 40 * 4e-3;
                t.steps += 1;
                t.tokens += 40;
            }
            t.busy_seconds += 10 * 4e-3;
            t.steps += 10;
            t.tokens += 10;
        }
        CHECK_MESSAGE(!bal.window(plan, total, {}, 1000), "window " << w);
    }
    CHECK(bal.moves() == 0);
}

TEST_CASE("balancer: slow steps extend a window until it holds min_window_steps steps") {
    Monitor m(0.3, 8);
    m.add(1, {0.0, 0, 0});
    // 3 steps of 0.1 s, then 3 more: not yet a window.
    CHECK(!m.add(1, {0.3, 3, 3}));
    CHECK(!m.add(1, {0.6, 6, 6}));
    CHECK(!m.step_seconds(1).has_value());
    // Two more steps, one of them slow: one window of 8 steps from the first baseline.
    CHECK(m.add(1, {1.0, 8, 8}));
    CHECK(*m.step_seconds(1) == doctest::Approx(1.0 / 8));

    // With one step per poll (slow steps), a noisy device whose windows hold
    // 8 steps each moves nothing, and a 4x slower one still loses blocks.
    const std::vector<double> cost(12, 1.0), mem(12, 1.0);
    for (const double factor : {1.0, 4.0}) {
        BalancerOptions o;  // min_window_steps 8, patience 3
        Balancer bal(o, cost, mem);
        Plan plan = Plan{{{1, {0, 4}}, {2, {4, 8}}, {3, {8, 12}}}};
        Sim sim;
        sim.per_unit = {{1, 1e-3}, {2, 1e-3}, {3, 1e-3}};
        std::mt19937 rng(3);
        int moves = 0;
        for (int w = 0; w < 400; ++w) {
            if (w == 40) sim.per_unit[2] = factor * 1e-3;
            const auto samples = sim.step(plan, cost, 1, rng, 0.6);  // one step per poll, +-60% noise
            if (auto d = bal.window(plan, samples, {}, 1e6)) {
                ++moves;
                plan = d->next;
            }
        }
        INFO("slowdown " << factor);
        if (factor == 1.0)
            CHECK(moves == 0);
        else
            CHECK(moves >= 1);
    }
}

TEST_CASE("balancer: newest_mean spans the newest N steps across window boundaries and skips prompts") {
    Monitor m(0.3, 8);
    CHECK(!m.newest_mean(1, 8).has_value());
    m.add(1, {0.0, 0, 0});
    m.add(1, {0.3, 3, 3});  // 3 steps of 0.1 s: the window (8 steps) is still open
    CHECK(!m.newest_mean(1, 8).has_value());
    CHECK(*m.newest_mean(1, 3) == doctest::Approx(0.1));
    m.add(1, {0.6, 6, 6});
    m.add(1, {1.8, 9, 9});  // 3 steps of 0.4 s: the window [0, 9) closes
    CHECK(*m.recent_mean(1, 1) == doctest::Approx(1.8 / 9));
    // The newest 8 or more steps: from the sample at step 0 (9 steps), as no
    // sample starts a span of exactly 8; the newest 3: only the slow ones.
    CHECK(*m.newest_mean(1, 8) == doctest::Approx(1.8 / 9));
    CHECK(*m.newest_mean(1, 3) == doctest::Approx(0.4));
    CHECK(*m.newest_mean(1, 4) == doctest::Approx((1.8 - 0.3) / 6));
    // A prompt step among the newest steps: no decode speed from that span.
    m.add(1, {3.0, 10, 40});
    CHECK(!m.newest_mean(1, 1).has_value());
    // Blocks moved: the history restarts.
    m.blocks_changed(1, 0.2);
    CHECK(!m.newest_mean(1, 1).has_value());
    m.add(1, {3.2, 11, 41});
    CHECK(!m.newest_mean(1, 1).has_value());  // one sample: no span yet
    m.add(1, {3.4, 12, 42});
    CHECK(*m.newest_mean(1, 1) == doctest::Approx(0.2));
    // Counters that went back (a restarted worker) restart it too.
    m.add(1, {0.1, 1, 1});
    CHECK(!m.newest_mean(1, 1).has_value());
}

TEST_CASE("balancer: a slowdown inside a window still gets a full-size move") {
    // Polls bring `per_poll` steps each and windows need 8, so the slowdown
    // lands inside a window, at every offset tried. The streak's mean then
    // holds fast steps from before it; a move planned on that mean is too
    // small (a run of experiment 3 measured 1.05x instead of about 1.5x).
    // The move must be the one the true speeds call for.
    std::vector<double> cost, mem;
    for (int b = 0; b < 46; ++b) {
        cost.push_back(b == 0 || b == 45 ? 0.5 : (b % 2 == 1 ? 0.6 : 1.4));  // embedding, attention/FFN halves, head
        mem.push_back(1.0);
    }
    // Devices 1, 3, 2 in ring order; the plan is the best one before the slowdown.
    const std::vector<DeviceId> ids{1, 3, 2};
    const std::vector<double> budget(3, INFINITY);
    const auto before = best_split(cost, mem, ids, {1e3, 0.5e3, 1e3}, budget);
    const auto truth = best_split(cost, mem, ids, {1e3, 0.5e3, 1e3 / 3}, budget);
    REQUIRE(before.has_value());
    REQUIRE(truth.has_value());
    for (const int per_poll : {1, 2, 3, 8}) {
        for (int offset = 0; offset < 8; ++offset) {
            CAPTURE(per_poll);
            CAPTURE(offset);
            Balancer bal(BalancerOptions{}, cost, mem);  // patience 3, min_window_steps 8
            Plan plan = before->plan;
            Sim sim;
            sim.per_unit = {{1, 1e-3}, {2, 1e-3}, {3, 2e-3}};
            std::mt19937 rng(2);
            std::optional<Balancer::Decision> move;
            const int slow_at = 40 + offset;  // poll at which device 2 becomes 3x slower
            int poll = 0;
            for (; poll < 400 && !move; ++poll) {
                if (poll == slow_at) sim.per_unit[2] = 3e-3;
                move = bal.window(plan, sim.step(plan, cost, per_poll, rng, 0.0), {}, 1e6);
            }
            REQUIRE(move.has_value());
            CHECK(poll - 1 >= slow_at);
            CHECK(move->next.describe() == truth->plan.describe());
            CHECK(move->new_bottleneck == doctest::Approx(truth->bottleneck).epsilon(1e-9));
        }
    }
}

TEST_CASE("balancer: a device on standby takes blocks at the next move when it pays, and never when it is slow") {
    const std::vector<double> cost(12, 1.0), mem(12, 1.0);
    BalancerOptions o;
    o.patience = 3;
    const Plan two = Plan{{{1, {0, 6}}, {2, {6, 12}}}};
    // Devices 1 and 2 run 1 cost unit per ms: 6 ms per step each.
    auto run = [&](double standby_speed, double budget3) {
        Balancer bal(o, cost, mem);
        Plan plan = two;
        Sim sim;
        sim.per_unit = {{1, 1e-3}, {2, 1e-3}, {3, 1.0 / standby_speed}};
        std::mt19937 rng(3);
        int moves = 0;
        for (int w = 0; w < 30; ++w) {
            const auto samples = sim.step(plan, cost, 10, rng, 0.0);
            // Device 3 is on standby while the plan leaves it out (its speed
            // as a profile would predict it); once in the plan it is measured.
            std::map<DeviceId, double> standby;
            if (!plan.stage_of_device(3)) standby[3] = standby_speed;
            if (auto d = bal.window(plan, samples, {{3, budget3}}, 1000, standby)) {
                ++moves;
                plan = d->next;
            }
        }
        return std::pair{plan, moves};
    };
    SUBCASE("as fast as the others: three equal stages, in one move") {
        const auto [plan, moves] = run(1e3, INFINITY);
        CHECK(moves == 1);
        CHECK(plan == Plan{{{1, {0, 4}}, {2, {4, 8}}, {3, {8, 12}}}});
    }
    SUBCASE("twice as fast: it takes half the model") {
        // x blocks on device 3 take x/2 ms; the other 12 - x split over two
        // devices of 1 ms per block: x = 6 gives 3 ms, every other x more.
        const auto [plan, moves] = run(2e3, INFINITY);
        CHECK(moves == 1);
        CHECK(plan == Plan{{{1, {0, 3}}, {2, {3, 6}}, {3, {6, 12}}}});
    }
    SUBCASE("twice as fast but with memory for 4 blocks: it takes 4") {
        const auto [plan, moves] = run(2e3, 4);
        CHECK(moves == 1);
        CHECK(plan == Plan{{{1, {0, 4}}, {2, {4, 8}}, {3, {8, 12}}}});
    }
    SUBCASE("10x slower than the others: nothing moves") {
        const auto [plan, moves] = run(1e2, INFINITY);
        CHECK(moves == 0);
        CHECK(plan == two);
    }
}
