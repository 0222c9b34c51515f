// The GLPK placement solver against exhaustive enumeration on random small
// instances (both objectives, both formulations, both granularities), against
// the baselines, and on hand-built clusters whose answer is known.
#include <doctest/doctest.h>

#include <cmath>

#include <tandem/placement/solver.hpp>

#include "placement/instances.hpp"

using namespace tandem;
using tandem::test::brute_force;
using tandem::test::random_instance;

namespace {

bool close(double a, double b) { return std::abs(a - b) <= 1e-6 * std::max(std::abs(a), std::abs(b)) + 1e-12; }

struct Tally {
    int solved = 0, infeasible = 0, multi_device = 0, left_out = 0, reordered = 0;
};

// Solves one instance and checks it against the brute force.
void check_instance(const CostModel& m, const SolverOptions& opt, Tally& tally) {
    const auto ref = brute_force(m, opt.objective, opt.layer_granularity);
    if (!ref.best) {
        ++tally.infeasible;
        try {
            (void)solve_placement(m, opt);
            FAIL("solver returned a plan for an instance where nothing fits");
        } catch (const InsufficientMemoryError& e) {
            // The least total overflow any placement has, to the byte.
            CHECK(e.missing_bytes() == ref.least_overflow);
            std::uint64_t sum = 0;
            for (const auto s : e.shortfall()) sum += s;
            CHECK(sum == e.missing_bytes());
            CHECK(std::string(e.what()).find(std::to_string(e.missing_bytes()) + " bytes") != std::string::npos);
        }
        return;
    }
    const auto r = solve_placement(m, opt);
    ++tally.solved;
    CHECK(r.optimal);
    CHECK(r.evaluation.fits);
    CHECK_MESSAGE(close(r.value(), ref.best_value), "GLPK " << r.value() << " vs brute force " << ref.best_value
                                                           << ": " << r.placement.describe(m.cluster()) << " vs "
                                                           << ref.best->describe(m.cluster()));
    // The evaluation the solver reports is the cost model's.
    const auto again = m.evaluate(r.placement);
    CHECK(again.latency_s == r.evaluation.latency_s);
    if (opt.objective == Objective::Throughput && opt.tie_break && m.options().in_flight > 1)
        CHECK(r.evaluation.latency_s <= ref.best_latency_at_best * (1 + 1e-6) + 1e-12);
    // Never worse than any baseline that fits.
    for (const auto& b : baselines(m, opt.objective))
        if (b.evaluation && b.evaluation->fits) CHECK(r.value() <= b.evaluation->value(opt.objective) * (1 + 1e-9));
    if (r.placement.stages.size() > 1) ++tally.multi_device;
    if (static_cast<int>(r.placement.stages.size()) < m.n_devices()) ++tally.left_out;
    for (std::size_t i = 1; i < r.placement.stages.size(); ++i)
        if (r.placement.stages[i].device < r.placement.stages[i - 1].device) {
            ++tally.reordered;
            break;
        }
}

void run_seeds(std::uint64_t first, int n, const test::InstanceOptions& io, const SolverOptions& opt) {
    Tally t;
    for (int i = 0; i < n; ++i) {
        const auto seed = first + static_cast<std::uint64_t>(i);
        CAPTURE(seed);
        const auto m = random_instance(seed, io);
        check_instance(m, opt, t);
    }
    MESSAGE(std::string(objective_name(opt.objective)) << ": " << t.solved << " solved, " << t.infeasible << " infeasible, "
                                          << t.multi_device << " multi-device, " << t.left_out << " left devices out, "
                                          << t.reordered << " reordered devices");
    // The instances exercise what the solver decides, not just trivial cases.
    CHECK(t.infeasible > 0);
    CHECK(t.multi_device > n / 5);
    CHECK(t.left_out > n / 10);
    CHECK(t.reordered > 0);
}

SolverOptions quiet(Objective o) {
    SolverOptions s;
    s.objective = o;
    s.explain = false;
    return s;
}

}  // namespace

TEST_CASE("placement: compact MILP equals brute force, latency, sub-layer cuts") {
    run_seeds(1000, 120, {}, quiet(Objective::Latency));
}

