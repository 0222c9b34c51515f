// The pipeline's trace: one track per device with compute, send and idle
// spans, written as Chrome trace-event JSON.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include <tandem/device/cpu_device.hpp>
#include <tandem/runtime/inprocess_pipeline.hpp>
#include <tandem/scheduler/fifo_scheduler.hpp>
#include <tandem/segment/model_segment.hpp>

#include "support/paths.hpp"

using namespace tandem;

TEST_CASE("trace: a 3-device run records every device's compute and send spans" * doctest::timeout(60)) {
    const auto model = Model::open(test::stories260k());
    const auto& c = model->config();
    TraceRecorder trace;
    std::vector<std::unique_ptr<ModelSegment>> segs;
    std::vector<std::unique_ptr<CpuDevice>> devs;
    const auto plan = Plan::even(c, {1, 2, 3});
    for (const auto& st : plan.stages) {
        segs.push_back(std::make_unique<ModelSegment>(model, st.blocks));
        devs.push_back(std::make_unique<CpuDevice>(CpuDeviceOptions{.name = "d" + std::to_string(st.device), .threads = 1}));
    }
    InProcessPipeline<ModelSegment, CpuDevice, FifoScheduler> p(std::move(segs), std::move(devs), plan, FifoScheduler(2),
                                                                 c.dim, c.n_blocks(), &trace);
    p.submit({.prompt = {1}, .max_tokens = 10});
    p.submit({.prompt = {1, 300}, .max_tokens = 10});
    const auto res = p.run();
    REQUIRE(res.size() == 2);
    for (std::uint32_t d = 1; d <= 3; ++d) {
        CAPTURE(d);
        CHECK(trace.total_us(d, "compute") > 0);
        CHECK(trace.total_us(d, "send") > 0);
        CHECK(p.device_stats(d - 1).steps == 20);
    }
    const auto path = test::scratch_dir("trace") + "/trace.json";
    trace.write(path);
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    const auto json = ss.str();
    CHECK(json.find("\"traceEvents\"") != std::string::npos);
    CHECK(json.find("\"thread_name\"") != std::string::npos);
    CHECK(json.find("device 2 (d2)") != std::string::npos);
    CHECK(json.find("\"name\":\"compute\"") != std::string::npos);
    CHECK(json.find("\"name\":\"idle\"") != std::string::npos);
    // Balanced braces and brackets: the file is well-formed enough for a JSON parser.
    long depth = 0, min_depth = 0;
    bool in_str = false;
    for (std::size_t i = 0; i < json.size(); ++i) {
        const char ch = json[i];
        if (in_str) {
            if (ch == '\\') ++i;
            else if (ch == '"') in_str = false;
            continue;
        }
        if (ch == '"') in_str = true;
        if (ch == '{' || ch == '[') ++depth;
        if (ch == '}' || ch == ']') --depth;
        min_depth = std::min(min_depth, depth);
    }
    CHECK(min_depth == 0);
    CHECK(depth == 0);
}
