// Tracing a pipeline of worker processes: each worker records its own
// compute, send, receive and idle spans; the coordinator collects them and
// places them on its clock. The expectation is causality, which the clocks of
// separate processes do not give for free: a step's activations are received
// by the next device only after the previous device began sending them.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <tuple>

#include <tandem/runtime/trace.hpp>

#include "network/support.hpp"

using namespace tandem;
using namespace tandem::nettest;

namespace {

// The integer after "key": in a span's JSON arguments (-1 when absent).
long long trace_arg(const std::string& args, const std::string& key) {
    const auto at = args.find("\"" + key + "\":");
    if (at == std::string::npos) return -1;
    return std::stoll(args.substr(at + key.size() + 3));
}

}  // namespace

TEST_CASE("network: a traced run has every device's spans, in causal order on one clock" * doctest::timeout(120)) {
    const auto dir = fresh_dir("trace");
    const auto key = make_key(dir);
    std::vector<std::unique_ptr<WorkerProcess>> ws;
    for (int i = 0; i < 3; ++i) ws.push_back(std::make_unique<WorkerProcess>(dir, "w" + std::to_string(i + 1), key));
    TlsConfig tls(ClusterKey::load(key));
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    TraceRecorder trace;
    auto ro = remote_options(&tls);
    ro.trace = &trace;
    ro.max_in_flight = 2;
    const auto before = trace.micros(TraceRecorder::clock::now());
    RemotePipeline p(model, endpoints(ws), Plan::even(model->config(), device_ids(3)), ro);
    p.submit({.prompt = {1}, .max_tokens = 12});
    p.submit({.prompt = {1, 300}, .max_tokens = 12});
    const auto res = p.run();
    const auto after = trace.micros(TraceRecorder::clock::now());
    REQUIRE(res.size() == 2);
    // The texts are the single-device engine's: tracing changes nothing.
    const auto full = Model::open(test::stories260k());
    CHECK(res[0].tokens == single_device_tokens(full, {1}, 12));
    CHECK(res[1].tokens == single_device_tokens(full, {1, 300}, 12));

    const auto tracks = trace.tracks();
    for (DeviceId d = 1; d <= 3; ++d) {
        CAPTURE(d);
        REQUIRE(tracks.count(d) == 1);
        CHECK(tracks.at(d) == "device " + std::to_string(d) + " (w" + std::to_string(d) + ")");
        CHECK(trace.total_us(d, "compute") > 0);
        CHECK(trace.total_us(d, "send") > 0);
        CHECK(trace.total_us(d, "receive") > 0);
    }
    REQUIRE(tracks.count(0) == 1);  // the coordinator's own track: sampling, and sending steps to device 1
    CHECK(trace.total_us(0, "sample") > 0);
    CHECK(trace.total_us(0, "send") > 0);

    const auto spans = trace.take();
    // (device, request, step) -> the span of that name.
    std::map<std::tuple<DeviceId, long long, long long>, TraceRecorder::Span> sends, receives;
    std::size_t computes = 0;
    for (const auto& s : spans) {
        if (s.tid != 0) {
            // Every worker span lies inside the run, once on the coordinator's
            // clock (the offset's error is at most half a loopback round trip).
            CHECK(s.ts_us >= before - 1000);
            CHECK(s.ts_us + s.dur_us <= after + 1000);
        }
        const auto key3 = std::make_tuple(s.tid, trace_arg(s.args, "request"), trace_arg(s.args, "step"));
        if (s.name == "send") sends[key3] = s;
        if (s.name == "receive") receives[key3] = s;
        computes += s.name == "compute";
    }
    CHECK(computes >= 3 * 12);
    // Device d sends each step to d+1 (ring order 0 -> 1 -> 2 -> 3, the
    // coordinator being 0): d+1 starts receiving it no earlier than d started
    // sending it.
    std::size_t pairs = 0;
    for (const auto& [k, send] : sends) {
        const auto [d, request, step] = k;
        if (d == 3) continue;  // device 3 sends logits to the coordinator
        const auto next = receives.find({d + 1, request, step});
        REQUIRE_MESSAGE(next != receives.end(), "device " << d + 1 << " has no receive of request " << request
                                                          << " step " << step);
        CHECK(next->second.ts_us >= send.ts_us - 1000);
        ++pairs;
    }
    CHECK(pairs >= 3 * 2 * 12);  // three hops, two requests, at least 12 steps each
    MESSAGE(spans.size() << " spans; " << pairs << " send/receive pairs in causal order");
}

TEST_CASE("network: tandem run --trace writes one Chrome trace with a track per device" * doctest::timeout(120)) {
    const auto dir = fresh_dir("trace-cli");
    const auto path = dir + "/run.json";
    const auto r = run_command({cli(), "run", "--local-workers", "2", "-n", "16", "--quiet", "--trace", path}, dir, 60s);
    INFO("tandem run stderr: " << r.err);
    REQUIRE(r.code == 0);
    const auto json = read_file(path);
    CHECK(json.find("\"traceEvents\"") != std::string::npos);
    CHECK(json.find("\"name\":\"coordinator\"") != std::string::npos);
    for (const char* track : {"device 1 (", "device 2 ("}) CHECK(json.find(track) != std::string::npos);
    for (const char* span : {"compute", "send", "receive"})
        CHECK(json.find(std::string("\"name\":\"") + span + "\"") != std::string::npos);
}
