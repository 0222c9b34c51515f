// The four concepts, checked from both sides with archetypes, and the
// pipeline's routing of extra tensors straight from producer to consumer.
#include <doctest/doctest.h>

#include <tandem/device/cpu_device.hpp>
#include <tandem/runtime/inprocess_pipeline.hpp>
#include <tandem/scheduler/fifo_scheduler.hpp>
#include <tandem/segment/model_segment.hpp>

using namespace tandem;

namespace {

// ---- archetypes that model each concept, and near misses that do not ----

// A toy 3-block "model" (dim 4, vocab 8). Block 0 embeds tokens and makes an
// extra tensor "bias" that only block 2 needs; block 1 adds one; block 2 turns
// hidden + bias into one-hot logits. Next token = (tok + 1 + 2 * pos) mod 8.
class ToySegment {
public:
    explicit ToySegment(BlockRange r) : r_(r) {}
    BlockRange blocks() const { return r_; }
    void forward(Batch& b, ThreadPool&) {
        const auto n = b.size();
        for (auto blk = r_.begin; blk < r_.end; ++blk) {
            if (blk == 0) {
                b.hidden = Activations::Zero(n, 4);
                b.extras["bias"] = Activations::Zero(n, 1);
                for (std::int64_t t = 0; t < n; ++t) {
                    b.hidden(t, 0) = static_cast<float>(b.tokens[static_cast<std::size_t>(t)]);
                    b.hidden(t, 1) = static_cast<float>(b.positions[static_cast<std::size_t>(t)]);
                    b.extras["bias"](t, 0) = 2.0f * static_cast<float>(b.positions[static_cast<std::size_t>(t)]);
                }
            } else if (blk == 1) {
                b.hidden.col(2).array() += 1.0f;
                seen_extras_ += b.extras.size();
            } else {
                REQUIRE(b.extras.count("bias") == 1);
                const auto rows = b.logit_rows();
                b.logits = Activations::Zero(static_cast<Eigen::Index>(rows.size()), 8);
                for (std::size_t i = 0; i < rows.size(); ++i) {
                    const auto t = rows[i];
                    const int next = static_cast<int>(b.hidden(t, 0) + b.hidden(t, 2) + b.extras["bias"](t, 0)) % 8;
                    b.logits(static_cast<Eigen::Index>(i), next) = 10.0f;
                }
            }
        }
        for (auto s : b.seq_ids) seqs_.insert(s);
    }
    void release(SeqId s) { seqs_.erase(s); }
    std::vector<SeqId> sequences() const { return {seqs_.begin(), seqs_.end()}; }
    std::pair<std::int64_t, std::int64_t> kv_layers() const { return {0, 0}; }
    LayerKv export_kv(SeqId, std::int64_t) const { return {}; }
    void import_kv(SeqId, std::int64_t, const LayerKv&) {}
    void set_blocks(BlockRange r) { r_ = r; }
    std::uint64_t weight_bytes() const { return 0; }
    std::uint64_t kv_bytes() const { return 0; }
    std::vector<std::string> produces() const { return r_.contains(0) ? std::vector<std::string>{"bias"} : std::vector<std::string>{}; }
    std::vector<std::string> consumes() const { return r_.contains(2) ? std::vector<std::string>{"bias"} : std::vector<std::string>{}; }

    std::size_t seen_extras_ = 0;  // extras that reached block 1 (must stay 0)

private:
    BlockRange r_;
    std::set<SeqId> seqs_;
};
static_assert(Segment<ToySegment>);

struct SegmentWithoutKv {  // cannot move its cache with its blocks
    BlockRange blocks() const { return {}; }
    void forward(Batch&, ThreadPool&) {}
    void release(SeqId) {}
    std::vector<SeqId> sequences() const { return {}; }
    void set_blocks(BlockRange) {}
    std::uint64_t weight_bytes() const { return 0; }
    std::uint64_t kv_bytes() const { return 0; }
    std::vector<std::string> produces() const { return {}; }
    std::vector<std::string> consumes() const { return {}; }
};
static_assert(!Segment<SegmentWithoutKv>);

struct DeviceWithoutBudget {
    std::string name() const { return "x"; }
    ThreadPool& pool();
    unsigned threads() const { return 1; }
    double speed() const { return 1; }
    template <typename J>
    double compute(J&&) { return 0; }
};
static_assert(!Device<DeviceWithoutBudget>);

struct SendOnlyTransport {
    DeviceId self() const { return 0; }
    asio::awaitable<void> send(DeviceId, Message) { co_return; }
    void close() {}
};
static_assert(!Transport<SendOnlyTransport>);

struct SchedulerWithoutPick {
    std::size_t max_in_flight() const { return 1; }
    bool admit(std::size_t, std::size_t) { return true; }
};
static_assert(!Scheduler<SchedulerWithoutPick>);

// The concrete implementations model their concepts.
static_assert(Segment<ModelSegment>);
static_assert(Device<CpuDevice>);
static_assert(Transport<ChannelTransport>);
static_assert(Scheduler<FifoScheduler>);

}  // namespace

