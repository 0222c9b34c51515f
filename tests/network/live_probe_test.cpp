// The placement frames against a real `tandem worker` process, spoken by
// hand (RawLink): echoes come back with the nonce and size asked for; probe
// links carry nothing but echoes and are bounded in size, count and number;
// profile and probe requests outside their bounds are refused with a reason
// while the worker stays up; a profile the worker measures holds real times;
// and the coordinator refuses a worker's nonsense times.
#include <doctest/doctest.h>

#include <cmath>

#include <tandem/runtime/live_profile.hpp>

#include "network/support.hpp"

using namespace tandem;
using namespace tandem::nettest;

namespace {

std::string error_reason(const std::optional<Frame>& f) {
    if (!f || f->type != wire::FrameType::Error) return "";
    return wire::decode<wire::ErrorMsg>(f->payload, "worker").reason;
}

// The next frame that is not a heartbeat.
std::optional<Frame> next_frame(RawLink& l, std::chrono::milliseconds timeout = 10s) {
    for (;;) {
        auto f = l.read_frame(timeout);
        if (!f || (f->type != wire::FrameType::Ping && f->type != wire::FrameType::Pong)) return f;
    }
}

std::unique_ptr<RawLink> prober(NetThread& net, std::uint16_t port, TlsConfig* tls) {
    auto l = std::make_unique<RawLink>(net, port, tls);
    const auto ack = l->hello(wire::Role::Prober);
    REQUIRE(ack.has_value());
    REQUIRE(ack->accepted);
    return l;
}

}  // namespace

TEST_CASE("network: probe links echo what is asked, and nothing else" * doctest::timeout(120)) {
    const auto dir = fresh_dir("probe-link");
    const auto key = make_key(dir);
    FastLinks fl;
    WorkerProcess w(dir, "w1", key, fl.args());
    TlsConfig tls(ClusterKey::load(key));
    NetThread net;

    SUBCASE("an echo comes back with its nonce and the size asked for, any number of times") {
        auto l = prober(net, w.port(), &tls);
        for (const std::uint32_t size : {0u, 1u, 1000u, 1u << 20}) {
            CAPTURE(size);
            wire::Echo e;
            e.nonce = 1000 + size;
            e.reply_bytes = size;
            e.padding.assign(77, 1);
            l->send_frame(wire::FrameType::Echo, e);
            const auto f = next_frame(*l);
            REQUIRE(f.has_value());
            REQUIRE(f->type == wire::FrameType::EchoReply);
            const auto r = wire::decode<wire::Echo>(f->payload, "worker");
            CHECK(r.nonce == 1000 + size);
            CHECK(r.padding.size() == size);
        }
    }
    SUBCASE("an echo asking for more than 16 MiB is refused and the probe link closes") {
        auto l = prober(net, w.port(), &tls);
        wire::Echo e;
        e.nonce = 1;
        e.reply_bytes = wire::kMaxEchoBytes + 1;
        l->send_frame(wire::FrameType::Echo, e);
        CHECK(error_reason(next_frame(*l)).find("more than") != std::string::npos);
        CHECK(l->wait_closed(5s).has_value());
    }
    SUBCASE("a probe link carries no control frames") {
        auto l = prober(net, w.port(), &tls);
        l->send_frame(wire::FrameType::ProfileRequest, wire::ProfileRequest{});
        CHECK(error_reason(next_frame(*l)).find("only Echo") != std::string::npos);
        CHECK(l->wait_closed(5s).has_value());
    }
    SUBCASE("at most 8 probe links at once; the next is refused as busy") {
        std::vector<std::unique_ptr<RawLink>> open;
        for (int i = 0; i < 8; ++i) open.push_back(prober(net, w.port(), &tls));
        RawLink ninth(net, w.port(), &tls);
        const auto ack = ninth.hello(wire::Role::Prober);
        REQUIRE(ack.has_value());
        CHECK_FALSE(ack->accepted);
        CHECK(ack->reason.find("busy") != std::string::npos);
        // Closing one makes room again.
        open.back()->send_frame(wire::FrameType::Bye, wire::ErrorMsg{});
        CHECK(open.back()->wait_closed(5s).has_value());
        open.pop_back();
        bool admitted = false;
        for (int i = 0; i < 50 && !admitted; ++i) {
            RawLink again(net, w.port(), &tls);
            const auto a = again.hello(wire::Role::Prober);
            admitted = a && a->accepted;
            if (!admitted) std::this_thread::sleep_for(20ms);
        }
        CHECK(admitted);
    }
    // Whatever happened above, the worker still takes a coordinator.
    RawLink c(net, w.port(), &tls);
    const auto ack = c.hello(wire::Role::Coordinator);
    REQUIRE(ack.has_value());
    CHECK(ack->accepted);
}

