// The profiler runs the real model's blocks; its cache round-trips and is
// refreshed on request; the bridge to placement describes the real model.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>

#include <tandem/device/cpu_device.hpp>
#include <tandem/runtime/placement_plan.hpp>
#include <tandem/runtime/profiler.hpp>

#include "support/paths.hpp"
#include "support/stories.hpp"

using namespace tandem;

namespace {

// A CpuDevice that counts compute() calls: tells measuring from cache hits,
// and can pretend to be `slowdown` times slower (as an emulated phone would).
// With `fixed_seconds` > 0 it still runs each job but reports that many
// seconds (times the slowdown) instead of the clock: a device whose timing is
// known exactly, so that what the profiler does with it can be checked exactly.
class CountingDevice {
public:
    explicit CountingDevice(std::string name, double slowdown = 1, double fixed_seconds = 0)
        : cpu_({.name = std::move(name), .threads = 1}), slowdown_(slowdown), fixed_seconds_(fixed_seconds) {}
    std::string name() const { return cpu_.name(); }
    ThreadPool& pool() noexcept { return cpu_.pool(); }
    unsigned threads() const noexcept { return cpu_.threads(); }
    std::uint64_t memory_budget() const noexcept { return 64ull << 20; }
    std::uint64_t memory_used() const noexcept { return 0; }
    void reserve(std::uint64_t) {}
    void unreserve(std::uint64_t) noexcept {}
    double speed() const noexcept { return 1 / slowdown_; }
    template <typename Job>
    double compute(Job&& job) {
        ++calls;
        const double measured = cpu_.compute(std::forward<Job>(job));
        return (fixed_seconds_ > 0 ? fixed_seconds_ : measured) * slowdown_;
    }
    int calls = 0;

private:
    CpuDevice cpu_;
    double slowdown_;
    double fixed_seconds_;
};
static_assert(Device<CountingDevice>);

ProfilerOptions quick() {
    ProfilerOptions o;
    o.reps = 3;
    o.min_run_seconds = 2e-4;
    return o;
}

}  // namespace

TEST_CASE("profiler: stories260K on this machine gives positive, finite times for every kind") {
    CpuDevice cpu({.name = "this-cpu", .threads = 1});
    const auto p = profile_device(*test::stories(), cpu, quick());
    CHECK(p.name == "this-cpu");
    CHECK(p.threads == 1);
    CHECK(p.memory_bytes == physical_memory_bytes());  // no budget: the machine's RAM
    CHECK(p.memory_bytes > 0);
    CHECK(p.model == model_identity(*test::stories()));
    for (std::size_t k = 0; k < kCostKinds; ++k) {
        CAPTURE(k);
        CHECK(std::isfinite(p.decode.s[k]));
        CHECK(std::isfinite(p.prefill.s[k]));
        CHECK(p.decode.s[k] > 0);
        CHECK(p.prefill.s[k] > 0);
        CHECK(p.decode.s[k] < 0.1);  // a 260K-parameter model: far below 100 ms a block
    }
    MESSAGE("decode us/token: embedding " << p.decode[CostKind::Embedding] * 1e6 << ", attention "
                                          << p.decode[CostKind::Attention] * 1e6 << ", ffn "
                                          << p.decode[CostKind::Ffn] * 1e6 << ", head " << p.decode[CostKind::Head] * 1e6);
    MESSAGE("prefill us/token: attention " << p.prefill[CostKind::Attention] * 1e6 << ", ffn "
                                           << p.prefill[CostKind::Ffn] * 1e6);
}

