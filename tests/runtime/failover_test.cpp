// Failover in-process: a device unplugged mid-generation, with several
// requests in flight; the coordinator re-plans over the survivors and replays
// each request's history, and every request ends with the text it would have had.
#include <doctest/doctest.h>

#include <tandem/device/cpu_device.hpp>
#include <tandem/runtime/inprocess_pipeline.hpp>
#include <tandem/scheduler/fifo_scheduler.hpp>
#include <tandem/segment/model_segment.hpp>

#include "support/paths.hpp"

using namespace tandem;

namespace {
using Pipeline = InProcessPipeline<ModelSegment, CpuDevice, FifoScheduler>;

std::unique_ptr<Pipeline> make(const std::shared_ptr<const Model>& model, std::size_t devices, std::size_t k) {
    const auto& c = model->config();
    std::vector<DeviceId> ids;
    for (std::size_t i = 1; i <= devices; ++i) ids.push_back(static_cast<DeviceId>(i));
    const auto plan = Plan::even(c, ids);
    std::vector<std::unique_ptr<ModelSegment>> segs;
    std::vector<std::unique_ptr<CpuDevice>> devs;
    for (const auto& st : plan.stages) {
        segs.push_back(std::make_unique<ModelSegment>(model, st.blocks));
        devs.push_back(std::make_unique<CpuDevice>(CpuDeviceOptions{.threads = 1}));
    }
    return std::make_unique<Pipeline>(std::move(segs), std::move(devs), plan, FifoScheduler(k), c.dim, c.n_blocks());
}

const std::vector<std::vector<std::int32_t>> kPrompts = {{1, 403, 407}, {1, 300}, {1, 261, 378, 280}, {1}};
}  // namespace

TEST_CASE("failover: a device lost mid-generation; every request completes with its undisturbed text" *
          doctest::timeout(120)) {
    const auto model = Model::open(test::stories260k());
    // Undisturbed run.
    auto ref = make(model, 3, 4);
    for (const auto& p : kPrompts) ref->submit({.prompt = p, .max_tokens = 40});
    const auto want = ref->run();

    for (const std::size_t victim : {0u, 1u, 2u}) {
        CAPTURE(victim);
        auto p = make(model, 3, 4);
        p->enable_failover();
        std::size_t seen = 0;
        for (const auto& pr : kPrompts)
            p->submit({.prompt = pr, .max_tokens = 40, .on_token = [&](RequestId, std::int32_t) {
                           if (++seen == 25) p->kill_device(victim);  // mid-generation, 4 requests in flight
                           return true;
                       }});
        const auto got = p->run();
        REQUIRE(got.size() == want.size());
        for (std::size_t i = 0; i < got.size(); ++i) {
            CHECK(got[i].error.empty());
            CHECK(got[i].tokens == want[i].tokens);
        }
        REQUIRE(p->recoveries().size() == 1);
        const auto& ev = p->recoveries()[0];
        CHECK(ev.lost == victim + 1);
        CHECK(ev.requests >= 1);
        CHECK(ev.recovery_seconds > 0);
        // The survivors now run the whole model.
        const auto plan = p->plan();
        CHECK(plan.stages.size() == 2);
        for (const auto& st : plan.stages) CHECK(st.device != victim + 1);
    }
}

TEST_CASE("failover: without a handler a lost device is a typed error" * doctest::timeout(60)) {
    const auto model = Model::open(test::stories260k());
    auto p = make(model, 2, 1);
    std::size_t seen = 0;
    p->submit({.prompt = {1}, .max_tokens = 30, .on_token = [&](RequestId, std::int32_t) {
                   if (++seen == 5) p->kill_device(1);
                   return true;
               }});
    CHECK_THROWS_AS(p->run(), PeerLostError);
}