TEST_CASE("placement: compact MILP equals brute force, throughput, sub-layer cuts") {
    run_seeds(2000, 120, {}, quiet(Objective::Throughput));
}

TEST_CASE("placement: flow MILP equals brute force on irregular block sizes, both objectives") {
    test::InstanceOptions io;
    io.regular = false;
    io.max_layers = 3;  // up to 8 blocks: the flow formulation has U D^2 columns
    for (const auto o : {Objective::Latency, Objective::Throughput}) {
        auto opt = quiet(o);
        opt.formulation = milp::Formulation::Flow;
        run_seeds(3000 + static_cast<std::uint64_t>(o) * 1000, 60, io, opt);
    }
}

TEST_CASE("placement: both formulations agree with brute force at layer granularity") {
    for (const auto f : {milp::Formulation::Compact, milp::Formulation::Flow})
        for (const auto o : {Objective::Latency, Objective::Throughput}) {
            auto opt = quiet(o);
            opt.formulation = f;
            opt.layer_granularity = true;
            Tally t;
            for (std::uint64_t seed = 5000; seed < 5040; ++seed) {
                CAPTURE(seed);
                check_instance(random_instance(seed), opt, t);
            }
            CHECK(t.solved > 10);
        }
}

TEST_CASE("placement: on irregular blocks the compact formulation stays within memory") {
    test::InstanceOptions io;
    io.regular = false;
    int solved = 0;
    for (std::uint64_t seed = 7000; seed < 7060; ++seed) {
        CAPTURE(seed);
        const auto m = random_instance(seed, io);
        auto opt = quiet(Objective::Latency);
        opt.formulation = milp::Formulation::Compact;
        const auto ref = brute_force(m, Objective::Latency);
        try {
            const auto r = solve_placement(m, opt);
            ++solved;
            CHECK(r.evaluation.fits);
            REQUIRE(ref.best);
            CHECK(r.value() >= ref.best_value * (1 - 1e-9));  // conservative: never better than the optimum
        } catch (const InsufficientMemoryError&) {
            // Counting each kind at its largest may find nothing where a tight fit exists.
        }
    }
    CHECK(solved > 20);
}

// ---- hand-built clusters ------------------------------------------------------------

namespace {

ModelShape small_llama(std::int64_t layers = 8) {
    return ModelShape::llama("toy", layers, 512, 8, 8, 1536, 32000, 1024, 2.0);
}

DeviceProfile device(const std::string& name, double ms_per_block, std::uint64_t memory) {
    DeviceProfile p;
    p.name = name;
    p.memory_bytes = memory;
    for (std::size_t k = 0; k < kCostKinds; ++k) p.decode.s[k] = p.prefill.s[k] = ms_per_block / 1e3;
    return p;
}

bool mentions(const PlacementResult& r, const std::string& text) {
    for (const auto& l : r.explanation)
        if (l.find(text) != std::string::npos) return true;
    return false;
}

std::string all_lines(const PlacementResult& r) {
    std::string s;
    for (const auto& l : r.explanation) s += l + "\n";
    return s;
}

}  // namespace

TEST_CASE("placement: a device far slower than the rest is left out, and the explanation says why") {
    const auto shape = small_llama();
    const std::uint64_t big = 1ull << 34;
    // a and b could each hold everything; the slow one is 20x slower.
    Cluster c({device("a", 1.0, big / 2), device("slowpoke", 20.0, big), device("b", 1.2, big / 2)},
              Link::from_ms_mbps(1, 1000));
    // Only a and b together hold the model.
    const auto total = CostModel(shape, c, {.context = 1024}).total_memory_needed();
    c.device(0).memory_bytes = total * 6 / 10;
    c.device(2).memory_bytes = total * 6 / 10;
    const CostModel m(shape, c, {.context = 1024});
    const auto r = solve_placement(m);
    CHECK_FALSE(r.placement.uses(1));
    CHECK(r.placement.uses(0));
    CHECK(r.placement.uses(2));
    CHECK_MESSAGE(mentions(r, "left out slowpoke (too slow)"), all_lines(r));
    CHECK_MESSAGE(mentions(r, "the best plan that uses it takes"), all_lines(r));
    CHECK(mentions(r, "time per token: compute "));
}

