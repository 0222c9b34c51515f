// The control conversation driven by hand against a live worker process
// (Hello, Assign, NeedTensors, TensorChunk, Ready, Start, Data, Stop), from an
// independent client written here with the transport only. The worker runs
// the back blocks of stories260K; this test computes the front blocks itself
// and checks the logits that come back against the unsplit model, exactly.
// Steps the segment cannot run (a hidden state of the wrong width, a negative
// position, a block nobody starts at, ...) come back as an Error for their
// request and the worker goes on; a frame of NaN closes the link.
#include <doctest/doctest.h>

#include <map>

#include <asio/experimental/concurrent_channel.hpp>

#include <tandem/segment/model_segment.hpp>

#include "network/support.hpp"

using namespace tandem;
using namespace tandem::nettest;

namespace {

// A coordinator written against the protocol, not with RemotePipeline.
class HandCoordinator {
    template <typename F>
    static auto wait(F fut) {
        if (fut.wait_for(20s) == std::future_status::timeout) throw std::runtime_error("hand coordinator: timed out");
        return fut.get();
    }

public:
    HandCoordinator(NetThread& net, TlsConfig* tls, const FastLinks& fl)
        : net_(net), control_(net.io.get_executor(), 256),
          tcp_(net.io.get_executor(), 0,
               TcpTransportOptions{.link = fl.link(), .tls = tls, .heartbeat = std::chrono::milliseconds(fl.heartbeat_ms),
                                   .name = "hand-coordinator",
                                   .on_control = [this](DeviceId, const Frame& f) -> asio::awaitable<void> {
                                       asio::error_code ec;
                                       co_await control_.async_send(asio::error_code{}, f,
                                                                    asio::redirect_error(asio::use_awaitable, ec));
                                   }}) {}
    ~HandCoordinator() {
        tcp_.close();
        net_.stop();  // its coroutines refer to tcp_
    }

    TcpTransport& tcp() { return tcp_; }

    void dial(const WorkerEndpoint& w, DeviceId as) {
        wait(asio::co_spawn(net_.io, [&]() -> asio::awaitable<void> {
            auto [c, ack] = co_await tcp_.dial(w.host, w.port, wire::Role::Coordinator);
            tcp_.attach(as, c);
        }, asio::use_future));
    }

    template <typename T>
    void send_control(DeviceId to, wire::FrameType type, const T& body) {
        wait(asio::co_spawn(net_.io, tcp_.send_control(to, type, body), asio::use_future));
    }
    void send_raw(DeviceId to, wire::FrameType type, std::vector<std::byte> payload) {
        wait(asio::co_spawn(net_.io, tcp_.send_frame(to, type, std::move(payload)), asio::use_future));
    }
    void send(DeviceId to, Message m) { wait(asio::co_spawn(net_.io, tcp_.send(to, std::move(m)), asio::use_future)); }

    Frame next_control(wire::FrameType want) {
        for (;;) {
            auto f = wait(asio::co_spawn(net_.io, control_.async_receive(asio::use_awaitable), asio::use_future));
            if (f.type == want) return f;
            if (f.type == wire::FrameType::Error)
                FAIL("worker error: " << wire::decode<wire::ErrorMsg>(f.payload, "worker").reason);
        }
    }
    std::optional<Frame> try_control(std::chrono::milliseconds timeout) {
        auto fut = asio::co_spawn(net_.io, control_.async_receive(asio::use_awaitable), asio::use_future);
        if (fut.wait_for(timeout) == std::future_status::timeout) {
            control_.cancel();
            try {
                fut.get();
            } catch (...) {
            }
            return std::nullopt;
        }
        return fut.get();
    }
    Message receive() { return wait(asio::co_spawn(net_.io, tcp_.receive(), asio::use_future)); }

private:
    NetThread& net_;
    asio::experimental::concurrent_channel<void(asio::error_code, Frame)> control_;
    TcpTransport tcp_;
};

Message hidden_step(RequestId r, std::uint64_t step, std::int64_t first_block, std::int32_t pos, const Activations& h) {
    Message m;
    m.kind = MessageKind::Activations;
    m.request = r;
    m.step = step;
    m.first_block = first_block;
    m.positions = {pos};
    Tensor t{"hidden", {h.rows(), h.cols()}, {}};
    t.data.assign(h.data(), h.data() + h.size());
    m.tensors.push_back(std::move(t));
    return m;
}

}  // namespace

