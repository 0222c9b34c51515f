// The coroutine pipeline over in-process devices: every split reproduces the
// unsplit model, requests in flight do not interfere, and blocks can move
// between devices mid-generation without changing a single output.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include <tandem/device/cpu_device.hpp>
#include <tandem/model/generator.hpp>
#include <tandem/runtime/inprocess_pipeline.hpp>
#include <tandem/scheduler/fifo_scheduler.hpp>
#include <tandem/segment/model_segment.hpp>

#include "support/paths.hpp"
#include "support/stories.hpp"

using namespace tandem;

namespace {

using Pipeline = InProcessPipeline<ModelSegment, CpuDevice, FifoScheduler>;

std::unique_ptr<Pipeline> make_pipeline(const std::vector<BlockRange>& ranges, FifoScheduler sched = FifoScheduler(1),
                                        unsigned threads = 1, TraceRecorder* trace = nullptr) {
    const auto model = test::stories();
    std::vector<std::unique_ptr<ModelSegment>> segs;
    std::vector<std::unique_ptr<CpuDevice>> devs;
    Plan plan;
    for (std::size_t i = 0; i < ranges.size(); ++i) {
        segs.push_back(std::make_unique<ModelSegment>(model, ranges[i]));
        devs.push_back(std::make_unique<CpuDevice>(CpuDeviceOptions{.name = "cpu" + std::to_string(i + 1), .threads = threads}));
        plan.stages.push_back({static_cast<DeviceId>(i + 1), ranges[i]});
    }
    const auto& c = model->config();
    return std::make_unique<Pipeline>(std::move(segs), std::move(devs), plan, sched, c.dim, c.n_blocks(), trace);
}

// All ways to cut [0, n) into `parts` non-empty contiguous ranges.
void splits(std::int64_t n, std::int64_t parts, std::vector<BlockRange>& cur, std::vector<std::vector<BlockRange>>& out) {
    const std::int64_t begin = cur.empty() ? 0 : cur.back().end;
    if (static_cast<std::int64_t>(cur.size()) == parts - 1) {
        cur.push_back({begin, n});
        out.push_back(cur);
        cur.pop_back();
        return;
    }
    for (std::int64_t e = begin + 1; e <= n - (parts - 1 - static_cast<std::int64_t>(cur.size())); ++e) {
        cur.push_back({begin, e});
        splits(n, parts, cur, out);
        cur.pop_back();
    }
}

struct Reference {
    std::vector<std::int32_t> tokens;
    std::vector<std::vector<float>> logits;
};

// The unsplit engine: one device, no pipeline.
Reference reference(const std::vector<std::int32_t>& prompt, std::int32_t n, SamplerConfig sc = {}) {
    Reference ref;
    const auto m = test::stories();
    const auto& c = m->config();
    ThreadPool pool(1);
    KvStore kv(0, c.n_layers, c.kv_dim(), c.context_length);
    Workspace ws;
    Sampler sampler(sc);
    for (auto t : prompt) sampler.accept(t);
    Batch b = Batch::for_sequence(0, prompt, 0);
    std::int32_t pos = static_cast<std::int32_t>(prompt.size());
    for (std::int32_t i = 0; i < n; ++i) {
        run_blocks(m->arch(), BlockRange::all(c), b, kv, ws, pool);
        ref.logits.emplace_back(b.logits.data(), b.logits.data() + b.logits.cols());
        const auto t = sampler.sample(ref.logits.back());
        ref.tokens.push_back(t);
        b = Batch::for_sequence(0, std::span(&t, 1), pos++);
    }
    return ref;
}

const std::vector<std::int32_t> kBos = {1};

}  // namespace

TEST_CASE("pipeline: every split of stories260K, 1 to 5 segments, equals the unsplit model" * doctest::timeout(600)) {
    const auto& c = test::stories()->config();
    const std::int32_t n_tokens = 24;
    const auto ref = reference(kBos, n_tokens);
    std::size_t tried = 0;
    for (std::int64_t parts = 1; parts <= 5; ++parts) {
        std::vector<std::vector<BlockRange>> all;
        std::vector<BlockRange> cur;
        splits(c.n_blocks(), parts, cur, all);
        for (const auto& ranges : all) {
            auto p = make_pipeline(ranges);
            std::vector<std::vector<float>> logits;
            p->submit({.prompt = kBos, .max_tokens = n_tokens,
                       .on_logits = [&](RequestId, std::span<const float> l) { logits.emplace_back(l.begin(), l.end()); }});
            const auto res = p->run();
            REQUIRE(res.size() == 1);
            CHECK(res[0].error.empty());
            CHECK(res[0].tokens == ref.tokens);
            REQUIRE(logits.size() == ref.logits.size());
            bool same = true;
            for (std::size_t i = 0; i < logits.size(); ++i) same = same && logits[i] == ref.logits[i];
            CHECK_MESSAGE(same, "logits differ for split of " << parts << " parts");
            ++tried;
        }
    }
    // C(11,0) + C(11,1) + C(11,2) + C(11,3) + C(11,4) ways to cut 12 blocks.
    CHECK(tried == 1 + 11 + 55 + 165 + 330);
}