TEST_CASE("profiler: a device that computes 8x slower is measured 8x slower") {
    // The profiler goes through Device::compute, so an emulated device's own
    // timing is what it measures. Both devices report a fixed time per call
    // (the slow one 8x that), so the ratio is exact: comparing two clock
    // measurements taken at different moments failed under ctest -j2 in CI
    // (3.85 for 8x, when the fast run was the one disturbed).
    ProfilerOptions o = quick();
    o.min_run_seconds = 0;  // one pass per run, so each run is one compute() call
    CountingDevice fast("fast", 1, 1e-3), slow("slow", 8, 1e-3);
    const auto pf = profile_device(*test::stories(), fast, o);
    const auto ps = profile_device(*test::stories(), slow, o);
    CHECK(slow.calls > 0);
    CHECK(slow.calls == fast.calls);
    for (std::size_t k = 0; k < kCostKinds; ++k) {
        CAPTURE(k);
        CHECK(pf.decode.s[k] > 0);
        CHECK(ps.decode.s[k] == doctest::Approx(8 * pf.decode.s[k]).epsilon(1e-9));
        CHECK(ps.prefill.s[k] == doctest::Approx(8 * pf.prefill.s[k]).epsilon(1e-9));
    }
    CHECK(ps.memory_bytes == 64ull << 20);  // the device's own budget
}

TEST_CASE("profiler: the cache round-trips, is keyed by model, device and threads, and refreshes on request") {
    const auto dir = test::scratch_dir("profiler");
    const auto path = dir + "/profiles.json";
    std::remove(path.c_str());
    CountingDevice dev("phone-like");
    bool measured = false;
    const auto first = cached_profile(*test::stories(), dev, path, false, quick(), &measured);
    CHECK(measured);
    const int calls = dev.calls;
    CHECK(calls > 0);
    // Second call: from the file, no block is run.
    const auto second = cached_profile(*test::stories(), dev, path, false, quick(), &measured);
    CHECK_FALSE(measured);
    CHECK(dev.calls == calls);
    CHECK(second.name == first.name);
    CHECK(second.memory_bytes == first.memory_bytes);
    CHECK(second.threads == first.threads);
    CHECK(second.model == first.model);
    for (std::size_t k = 0; k < kCostKinds; ++k) {
        CHECK(second.decode.s[k] == doctest::Approx(first.decode.s[k]).epsilon(1e-12));
        CHECK(second.prefill.s[k] == doctest::Approx(first.prefill.s[k]).epsilon(1e-12));
    }
    // Refresh: measured again and stored.
    (void)cached_profile(*test::stories(), dev, path, true, quick(), &measured);
    CHECK(measured);
    CHECK(dev.calls > calls);
    // Another device name is another entry.
    CountingDevice other("other");
    (void)cached_profile(*test::stories(), other, path, false, quick(), &measured);
    CHECK(measured);
    const ProfileCache cache(path);
    CHECK(cache.size() == 2);
    CHECK(cache.find(ProfileCache::key(model_identity(*test::stories()), "other", 1)).has_value());
    CHECK_FALSE(cache.find(ProfileCache::key(model_identity(*test::stories()), "other", 2)).has_value());
}

TEST_CASE("profiler: a malformed cache file gives a typed error, not a crash") {
    const auto dir = test::scratch_dir("profiler-bad");
    const auto path = dir + "/profiles.json";
    auto write = [&](const std::string& text) {
        std::ofstream out(path, std::ios::trunc);
        out << text;
    };
    write("{\"profiles\": [");
    CHECK_THROWS_AS(ProfileCache{path}, FormatError);
    write(R"({"profiles": [{"key": "k", "device": {"name": "x", "memory_bytes": 1}}]})");
    CHECK_THROWS_AS(ProfileCache{path}, FormatError);  // neither speed nor times
    write(R"({"profiles": {}})");
    CHECK_THROWS_AS(ProfileCache{path}, FormatError);
    write(R"({"profiles": [{"key": "k", "device": {"name": "x", "memory_bytes": 1,
              "decode_ms": {"embedding": 0.1, "attention": 1, "ffn": 2, "head": 3}}}]})");
    const ProfileCache ok(path);
    REQUIRE(ok.find("k").has_value());
    CHECK(ok.find("k")->decode[CostKind::Ffn] == doctest::Approx(2e-3));
}