TEST_CASE("network: a hand-driven session: exact logits, per-request errors for bad steps, NaN closes the link" *
          doctest::timeout(120)) {
    const auto dir = fresh_dir("session");
    const auto key = make_key(dir);
    FastLinks fl;
    WorkerProcess w(dir, "w1", key, fl.args());
    TlsConfig tls(ClusterKey::load(key));
    NetThread net;

    const auto full = Model::open(test::stories260k());
    const auto& cfg = full->config();
    const std::int64_t k = 5;  // the test runs blocks [0, 5); the worker [5, n)
    const BlockRange back{k, cfg.n_blocks()};

    HandCoordinator hc(net, &tls, fl);
    hc.dial(w.endpoint(), 1);

    // Assign: device 1 runs the back blocks; a device 2 that this test plays
    // (never dialed: the worker only sends logits, to the coordinator) runs the front.
    wire::Assign a;
    a.device_id = 1;
    a.block_begin = back.begin;
    a.block_end = back.end;
    a.model_id = model_identity(full->file());
    a.metadata = metadata_image(full->file(), cfg);
    a.tensors = describe_tensors(*full, back);
    a.peers = {{2, "127.0.0.1", 1, 0, k}, {1, w.endpoint().host, w.port(), back.begin, back.end}};
    a.max_in_flight = 8;
    hc.send_control(1, wire::FrameType::Assign, a);

    const auto need = wire::decode<wire::NeedTensors>(hc.next_control(wire::FrameType::NeedTensors).payload, "worker");
    CHECK(need.hashes.size() == a.tensors.size());  // a fresh cache
    std::uint64_t sent = 0;
    for (const auto h : need.hashes) {
        const auto d = std::find_if(a.tensors.begin(), a.tensors.end(), [&](const auto& t) { return t.hash == h; });
        REQUIRE(d != a.tensors.end());
        const auto& t = full->file().tensor(d->name);
        for (std::uint64_t off = 0; off < t.n_bytes(); off += 1000) {  // odd chunk sizes on purpose
            wire::TensorChunk c;
            c.hash = h;
            c.offset = off;
            c.total = t.n_bytes();
            const auto n = std::min<std::uint64_t>(1000, t.n_bytes() - off);
            c.data.assign(reinterpret_cast<const std::uint8_t*>(t.data.data()) + off,
                          reinterpret_cast<const std::uint8_t*>(t.data.data()) + off + n);
            hc.send_control(1, wire::FrameType::TensorChunk, c);
            sent += n;
        }
    }
    const auto ready = wire::decode<wire::Ready>(hc.next_control(wire::FrameType::Ready).payload, "worker");
    CHECK(ready.bytes_received == sent);
    CHECK(ready.bytes_from_cache == 0);
    hc.send_control(1, wire::FrameType::Start, wire::ErrorMsg{});

    // The reference: the unsplit model, step by step; the front blocks for the worker's input.
    ThreadPool pool(1);
    KvStore kv_full(0, cfg.n_layers, cfg.kv_dim(), cfg.context_length);
    Workspace ws_full;
    ModelSegment front(full, {0, k});
    std::int32_t token = 1;
    std::vector<std::int32_t> generated;
    auto run_step = [&](std::int32_t pos) {
        Batch ref = Batch::for_sequence(1, std::span(&token, 1), pos);
        run_blocks(full->arch(), BlockRange::all(cfg), ref, kv_full, ws_full, pool);
        Batch fb = Batch::for_sequence(1, std::span(&token, 1), pos);
        front.forward(fb, pool);
        hc.send(1, hidden_step(1, static_cast<std::uint64_t>(pos), k, pos, fb.hidden));
        const auto m = hc.receive();
        REQUIRE(m.kind == MessageKind::Logits);
        CHECK(m.request == 1);
        const auto* logits = m.find("logits");
        REQUIRE(logits != nullptr);
        REQUIRE(logits->data.size() == static_cast<std::size_t>(cfg.n_vocab));
        const std::vector<float> want(ref.logits.data(), ref.logits.data() + ref.logits.size());
        double diff = 0;
        for (std::size_t i = 0; i < want.size(); ++i) diff = std::max(diff, std::abs(double(logits->data[i]) - want[i]));
        MESSAGE("step at position " << pos << ": max |logit difference| " << diff);
        CHECK(logits->data == want);  // F32 on the wire: bit-exact
        token = static_cast<std::int32_t>(std::max_element(want.begin(), want.end()) - want.begin());
        generated.push_back(token);
    };
    auto expect_error = [&](RequestId r, const std::string& what) {
        const auto m = hc.receive();
        INFO(m.text);
        CHECK(m.kind == MessageKind::Error);
        CHECK(m.request == r);
        CHECK(m.text.find(what) != std::string::npos);
    };

    run_step(0);
    Activations wide = Activations::Constant(1, cfg.dim + 1, 0.5f);
    hc.send(1, hidden_step(2, 0, k, 0, wide));
    expect_error(2, "hidden state");
    run_step(1);

    Activations ok = Activations::Constant(1, cfg.dim, 0.5f);
    hc.send(1, hidden_step(3, 0, k, -1, ok));
    expect_error(3, "position -1");
    hc.send(1, hidden_step(4, 0, 999, 0, ok));
    expect_error(4, "no device starts at block 999");
    hc.send(1, hidden_step(5, 0, k + 1, 0, ok));
    expect_error(5, "no device starts at block " + std::to_string(k + 1));
    auto no_hidden = hidden_step(6, 0, k, 0, ok);
    no_hidden.tensors.clear();
    hc.send(1, no_hidden);
    expect_error(6, "hidden state");
    auto two_positions = hidden_step(7, 0, k, 0, ok);
    two_positions.positions = {0, 1};
    hc.send(1, two_positions);
    expect_error(7, "hidden state");
    hc.send(1, hidden_step(8, 0, k, 100000, ok));
    expect_error(8, "context length");
    run_step(2);  // the worker went on, its cache for request 1 intact
    for (RequestId r = 2; r <= 8; ++r) {
        Message rel;
        rel.kind = MessageKind::Release;
        rel.request = r;
        hc.send(1, rel);
    }
    run_step(3);
    CHECK(generated == single_device_tokens(full, {1}, 4));

    // A frame of NaN: refused with a reason, and the link is closed.
    auto nan_msg = wire::to_wire(hidden_step(9, 0, k, 0, ok), wire::Encoding::F32);
    const float nan = std::nanf("");
    for (std::size_t i = 0; i + 4 <= nan_msg.tensors[0].bytes.size(); i += 4) std::memcpy(&nan_msg.tensors[0].bytes[i], &nan, 4);
    hc.send_raw(1, wire::FrameType::Data, wire::encode(nan_msg));
    const auto why = hc.try_control(5s);
    REQUIRE(why.has_value());
    REQUIRE(why->type == wire::FrameType::Error);
    CHECK(wire::decode<wire::ErrorMsg>(why->payload, "worker").reason.find("holds NaN or infinity") != std::string::npos);
    const auto lost = hc.receive();  // then the link closes: the transport reports the device lost
    CHECK(lost.kind == MessageKind::Error);
    CHECK(lost.request == 0);
    CHECK(w.wait_log("refused a hostile frame"));
    CHECK(w.wait_log("session ended: coordinator lost"));

    // A new coordinator gets a whole session.
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    RemotePipeline p(model, {w.endpoint()}, Plan::even(cfg, device_ids(1)), remote_options(&tls, fl));
    CHECK(remote_tokens(p, {1}, 24) == single_device_tokens(full, {1}, 24));
}

