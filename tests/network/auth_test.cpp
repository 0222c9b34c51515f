// Only holders of the cluster key take part: a coordinator with another key,
// or none (plaintext), is refused by a live worker process before any frame
// of the protocol is read, so not one tensor byte moves; the worker logs each
// refusal and goes on serving the right key.
#include <doctest/doctest.h>

#include "network/support.hpp"

using namespace tandem;
using namespace tandem::nettest;

namespace {

std::size_t count(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

// The worker's own statistics, asked for over a right-key link.
wire::Stats worker_stats(NetThread& net, std::uint16_t port, TlsConfig* tls) {
    RawLink link(net, port, tls);
    const auto ack = link.hello(wire::Role::Coordinator, 0);
    REQUIRE(ack.has_value());
    REQUIRE(ack->accepted);
    link.send_frame(wire::FrameType::StatsRequest, wire::ErrorMsg{});
    for (;;) {
        const auto f = link.read_frame();
        REQUIRE(f.has_value());
        if (f->type == wire::FrameType::Stats) return wire::decode<wire::Stats>(f->payload, "worker");
    }
}

}  // namespace

TEST_CASE("network: a coordinator with the wrong key, or none, is refused before any tensor moves" *
          doctest::timeout(120)) {
    const auto dir = fresh_dir("auth");
    const auto key = make_key(dir);
    const auto other = make_key(dir, "other.key");
    WorkerProcess w(dir, "w1", key, FastLinks{}.args());

    // Process level: `tandem run` with another key fails fast, saying why.
    const auto wrong = run_command({cli(), "run", "--devices", w.endpoint().str(), "--key", other, "-n", "8"}, dir, 30s);
    CHECK(wrong.code == 1);
    CHECK(wrong.err.find("TLS handshake refused") != std::string::npos);
    CHECK(wrong.err.find("wrong cluster key") != std::string::npos);
    CHECK(wrong.seconds < 10);
    CHECK(wrong.out.empty());  // not one generated token

    // Plaintext against a TLS worker: refused too, with a hint.
    const auto plain = run_command({cli(), "run", "--devices", w.endpoint().str(), "--insecure", "-n", "8"}, dir, 30s);
    CHECK(plain.code == 1);
    CHECK(plain.err.find("does it need a cluster key") != std::string::npos);
    CHECK(plain.out.empty());

    // The worker logged both refusals and is still up.
    CHECK(w.wait_log("TLS handshake refused"));
    CHECK(count(w.log(), "TLS handshake refused") >= 2);
    CHECK(w.process().running());

    // Transport level: RemotePipeline with the wrong key throws AuthError;
    // plaintext, a NetworkError; a raw plaintext Hello gets no answer.
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    const auto plan = Plan::even(model->config(), device_ids(1));
    TlsConfig wrong_tls(ClusterKey::load(other));
    const auto session = [&](TlsConfig* t) { RemotePipeline p(model, {w.endpoint()}, plan, remote_options(t)); };
    CHECK_THROWS_AS(session(&wrong_tls), AuthError);
    CHECK_THROWS_AS(session(nullptr), NetworkError);
    NetThread net;
    {
        RawLink raw(net, w.port(), nullptr);
        CHECK_FALSE(raw.hello().has_value());
    }
    // A TLS client with the wrong key cannot even finish the handshake.
    CHECK_THROWS(RawLink(net, w.port(), &wrong_tls));

    // Not one tensor byte moved: the worker's own counters and its cache say so.
    TlsConfig tls(ClusterKey::load(key));
    const auto st = worker_stats(net, w.port(), &tls);
    CHECK(st.weight_bytes_received == 0);
    CHECK(st.weight_bytes_cached == 0);
    CHECK(st.steps == 0);
    CHECK(count_files(w.cache_dir()) == 0);
    CHECK(w.log().find("assigned blocks") == std::string::npos);

    // The right key still gets a whole session.
    RemotePipeline p(model, {w.endpoint()}, plan, remote_options(&tls));
    CHECK(p.ready().at(1).bytes_received == tensor_bytes(*Model::open(test::stories260k()), plan.stages[0].blocks));
    const auto full = Model::open(test::stories260k());
    CHECK(remote_tokens(p, {1}, 16) == single_device_tokens(full, {1}, 16));
}

TEST_CASE("network: a TLS coordinator against a plaintext worker is refused" * doctest::timeout(60)) {
    const auto dir = fresh_dir("auth-plain-worker");
    const auto key = make_key(dir);
    WorkerProcess w(dir, "w1", "", FastLinks{}.args());  // --insecure
    const auto r = run_command({cli(), "run", "--devices", w.endpoint().str(), "--key", key, "-n", "8"}, dir, 30s);
    CHECK(r.code == 1);
    CHECK(r.err.find("TLS handshake") != std::string::npos);
    CHECK(r.out.empty());
    // The worker saw a TLS ClientHello where a frame header belongs.
    CHECK(w.wait_log("bad frame magic"));
    CHECK(count_files(w.cache_dir()) == 0);
}