TEST_CASE("pipeline: an extra tensor goes straight from its producer to its consumer" * doctest::timeout(60)) {
    using P = InProcessPipeline<ToySegment, CpuDevice, FifoScheduler>;
    std::vector<std::unique_ptr<ToySegment>> segs;
    std::vector<std::unique_ptr<CpuDevice>> devs;
    Plan plan;
    for (std::int64_t i = 0; i < 3; ++i) {
        segs.push_back(std::make_unique<ToySegment>(BlockRange{i, i + 1}));
        devs.push_back(std::make_unique<CpuDevice>(CpuDeviceOptions{.threads = 1}));
        plan.stages.push_back({static_cast<DeviceId>(i + 1), {i, i + 1}});
    }
    auto* middle = segs[1].get();
    P p(std::move(segs), std::move(devs), plan, FifoScheduler(2), 4, 3);
    p.submit({.prompt = {3}, .max_tokens = 6});
    p.submit({.prompt = {5, 1}, .max_tokens = 6});
    const auto res = p.run();
    REQUIRE(res.size() == 2);

    auto expect = [](std::vector<std::int32_t> prompt, int n) {
        std::vector<std::int32_t> out;
        std::int32_t tok = prompt.back(), pos = static_cast<std::int32_t>(prompt.size()) - 1;
        for (int i = 0; i < n; ++i) {
            tok = (tok + 1 + 2 * pos) % 8;
            out.push_back(tok);
            ++pos;
        }
        return out;
    };
    CHECK(res[0].tokens == expect({3}, 6));
    CHECK(res[1].tokens == expect({5, 1}, 6));

    // 12 steps: each sends hidden 1->2, 2->3, logits 3->0, and "bias" 1->3 directly.
    const auto stats = p.hub().stats();
    CHECK(stats.at({1, 3}).messages == 12);
    CHECK(stats.at({1, 2}).messages == 12);
    CHECK(stats.at({2, 3}).messages == 12);
    CHECK(middle->seen_extras_ == 0);  // the device in between never saw the bias
    // Bytes 1->2 are hidden states and positions only: (n, 4) floats + n ints per step.
    // Prompt tokens: 1 + 2 at prefill, then 10 single-token steps.
    const std::uint64_t tokens = 1 + 2 + 10;
    CHECK(stats.at({1, 2}).bytes == tokens * (4 * 4 + 4));
}

TEST_CASE("scheduler: FIFO picks by arrival and batches within its limits") {
    FifoScheduler s(3, 2, 10);
    CHECK(s.max_in_flight() == 3);
    CHECK(s.admit(2, 1));
    CHECK_FALSE(s.admit(3, 1));
    CHECK_FALSE(s.admit(0, 0));
    std::vector<WorkItem> ready = {{7, 1, 1, 5}, {8, 0, 9, 2}, {9, 3, 1, 3}};
    CHECK(s.pick(ready) == std::vector<std::size_t>{1, 2});  // oldest first; 9 + 1 tokens fit in 10
    FifoScheduler one(1, 1);
    CHECK(one.pick(ready) == std::vector<std::size_t>{1});
    FifoScheduler tight(3, 2, 9);
    CHECK(tight.pick(ready) == std::vector<std::size_t>{1});  // 9 + 1 > 9
    FifoScheduler wide(4, 3, 100);
    CHECK(wide.pick(ready) == std::vector<std::size_t>{1, 2, 0});
    CHECK_THROWS_AS(FifoScheduler(0), ConfigError);
}

TEST_CASE("device: the CPU device refuses memory above its budget") {
    CpuDevice d({.name = "small", .threads = 1, .memory_budget = 1000});
    d.reserve(600);
    CHECK(d.memory_used() == 600);
    CHECK_THROWS_AS(d.reserve(500), MemoryLimitError);
    d.unreserve(600);
    d.reserve(1000);
    int ran = 0;
    const double s = d.compute([&](ThreadPool& pool) { pool.run([&](unsigned, unsigned) { ++ran; }); });
    CHECK(ran == 1);
    CHECK(s >= 0.0);
}