TEST_CASE("network: a coordinator lost mid-transfer leaves nothing behind: the next one streams from scratch" *
          doctest::timeout(120)) {
    const auto dir = fresh_dir("session-cut");
    const auto key = make_key(dir);
    FastLinks fl;
    WorkerProcess w(dir, "w1", key, fl.args());
    TlsConfig tls(ClusterKey::load(key));
    const auto full = Model::open(test::stories260k());
    const auto& cfg = full->config();
    const auto plan = Plan::even(cfg, device_ids(1));
    const auto descs = describe_tensors(*full, plan.stages[0].blocks);
    {
        NetThread net;
        HandCoordinator hc(net, &tls, fl);
        hc.dial(w.endpoint(), 1);
        wire::Assign a;
        a.device_id = 1;
        a.block_begin = 0;
        a.block_end = cfg.n_blocks();
        a.model_id = model_identity(full->file());
        a.metadata = metadata_image(full->file(), cfg);
        a.tensors = descs;
        a.peers = {{1, w.endpoint().host, w.port(), 0, cfg.n_blocks()}};
        hc.send_control(1, wire::FrameType::Assign, a);
        const auto need = wire::decode<wire::NeedTensors>(hc.next_control(wire::FrameType::NeedTensors).payload, "w");
        REQUIRE(!need.hashes.empty());
        // Half of the first tensor asked for, then the coordinator vanishes.
        const auto d = std::find_if(descs.begin(), descs.end(), [&](const auto& t) { return t.hash == need.hashes[0]; });
        const auto& t = full->file().tensor(d->name);
        wire::TensorChunk c;
        c.hash = d->hash;
        c.total = t.n_bytes();
        c.data.assign(reinterpret_cast<const std::uint8_t*>(t.data.data()),
                      reinterpret_cast<const std::uint8_t*>(t.data.data()) + t.n_bytes() / 2);
        hc.send_control(1, wire::FrameType::TensorChunk, c);
        std::this_thread::sleep_for(200ms);
    }
    CHECK(w.wait_log("session ended"));
    // No partial file is left in the cache, and a new coordinator gets everything.
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    RemotePipeline p(model, {w.endpoint()}, plan, remote_options(&tls, fl));
    // Tensors with equal bytes (stories260K's output and embedding matrices) travel once.
    std::map<std::uint64_t, std::uint64_t> unique;
    for (const auto& x : descs) unique[x.hash] = x.bytes;
    std::uint64_t all = 0;
    for (const auto& [h, n] : unique) all += n;
    CHECK(unique.size() < descs.size());
    CHECK(p.ready().at(1).bytes_received == all);
    CHECK(count_files(w.cache_dir()) == unique.size());  // whole tensors only, no ".part" left
    CHECK(remote_tokens(p, {1}, 16) == single_device_tokens(full, {1}, 16));
}