TEST_CASE("network: profile and probe requests outside their bounds get a reason; the worker stays up" *
          doctest::timeout(120)) {
    const auto dir = fresh_dir("profile-bounds");
    const auto key = make_key(dir);
    FastLinks fl;
    // 64 KiB: less than stories260K's largest block (its head, 132 KiB of weights).
    WorkerProcess w(dir, "w1", key, [&] {
        auto a = fl.args();
        a.insert(a.end(), {"--memory-limit", "64K", "--slowdown", "2"});
        return a;
    }());
    TlsConfig tls(ClusterKey::load(key));
    NetThread net;
    RawLink c(net, w.port(), &tls);
    REQUIRE(c.hello(wire::Role::Coordinator).value().accepted);

    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    auto measure_request = [&] {
        wire::ProfileRequest r;
        r.measure = true;
        r.model_id = model_identity(model->file());
        r.metadata = metadata_image(model->file(), model->config());
        r.tensors = profile_tensors(*model);
        return r;
    };
    auto expect_error = [&](const std::string& what) {
        const auto f = next_frame(c);
        REQUIRE(f.has_value());
        INFO("wanted an Error about '" << what << "', got " << wire::frame_type_name(f->type) << ": " << error_reason(f));
        CHECK(error_reason(f).find(what) != std::string::npos);
    };

    // Identity: the worker's name, threads and memory, and a fingerprint that
    // differs from a worker with another slowdown.
    c.send_frame(wire::FrameType::ProfileRequest, wire::ProfileRequest{});
    auto f = next_frame(c);
    REQUIRE(f.has_value());
    REQUIRE(f->type == wire::FrameType::Profile);
    const auto ident = wire::decode<wire::Profile>(f->payload, "worker");
    CHECK(ident.name == "w1");
    CHECK(ident.threads == 1);
    CHECK(ident.memory_bytes == 64 * 1024);
    CHECK_FALSE(ident.measured);
    CHECK(ident.decode_s.empty());
    CHECK(ident.fingerprint.size() == 16);

    auto r = measure_request();
    r.reps = 0;
    c.send_frame(wire::FrameType::ProfileRequest, r);
    expect_error("reps");
    r = measure_request();
    r.reps = wire::kMaxProfileReps + 1;
    c.send_frame(wire::FrameType::ProfileRequest, r);
    expect_error("reps");
    r = measure_request();
    r.decode_position = wire::kMaxProfileTokens;
    c.send_frame(wire::FrameType::ProfileRequest, r);
    expect_error("decode position");
    r = measure_request();
    r.min_run_seconds = 5;
    c.send_frame(wire::FrameType::ProfileRequest, r);
    expect_error("min_run_seconds");
    r = measure_request();
    r.decode_position = 4000;  // within the protocol's bound, past stories260K's 2048 positions
    c.send_frame(wire::FrameType::ProfileRequest, r);
    f = next_frame(c);  // NeedTensors first: the context is checked once the model is there
    REQUIRE(f.has_value());
    REQUIRE(f->type == wire::FrameType::NeedTensors);
    {
        const auto need = wire::decode<wire::NeedTensors>(f->payload, "worker");
        CHECK(need.hashes.size() >= 2);
        // Stream them as the coordinator would.
        for (const auto h : need.hashes)
            for (const auto& d : r.tensors)
                if (d.hash == h) {
                    const auto& t = model->file().tensor(d.name);
                    wire::TensorChunk ch;
                    ch.hash = h;
                    ch.total = t.n_bytes();
                    ch.data.assign(reinterpret_cast<const std::uint8_t*>(t.data.data()),
                                   reinterpret_cast<const std::uint8_t*>(t.data.data()) + t.n_bytes());
                    c.send_frame(wire::FrameType::TensorChunk, ch);
                    break;
                }
    }
    expect_error("positions");
    // All tensors are cached now; within bounds, the head does not fit in 64 KiB.
    c.send_frame(wire::FrameType::ProfileRequest, measure_request());
    f = next_frame(c);
    REQUIRE(f.has_value());
    REQUIRE(f->type == wire::FrameType::NeedTensors);
    CHECK(wire::decode<wire::NeedTensors>(f->payload, "worker").hashes.empty());
    expect_error("memory");

    wire::ProbeRequest p;
    p.host = "127.0.0.1";
    p.port = w.port();
    p.rounds = 0;
    c.send_frame(wire::FrameType::ProbeRequest, p);
    expect_error("rounds");
    p.rounds = 3;
    p.max_bytes = 1000;
    c.send_frame(wire::FrameType::ProbeRequest, p);
    expect_error("max_bytes");
    p.max_bytes = 1 << 20;
    p.port = 1;  // nothing listens there
    c.send_frame(wire::FrameType::ProbeRequest, p);
    expect_error("cannot connect");
    // Within bounds: the worker measures its link to itself.
    p.port = w.port();
    c.send_frame(wire::FrameType::ProbeRequest, p);
    f = next_frame(c);
    REQUIRE(f.has_value());
    REQUIRE(f->type == wire::FrameType::ProbeResult);
    const auto pr = wire::decode<wire::ProbeResult>(f->payload, "worker");
    CHECK(pr.rtt_s > 0);
    CHECK(pr.rtt_s < 1);
    CHECK(pr.out_bytes_per_s > 0);
    CHECK(pr.in_bytes_per_s > 0);
    CHECK(pr.probe_bytes >= 64 * 1024);
    CHECK(pr.probe_bytes <= 1u << 20);
    CHECK(w.process().running());
}

