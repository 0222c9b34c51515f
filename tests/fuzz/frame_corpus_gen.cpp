// Writes the seed frames of tests/fuzz/corpus/frame/: one valid frame of every
// payload type (activations in each encoding among them), a stream of several
// frames as one connection sends them, and a big-endian-encoded Data frame.
// Usage: frame_corpus_gen OUT_DIR
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <tandem/transport/protocol.hpp>

using namespace tandem;
using namespace tandem::wire;

namespace {

std::vector<std::byte> frame(FrameType t, const std::vector<std::byte>& payload) {
    const auto h = encode_header({kProtocolVersion, t, payload.size()});
    std::vector<std::byte> out(h.begin(), h.end());
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

template <typename T>
std::vector<std::byte> frame_of(FrameType t, const T& body) {
    return frame(t, encode(body));
}

void write(const std::string& dir, const std::string& name, const std::vector<std::byte>& bytes) {
    std::ofstream out(dir + "/" + name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) std::fprintf(stderr, "cannot write %s/%s\n", dir.c_str(), name.c_str());
}

DataMsg data(Encoding e, const std::string& tensor = "hidden") {
    Message m;
    m.kind = MessageKind::Activations;
    m.request = 3;
    m.step = 1;
    m.first_block = 5;
    m.positions = {4};
    Tensor t{tensor, {1, 64}, {}};
    for (int i = 0; i < 64; ++i) t.data.push_back(static_cast<float>(i % 13) * 0.37f - 2.0f);
    m.tensors.push_back(t);
    return to_wire(m, e);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: frame_corpus_gen OUT_DIR\n");
        return 2;
    }
    const std::string dir = argv[1];
    write(dir, "hello", frame_of(FrameType::Hello, Hello{kProtocolVersion, 1, 0x1122334455667788ull, 0, "coordinator"}));
    write(dir, "hello_ack", frame_of(FrameType::HelloAck, HelloAck{true, "", "worker", 1ull << 30, 2}));
    write(dir, "hello_refused", frame_of(FrameType::HelloAck, HelloAck{false, "busy", "worker", 0, 0}));
    Assign a;
    a.device_id = 2;
    a.block_begin = 5;
    a.block_end = 12;
    a.model_id = 42;
    a.metadata = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
    a.tensors.push_back({"blk.2.attn_q.weight", 8, {64, 64}, 0x1234, 4352});
    a.peers.push_back({1, "127.0.0.1", 7001, 0, 5});
    a.peers.push_back({2, "127.0.0.1", 7002, 5, 12});
    write(dir, "assign", frame_of(FrameType::Assign, a));
    write(dir, "need", frame_of(FrameType::NeedTensors, NeedTensors{{0x1234, 0x5678}}));
    write(dir, "chunk", frame_of(FrameType::TensorChunk, TensorChunk{0x1234, 0, 8, {1, 2, 3, 4, 5, 6, 7, 8}}));
    write(dir, "ready", frame_of(FrameType::Ready, Ready{4352, 4352, 0}));
    write(dir, "start", frame_of(FrameType::Start, ErrorMsg{}));
    write(dir, "ping", frame_of(FrameType::Ping, Ping{7, 123456}));
    Stats st;
    st.steps = 10;
    st.busy_seconds = 0.5;
    write(dir, "stats", frame_of(FrameType::Stats, st));
    write(dir, "error", frame_of(FrameType::Error, ErrorMsg{"device 2: no such block"}));
    write(dir, "migrate", frame_of(FrameType::Migrate, Migrate{static_cast<std::uint8_t>(MigrateOp::Export), {2, 3}}));
    KvChunk kv;
    kv.seq = 3;
    kv.layer = 2;
    kv.n_positions = 1;
    kv.kv_dim = 2;
    kv.k.assign(8, 1);
    kv.v.assign(8, 2);
    write(dir, "kv_chunk", frame_of(FrameType::KvChunk, kv));
    write(dir, "trace_request", frame_of(FrameType::TraceRequest, TraceRequest{static_cast<std::uint8_t>(TraceOp::Collect)}));
    Trace tr;
    tr.now_us = 1234.5;
    tr.track_name = "device 2 (w2)";
    tr.spans.push_back({2, "compute", 10.0, 250.5, "\"request\":1,\"step\":0"});
    tr.spans.push_back({2, "send", 260.5, 12.0, ""});
    write(dir, "trace", frame_of(FrameType::Trace, tr));
    write(dir, "data_f32", frame_of(FrameType::Data, data(Encoding::F32)));
    write(dir, "data_f16", frame_of(FrameType::Data, data(Encoding::F16)));
    write(dir, "data_q8_0", frame_of(FrameType::Data, data(Encoding::Q8_0)));
    write(dir, "data_logits", frame_of(FrameType::Data, data(Encoding::F32, "logits")));
    // A connection's opening: Hello, Ping, Data, Bye.
    std::vector<std::byte> stream;
    for (const auto& f : {frame_of(FrameType::Hello, Hello{}), frame_of(FrameType::Ping, Ping{1, 2}),
                          frame_of(FrameType::Data, data(Encoding::Q8_0)), frame_of(FrameType::Bye, ErrorMsg{})})
        stream.insert(stream.end(), f.begin(), f.end());
    write(dir, "stream", stream);
    // The same Data frame from a big-endian host.
    std::ostringstream os(std::ios::binary);
    {
        cereal::PortableBinaryOutputArchive ar(os, cereal::PortableBinaryOutputArchive::Options::BigEndian());
        auto d = data(Encoding::F16);
        ar(d);
    }
    const auto s = os.str();
    std::vector<std::byte> be(s.size());
    std::memcpy(be.data(), s.data(), s.size());
    write(dir, "data_big_endian", frame(FrameType::Data, be));
    std::printf("wrote frame seeds to %s\n", dir.c_str());
    return 0;
}