TEST_CASE("profiler: the model shape matches the GGUF file, and plans convert both ways") {
    const auto& m = *test::stories();
    const auto s = model_shape(m);
    const auto& c = m.config();
    CHECK(s.n_blocks() == 2 * c.n_layers + 2);
    CHECK(s.dim == c.dim);
    CHECK(s.n_vocab == c.n_vocab);
    CHECK(s.n_layers() == c.n_layers);
    // Independent count: every tensor of the file once, plus the embedding
    // table again when the head is tied to it (the head's device holds it too).
    std::uint64_t file_bytes = 0;
    for (const auto& t : m.file().tensors()) file_bytes += t.n_bytes();
    if (c.tied_output) file_bytes += m.file().find_tensor("token_embd.weight")->n_bytes();
    CHECK(s.total_weight_bytes() == file_bytes);
    CHECK(s.blocks[1].kv_bytes_per_position == static_cast<std::uint64_t>(c.kv_dim()) * 2 * 4);
    CHECK(s.blocks[2].kv_bytes_per_position == 0);
    CHECK(model_identity(m) == model_identity(*Model::open(test::stories260k())));

    const Placement p{{{1, 0, 5}, {0, 5, s.n_blocks()}}};
    const std::vector<DeviceId> ids{7, 3};
    const auto plan = to_plan(p, ids);
    CHECK(plan == Plan{{{3, {0, 5}}, {7, {5, s.n_blocks()}}}});
    CHECK_NOTHROW(plan.validate(s.n_blocks()));
    CHECK(placement_of(plan, ids) == p);
    CHECK_THROWS_AS(to_plan(p, {7}), ConfigError);
    CHECK_THROWS_AS(placement_of(plan, {1, 2}), ConfigError);
}

TEST_CASE("placement plan: sub_cluster keeps the chosen devices, in order, with their links") {
    std::vector<DeviceProfile> devs;
    for (const char* n : {"a", "b", "c"}) {
        DeviceProfile p;
        p.name = n;
        p.memory_bytes = 1000 + devs.size();
        devs.push_back(p);
    }
    Cluster c(devs);
    // A distinct link per ordered pair of nodes (coordinator = -1).
    for (int f = -1; f < 3; ++f)
        for (int t = -1; t < 3; ++t)
            if (f != t) c.set_link(f, t, Link{(f + 2) * 0.01 + (t + 2) * 0.001, 1e6 * (f + 3)});
    const auto sub = sub_cluster(c, {3, 1});  // devices c, a
    REQUIRE(sub.size() == 2);
    CHECK(sub.device(0) == c.device(2));
    CHECK(sub.device(1) == c.device(0));
    const int coord = Cluster::kCoordinator;
    CHECK(sub.link(coord, 0) == c.link(coord, 2));
    CHECK(sub.link(0, coord) == c.link(2, coord));
    CHECK(sub.link(coord, 1) == c.link(coord, 0));
    CHECK(sub.link(0, 1) == c.link(2, 0));
    CHECK(sub.link(1, 0) == c.link(0, 2));
    CHECK(sub.link(1, coord) == c.link(0, coord));
    CHECK_THROWS_AS(sub_cluster(c, {4}), ConfigError);
    CHECK_THROWS_AS(sub_cluster(c, {0}), ConfigError);

    // A device that joined later (id 5): its own profile, and links as slow as
    // the slowest measured one (longest latency, lowest bandwidth; from the
    // formula above: latency (2 + 2) * 0.01 + (1 + 2) * 0.001, bandwidth 2e6).
    DeviceProfile joined;
    joined.name = "a";  // the same name as device 1: made unique
    joined.memory_bytes = 77;
    const auto with = with_joined(c, {1, 5}, {{5, joined}});
    REQUIRE(with.size() == 2);
    CHECK(with.device(0) == c.device(0));
    CHECK(with.device(1).memory_bytes == 77);
    CHECK(with.device(1).name == "a#5");
    const Link slowest{0.043, 2e6};
    CHECK(with.link(0, 1).latency_s == doctest::Approx(slowest.latency_s));
    CHECK(with.link(0, 1).bytes_per_s == slowest.bytes_per_s);
    CHECK(with.link(1, 0).bytes_per_s == slowest.bytes_per_s);
    CHECK(with.link(coord, 1).latency_s == doctest::Approx(slowest.latency_s));
    CHECK(with.link(1, coord).bytes_per_s == slowest.bytes_per_s);
    CHECK(with.link(coord, 0) == c.link(coord, 0));
    CHECK_THROWS_AS(with_joined(c, {1, 6}, {{5, joined}}), ConfigError);  // 6: neither measured nor joined
}