TEST_CASE("network: a live profile measures real blocks on the worker's own device" * doctest::timeout(180)) {
    const auto dir = fresh_dir("live-profile");
    const auto key = make_key(dir);
    FastLinks fl;
    auto with = [&](std::vector<std::string> extra) {
        auto a = fl.args();
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    };
    WorkerProcess fast(dir, "fast", key, with({}));
    WorkerProcess slow(dir, "slow", key, with({"--slowdown", "5", "--memory-limit", "300M"}));
    TlsConfig tls(ClusterKey::load(key));
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});

    LiveProfileOptions lo;
    lo.tls = &tls;
    lo.link = fl.link();
    lo.heartbeat = std::chrono::milliseconds(fl.heartbeat_ms);
    lo.cache_path = dir + "/profiles.json";
    lo.profiler.reps = 5;
    lo.profiler.min_run_seconds = 1e-3;
    const auto lp = profile_live(*model, {fast.endpoint(), slow.endpoint()}, lo);
    REQUIRE(lp.cluster.size() == 2);
    const auto& f = lp.cluster.device(0);
    const auto& s = lp.cluster.device(1);
    CHECK(f.name == "fast");
    CHECK(s.name == "slow");
    CHECK(s.memory_bytes == 300ull << 20);
    CHECK(f.threads == 1);
    CHECK(f.model == model_identity(*model));
    for (const auto k : {CostKind::Attention, CostKind::Ffn, CostKind::Head}) {
        CAPTURE(cost_kind_name(k));
        CHECK(f.decode[k] > 0);
        CHECK(f.prefill[k] > 0);
        // The emulated device (5x) sleeps 4x its real compute after each job:
        // the worker's own device is what was timed. (Loose: the two workers
        // are profiled one after the other on two cores shared with whatever
        // else runs; in an ASan CI run with another test beside it, one kind
        // measured 2.2x.)
        CHECK(s.decode[k] > 1.5 * f.decode[k]);
    }
    // Each sampled tensor was streamed once, to each worker's weight cache.
    std::uint64_t tensor_bytes = 0;
    for (const auto& d : profile_tensors(*model)) tensor_bytes += d.bytes;
    CHECK(lp.workers[0].bytes_sent <= tensor_bytes);
    CHECK(lp.workers[0].bytes_sent > tensor_bytes / 2);
    // Every directed link was measured, the coordinator's included.
    for (int a = Cluster::kCoordinator; a < 2; ++a)
        for (int b = Cluster::kCoordinator; b < 2; ++b) {
            if (a == b) continue;
            const auto& l = lp.cluster.link(a, b);
            CHECK(l.latency_s > 0);
            CHECK(l.latency_s < 0.5);
            CHECK(std::isfinite(l.bytes_per_s));
            CHECK(l.bytes_per_s > 1e6);
        }

    // Again: the profiles come from the cache, nothing is streamed; a refresh measures again.
    const auto again = profile_live(*model, {fast.endpoint(), slow.endpoint()}, lo);
    CHECK(again.workers[0].cached);
    CHECK(again.workers[1].cached);
    for (std::size_t k = 0; k < kCostKinds; ++k)  // through the cache's JSON: equal to printing precision
        CHECK(again.cluster.device(1).decode.s[k] == doctest::Approx(s.decode.s[k]).epsilon(1e-9));
    lo.refresh = true;
    const auto fresh = profile_live(*model, {fast.endpoint(), slow.endpoint()}, lo);
    CHECK_FALSE(fresh.workers[0].cached);
    CHECK(fresh.workers[0].bytes_sent == 0);  // the tensors are in its weight cache

    // The coordinator refuses a worker's nonsense times.
    CHECK_THROWS_AS(detail::kind_times_from_wire({1e-3, std::nan(""), 0, 0}, "w"), ProtocolError);
    CHECK_THROWS_AS(detail::kind_times_from_wire({1e-3, -1, 0, 0}, "w"), ProtocolError);
    CHECK_THROWS_AS(detail::kind_times_from_wire({1e-3, 0, 0}, "w"), ProtocolError);
    CHECK(detail::kind_times_from_wire({1e-3, 2e-3, 0, 4e-3}, "w")[CostKind::Ffn] == 0);
}