TEST_CASE("placement: a fast device on a poor link is left out, and the explanation names the link") {
    const auto shape = small_llama();
    Cluster c({device("a", 1.0, 1ull << 34), device("remote", 0.5, 1ull << 34)}, Link::from_ms_mbps(1, 1000));
    // Twice as fast, but every hop to or from it costs 200 ms.
    for (const int x : {Cluster::kCoordinator, 0}) c.set_link_both(x, 1, Link::from_ms_mbps(200, 1));
    const CostModel m(shape, c, {.context = 1024});
    const auto r = solve_placement(m);
    REQUIRE(r.placement.stages.size() == 1);
    CHECK(r.placement.stages[0].device == 0);
    CHECK_MESSAGE(mentions(r, "left out remote (too poorly connected)"), all_lines(r));
}

TEST_CASE("placement: the solver picks the order that avoids a bad link, and says which") {
    const auto shape = small_llama();
    const CostModel probe(shape, Cluster({device("x", 1, 1)}), {.context = 1024});
    const auto third = probe.total_memory_needed() * 4 / 10;  // each holds 40%: all three are needed
    Cluster c({device("a", 1.0, third), device("b", 1.0, third), device("c", 1.0, third)}, Link::from_ms_mbps(1, 1000));
    c.set_link_both(0, 1, Link::from_ms_mbps(80, 5));  // a <-> b is terrible
    const CostModel m(shape, c, {.context = 1024});
    const auto r = solve_placement(m);
    REQUIRE(r.placement.stages.size() == 3);
    for (std::size_t i = 0; i + 1 < r.placement.stages.size(); ++i) {
        const auto a = r.placement.stages[i].device, b = r.placement.stages[i + 1].device;
        CHECK_FALSE(((a == 0 && b == 1) || (a == 1 && b == 0)));
    }
    CHECK_MESSAGE(mentions(r, "rather than the listed a -> b -> c"), all_lines(r));
    CHECK_MESSAGE(mentions(r, "mostly for its hop a -> b (5 Mbit/s, 80 ms"), all_lines(r));
}

TEST_CASE("placement: memory is respected, and the missing bytes are named when nothing fits") {
    const auto shape = small_llama();
    const CostModel probe(shape, Cluster({device("x", 1, 1)}), {.context = 1024});
    const auto need = probe.total_memory_needed();
    SUBCASE("a tight fit uses every device within its memory") {
        Cluster c({device("a", 1, need / 3 + need / 20), device("b", 1, need / 3 + need / 20),
                   device("c", 1, need / 3 + need / 20)});
        const CostModel m(shape, c, {.context = 1024});
        for (const auto o : {Objective::Latency, Objective::Throughput}) {
            SolverOptions opt;
            opt.objective = o;
            const auto r = solve_placement(m, opt);
            CHECK(r.placement.stages.size() == 3);
            for (int d = 0; d < 3; ++d) CHECK(r.evaluation.memory_used[static_cast<std::size_t>(d)] <= m.memory_available(d));
        }
    }
    SUBCASE("too little memory in total") {
        Cluster c({device("a", 1, need / 4), device("b", 1, need / 4)});
        const CostModel m(shape, c, {.context = 1024});
        try {
            (void)solve_placement(m);
            FAIL("expected InsufficientMemoryError");
        } catch (const InsufficientMemoryError& e) {
            CHECK(e.missing_bytes() >= need - 2 * (need / 4));
            CHECK(std::string(e.what()).find("missing") != std::string::npos);
            CHECK(std::string(e.what()).find("a ") != std::string::npos);
        }
    }
    SUBCASE("enough in total, but the blocks cannot be packed") {
        // a cannot hold the head and can hold the embedding but nothing next
        // to it; b holds all but (about) the head. Together: exactly `need`.
        const auto head = probe.block_memory(probe.n_blocks() - 1);
        Cluster c({device("a", 1, head - 1), device("b", 1, need - head + 1)});
        const CostModel m(shape, c, {.context = 1024});
        try {
            (void)solve_placement(m);
            FAIL("expected InsufficientMemoryError");
        } catch (const InsufficientMemoryError& e) {
            CHECK(e.missing_bytes() == test::brute_force(m, Objective::Latency).least_overflow);
            // The closest plan puts the head on a, one byte over.
            CHECK(e.missing_bytes() == 1);
            CHECK(e.shortfall()[0] == 1);
            CHECK(std::string(e.what()).find("lacks a 1 bytes") != std::string::npos);
        }
    }
}

