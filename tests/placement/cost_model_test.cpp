// The cost model on a two-device example worked out by hand, and the
// baselines' splits.
#include <doctest/doctest.h>

#include <tandem/placement/baselines.hpp>
#include <tandem/placement/cost_model.hpp>

using namespace tandem;

namespace {

// E A F A F H: 2 layers. Weights 100/200/300/200/300/400 bytes, attention KV
// 10 bytes per position; dim 100 (404 bytes per token between stages), vocab
// 1000 (4000 bytes of logits).
ModelShape toy() {
    ModelShape s;
    s.id = "toy";
    s.dim = 100;
    s.n_vocab = 1000;
    s.context_length = 50;
    s.blocks = {{CostKind::Embedding, 100, 0}, {CostKind::Attention, 200, 10}, {CostKind::Ffn, 300, 0},
                {CostKind::Attention, 200, 10}, {CostKind::Ffn, 300, 0},      {CostKind::Head, 400, 0}};
    return s;
}

DeviceProfile dev(const std::string& name, double scale, std::uint64_t memory) {
    DeviceProfile p;
    p.name = name;
    p.memory_bytes = memory;
    // decode: 1, 2, 3, 4 ms per token (x scale); prefill a quarter of that.
    for (std::size_t k = 0; k < kCostKinds; ++k) {
        p.decode.s[k] = scale * static_cast<double>(k + 1) * 1e-3;
        p.prefill.s[k] = p.decode.s[k] / 4;
    }
    return p;
}

Cluster toy_cluster() {
    Cluster c({dev("a", 1, 1600), dev("b", 2, 1800)}, Link::from_ms_mbps(100, 1));
    c.set_link(Cluster::kCoordinator, 0, Link::from_ms_mbps(1, 8));  // 1 ms, 10^6 bytes/s
    c.set_link(0, 1, Link::from_ms_mbps(2, 8));
    c.set_link(1, Cluster::kCoordinator, Link::from_ms_mbps(3, 8));
    return c;
}

const Placement kSplit{{{0, 0, 3}, {1, 3, 6}}};  // a: E A F, b: A F H

}  // namespace

TEST_CASE("cost model: decode latency, stage times, hops and memory of a split, by hand") {
    const CostModel m(toy(), toy_cluster(), {.context = 50, .sequences = 2, .in_flight = 2});
    const auto e = m.evaluate(kSplit);
    REQUIRE(e.stages.size() == 2);
    CHECK(e.stages[0].compute_s == doctest::Approx(6e-3));         // 1 + 2 + 3 ms
    CHECK(e.stages[1].compute_s == doctest::Approx(18e-3));        // 2 x (2 + 3 + 4) ms
    CHECK(e.receive_s == doctest::Approx(1.004e-3));               // 1 ms + 4 bytes / 10^6 B/s
    CHECK(e.stages[0].send_s == doctest::Approx(2.404e-3));        // 2 ms + 404 bytes
    CHECK(e.stages[1].send_s == doctest::Approx(7e-3));            // 3 ms + 4000 bytes
    CHECK(e.latency_s == doctest::Approx(34.408e-3));
    CHECK(e.cycle_s == doctest::Approx(18e-3));
    // K = 2: latency / 2 = 17.2 ms < 18 ms: stage 1 is the bottleneck.
    CHECK(e.throughput_s == doctest::Approx(18e-3));
    CHECK(e.bottleneck == Bottleneck::Stage);
    CHECK(e.bottleneck_index == 1);
    // Memory: attention = 200 + 10 x 50 positions x 2 sequences = 1200.
    CHECK(e.memory_used[0] == 100 + 1200 + 300);
    CHECK(e.memory_used[1] == 1200 + 300 + 400);
    CHECK(e.memory_available[1] == 1800);
    CHECK_FALSE(e.fits);  // b needs 1900 of 1800
    CHECK(m.total_memory_needed() == 100 + 1200 + 300 + 1200 + 300 + 400);
    CHECK(m.total_kv_bytes() == 2000);
    CHECK(e.value(Objective::Latency) == e.latency_s);
    CHECK(e.value(Objective::Throughput) == e.throughput_s);
}