TEST_CASE("pipeline: a 3-way split generates the golden text") {
    std::ifstream in(test::model_path("stories260K.greedy.txt"));
    std::stringstream ss;
    ss << in.rdbuf();
    const auto ref = reference(kBos, 120);
    auto p = make_pipeline({{0, 3}, {3, 8}, {8, 12}});
    p->submit({.prompt = kBos, .max_tokens = 120});
    const auto res = p->run();
    REQUIRE(res.size() == 1);
    CHECK(res[0].tokens == ref.tokens);
}

TEST_CASE("pipeline: K requests in flight on D devices each equal their run alone" * doctest::timeout(300)) {
    const std::vector<std::vector<std::int32_t>> prompts = {
        {1, 403, 407}, {1, 300}, {1, 261, 378, 280, 301}, {1, 312, 292}, {1, 437, 324, 268}, {1, 440}, {1, 500, 12}, {1, 77}};
    std::vector<Reference> refs;
    for (std::size_t i = 0; i < prompts.size(); ++i)
        refs.push_back(reference(prompts[i], 20, {.temperature = 0.9f, .top_k = 40, .seed = 100 + i}));
    for (const std::size_t d : {2u, 3u, 4u}) {
        std::vector<BlockRange> ranges;
        const auto plan = Plan::even(test::stories()->config(), [&] {
            std::vector<DeviceId> ids;
            for (std::size_t i = 0; i < d; ++i) ids.push_back(static_cast<DeviceId>(i + 1));
            return ids;
        }());
        for (const auto& s : plan.stages) ranges.push_back(s.blocks);
        for (const std::size_t k : {std::size_t{1}, d, 2 * d}) {
            for (const std::size_t batch : {std::size_t{1}, std::size_t{4}}) {
                CAPTURE(d);
                CAPTURE(k);
                CAPTURE(batch);
                auto p = make_pipeline(ranges, FifoScheduler(k, batch));
                for (std::size_t i = 0; i < prompts.size(); ++i)
                    p->submit({.prompt = prompts[i], .max_tokens = 20,
                               .sampler = {.temperature = 0.9f, .top_k = 40, .seed = 100 + i}});
                const auto res = p->run();
                REQUIRE(res.size() == prompts.size());
                for (std::size_t i = 0; i < prompts.size(); ++i) {
                    CHECK(res[i].error.empty());
                    // Batching several sequences changes the summation order of
                    // nothing: each token's row is computed alone in every kernel.
                    CHECK(res[i].tokens == refs[i].tokens);
                }
            }
        }
    }
}

TEST_CASE("pipeline: moving blocks between devices mid-generation changes no output" * doctest::timeout(120)) {
    const auto ref = reference(kBos, 60);
    const std::vector<std::vector<std::int32_t>> prompts = {{1}, {1, 403, 407}, {1, 300}};
    std::vector<Reference> refs;
    for (const auto& pr : prompts) refs.push_back(reference(pr, 40));
    auto p = make_pipeline({{0, 5}, {5, 12}}, FifoScheduler(3));
    // After 10 tokens: device 2 gives layers to device 1 (sub-layer cut);
    // after 40: the split moves back the other way, past where it started.
    p->move_blocks({{{1, {0, 8}}, {2, {8, 12}}}}, 10);
    p->move_blocks({{{1, {0, 3}}, {2, {3, 12}}}}, 40);
    for (const auto& pr : prompts) p->submit({.prompt = pr, .max_tokens = 40});
    const auto res = p->run();
    REQUIRE(res.size() == prompts.size());
    for (std::size_t i = 0; i < prompts.size(); ++i) CHECK(res[i].tokens == refs[i].tokens);
    CHECK(p->plan() == Plan{{{1, {0, 3}}, {2, {3, 12}}}});
    CHECK(p->last_migration_us() > 0);
}