TEST_CASE("placement: symmetry breaking among identical devices keeps the optimum") {
    // N identical copies (the `tandem plan --local N` case): the compact
    // formulation orders them; the flow formulation, which does not, must agree.
    const auto shape = small_llama(6);
    const CostModel probe(shape, Cluster({device("x", 1, 1)}), {.context = 1024});
    const auto need = probe.total_memory_needed();
    for (const int n : {3, 4}) {
        std::vector<DeviceProfile> devs;
        for (int i = 0; i < n; ++i) devs.push_back(device("copy" + std::to_string(i), 1, need * 6 / 10));
        for (const auto o : {Objective::Latency, Objective::Throughput}) {
            CAPTURE(n);
            const std::string objective = objective_name(o);
            CAPTURE(objective);
            const CostModel m(shape, Cluster(devs, Link::from_ms_mbps(0.05, 10000)), {.context = 1024, .in_flight = n});
            auto opt = quiet(o);
            const auto compact = solve_placement(m, opt);
            opt.formulation = milp::Formulation::Flow;
            const auto flow = solve_placement(m, opt);
            CHECK(compact.optimal);
            CHECK(flow.optimal);
            CHECK(close(compact.value(), flow.value()));
            if (o == Objective::Throughput) {
                // Fast links and n in flight: every copy works.
                CHECK(compact.placement.stages.size() == static_cast<std::size_t>(n));
                CHECK(compact.value() <= m.evaluate(even_split(m)).value(o) * (1 + 1e-9));
            } else {
                CHECK(compact.placement.stages.size() == 2);  // the fewest that hold the model
            }
        }
    }
}

TEST_CASE("placement: the solver is never slower than the best single device that holds the model") {
    for (std::uint64_t seed = 9000; seed < 9040; ++seed) {
        CAPTURE(seed);
        test::InstanceOptions io;
        io.memory_slack = 3;  // most devices hold the whole model
        const auto m = random_instance(seed, io);
        for (const auto o : {Objective::Latency, Objective::Throughput}) {
            const auto single = single_best_device(m, o);
            if (!single) continue;
            const auto r = solve_placement(m, quiet(o));
            CHECK(r.value() <= m.evaluate(*single).value(o) * (1 + 1e-9));
        }
    }
}

TEST_CASE("placement: explanations run on random instances without error") {
    for (std::uint64_t seed = 11000; seed < 11030; ++seed) {
        CAPTURE(seed);
        const auto m = random_instance(seed);
        SolverOptions opt;
        try {
            const auto r = solve_placement(m, opt);
            CHECK(r.explanation.size() >= 3);
            CHECK(r.explanation.front().rfind("plan: coordinator -> ", 0) == 0);
            for (int d = 0; d < m.n_devices(); ++d)
                if (!r.placement.uses(d)) CHECK(mentions(r, "left out " + m.cluster().device(d).name));
        } catch (const InsufficientMemoryError&) {
        }
    }
}

TEST_CASE("placement: a GLPK internal error is caught, not an abort, and GLPK works afterwards") {
    // An invalid parameter makes GLPK call its error routine, which would
    // print and abort(); the guard jumps back and frees GLPK's environment.
    glp_prob* p = glp_create_prob();
    glp_add_cols(p, 1);
    glp_set_col_kind(p, 1, GLP_BV);
    glp_iocp bad;
    glp_init_iocp(&bad);
    bad.msg_lev = 12345;
    int code = 0;
    {
        milp::detail::QuietGlpk quiet;
        CHECK_FALSE(milp::detail::guarded(p, &bad, code));
    }
    // p died with the environment; a fresh solve still works.
    const auto m = random_instance(1001);
    const auto ref = brute_force(m, Objective::Latency);
    REQUIRE(ref.best);
    CHECK(close(solve_placement(m, quiet(Objective::Latency)).value(), ref.best_value));
}