TEST_CASE("cost model: one request in flight is latency-bound; a slow link can be the bottleneck") {
    const CostModel one(toy(), toy_cluster(), {.context = 50, .in_flight = 1});
    const auto e = one.evaluate(kSplit);
    CHECK(e.throughput_s == doctest::Approx(e.latency_s));
    CHECK(e.bottleneck == Bottleneck::Latency);
    auto c = toy_cluster();
    c.set_link(1, Cluster::kCoordinator, Link::from_ms_mbps(3, 0.08));  // 4000 bytes at 10^4 B/s: 400 ms
    const CostModel slow(toy(), c, {.context = 50, .in_flight = 100});
    const auto s = slow.evaluate(kSplit);
    CHECK(s.bottleneck == Bottleneck::Link);
    CHECK(s.bottleneck_index == 1);  // the hop out of stage 1
    CHECK(s.throughput_s == doctest::Approx(403e-3));
}

TEST_CASE("cost model: a prefill step uses prefill times and pays latencies once per step") {
    const CostModel m(toy(), toy_cluster(), {.context = 50, .step_tokens = 4});
    const auto e = m.evaluate(kSplit);
    CHECK(e.stages[0].compute_s == doctest::Approx(6e-3 / 4));
    CHECK(e.receive_s == doctest::Approx((1e-3 + 16 / 1e6) / 4));
    CHECK(e.stages[0].send_s == doctest::Approx((2e-3 + 4 * 404 / 1e6) / 4));
    CHECK(e.stages[1].send_s == doctest::Approx((3e-3 + 4000 / 1e6) / 4));  // one row of logits per step
}

TEST_CASE("cost model: invalid placements and options are refused") {
    const CostModel m(toy(), toy_cluster(), {.context = 50});
    CHECK_THROWS_AS(m.evaluate(Placement{}), ConfigError);
    CHECK_THROWS_AS(m.evaluate(Placement{{{0, 0, 3}, {1, 4, 6}}}), ConfigError);  // gap
    CHECK_THROWS_AS(m.evaluate(Placement{{{0, 0, 3}, {0, 3, 6}}}), ConfigError);  // device twice
    CHECK_THROWS_AS(m.evaluate(Placement{{{0, 0, 5}}}), ConfigError);             // short
    CHECK_THROWS_AS(m.evaluate(Placement{{{2, 0, 6}}}), ConfigError);             // no device 2
    CHECK_THROWS_AS(m.evaluate(Placement{{{0, 0, 0}, {1, 0, 6}}}), ConfigError);  // empty stage
    CHECK_THROWS_AS(CostModel(toy(), toy_cluster(), {.context = 50, .sequences = 0}), ConfigError);
    CHECK_THROWS_AS(CostModel(toy(), Cluster{}, {}), ConfigError);
    CHECK(kSplit.describe(toy_cluster()) == "a[0:3] -> b[3:6]");
}

TEST_CASE("baselines: even, memory-proportional and single-best splits") {
    const auto shape = ModelShape::llama("ten", 10, 64, 4, 4, 128, 100, 64, 4.0);
    REQUIRE(shape.n_blocks() == 22);
    std::vector<DeviceProfile> devs{dev("a", 1, 1000), dev("b", 0.5, 2000), dev("c", 3, 1000)};
    const CostModel m(shape, Cluster(devs), {.context = 64});
    // 10 layers over 3: 4, 3, 3; the embedding with the first, the head with the last.
    CHECK(even_split(m) == Placement{{{0, 0, 9}, {1, 9, 15}, {2, 15, 22}}});
    // Memory 1 : 2 : 1 -> 2.5, 5, 2.5 layers -> 3, 5, 2 (largest remainder, ties to the earlier).
    CHECK(memory_proportional_split(m) == Placement{{{0, 0, 7}, {1, 7, 17}, {2, 17, 22}}});
    // No device holds the model (need ~ 200 kB): no single-device baseline.
    CHECK_FALSE(single_best_device(m, Objective::Latency));
    for (auto& d : devs) d.memory_bytes = 1 << 30;
    const CostModel roomy(shape, Cluster(devs), {.context = 64});
    const auto best = single_best_device(roomy, Objective::Latency);
    REQUIRE(best);
    CHECK(*best == Placement{{{1, 0, 22}}});  // b is twice as fast
    // More devices than layers: the extra ones get nothing.
    const auto two = ModelShape::llama("two", 2, 64, 4, 4, 128, 100, 64, 4.0);
    const CostModel crowded(two, Cluster(devs), {.context = 64});
    CHECK(even_split(crowded) == Placement{{{0, 0, 3}, {1, 3, 6}}});
    const auto all = baselines(roomy, Objective::Throughput);
    REQUIRE(all.size() == 3);
    for (const auto& b : all) CHECK(b.evaluation.has_value());
}
