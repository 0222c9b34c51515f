// A coordinator and `tandem worker` processes over TLS on loopback reproduce
// the unsplit model exactly: stories260K's golden greedy text (from `tandem
// run` and from RemotePipeline in this process), and a synthetic Q8_0 model's
// tokens from the single-device engine. Activation encodings cost the bytes
// per token per hop their formats say.
#include <doctest/doctest.h>

#include <map>

#include <tandem/tokenizer/tokenizer.hpp>

#include "network/support.hpp"

using namespace tandem;
using namespace tandem::nettest;

namespace {

std::vector<std::unique_ptr<WorkerProcess>> start_workers(const std::string& dir, const std::string& key, int n,
                                                          const FastLinks& fl = {}) {
    std::vector<std::unique_ptr<WorkerProcess>> ws;
    for (int i = 0; i < n; ++i)
        ws.push_back(std::make_unique<WorkerProcess>(dir, "w" + std::to_string(i + 1), key, fl.args()));
    return ws;
}

std::string join_endpoints(const std::vector<std::unique_ptr<WorkerProcess>>& ws) {
    std::string s;
    for (const auto& w : ws) s += (s.empty() ? "" : ",") + w->endpoint().str();
    return s;
}

std::string trim_newlines(std::string s) {
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

bool cli_has_command(const std::string& name, const std::string& dir) {
    const auto r = run_command({cli(), "--help"}, dir, 10s);
    return (r.out + r.err).find("  " + name + " ") != std::string::npos;
}

}  // namespace

TEST_CASE("network: 3 worker processes over TLS reproduce stories260K's golden greedy text" * doctest::timeout(120)) {
    const auto dir = fresh_dir("golden");
    const auto key = make_key(dir);
    auto ws = start_workers(dir, key, 3);
    const auto golden = golden_text();

    // The CLI coordinator in its own process.
    const auto r = run_command({cli(), "run", "--devices", join_endpoints(ws), "--key", key, "-n", "120", "--quiet",
                                "--heartbeat", "250"},
                               dir);
    INFO("tandem run stderr: " << r.err);
    REQUIRE(r.code == 0);
    CHECK(trim_newlines(r.out) == golden);
    for (const auto& w : ws) CHECK(w->wait_log("session ended"));

    // RemotePipeline in this process against the same workers: the tokens of
    // the single-device engine, which decode to the golden text.
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    const auto full = Model::open(test::stories260k());
    const auto tokenizer = Tokenizer::from_gguf(full->file());
    const std::vector<std::int32_t> bos = {tokenizer.bos()};
    const auto want = single_device_tokens(full, bos, 120);
    TlsConfig tls(ClusterKey::load(key));
    const auto plan = Plan::even(model->config(), device_ids(3));
    auto p = connect_when_free(model, endpoints(ws), plan, remote_options(&tls));
    // The weights came once (the CLI run above streamed them): none this time.
    for (const auto& [id, ready] : p->ready()) {
        CHECK(ready.bytes_received == 0);
        CHECK(ready.bytes_from_cache == ready.weight_bytes);
    }
    const auto got = remote_tokens(*p, bos, 120);
    CHECK(got == want);
    auto text = tokenizer.decode(got);
    if (!text.empty() && text[0] == ' ') text.erase(0, 1);  // the space after BOS (llama2.c drops it)
    CHECK(text == golden);
}

TEST_CASE("network: activations cost 4, 2 and 34/32 bytes per value per hop in F32, F16 and Q8_0" * doctest::timeout(120)) {
    const auto dir = fresh_dir("encodings");
    const auto key = make_key(dir);
    auto ws = start_workers(dir, key, 3);
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    const auto full = Model::open(test::stories260k());
    const auto dim = model->config().dim, vocab = model->config().n_vocab;
    TlsConfig tls(ClusterKey::load(key));
    const auto plan = Plan::even(model->config(), device_ids(3));
    const std::vector<std::int32_t> bos = {1};
    const auto exact = single_device_tokens(full, bos, 40);

    std::map<DeviceId, std::uint64_t> seen_bytes, seen_tokens;
    struct Case {
        wire::Encoding e;
        double bytes_per_value;
    };
    for (const auto c : {Case{wire::Encoding::F32, 4.0}, Case{wire::Encoding::F16, 2.0},
                         Case{wire::Encoding::Q8_0, 34.0 / 32.0}}) {
        CAPTURE(wire::encoding_name(c.e));
        auto ro = remote_options(&tls);
        ro.encoding = c.e;
        auto p = connect_when_free(model, endpoints(ws), plan, ro);
        const auto got = remote_tokens(*p, bos, 40);
        CHECK(got.size() == 40);
        if (c.e == wire::Encoding::F32) CHECK(got == exact);  // only F32 is exact
        // Workers 1 and 2 send hidden states (dim values per token); worker 3
        // sends logits, which stay F32 whatever the link's encoding. A worker's
        // counters span its lifetime: this session's share is the difference.
        for (DeviceId id = 1; id <= 3; ++id) {
            const auto st = p->stats(id);
            const auto bytes = st.activation_bytes_out - seen_bytes[id];
            const auto tokens = st.activation_tokens_out - seen_tokens[id];
            seen_bytes[id] = st.activation_bytes_out;
            seen_tokens[id] = st.activation_tokens_out;
            REQUIRE(tokens > 0);
            const double per_token = static_cast<double>(bytes) / static_cast<double>(tokens);
            const double want = id < 3 ? c.bytes_per_value * static_cast<double>(dim) : 4.0 * static_cast<double>(vocab);
            CHECK(per_token == doctest::Approx(want));
        }
    }
}

TEST_CASE("network: a synthetic Q8_0 model split over 3 worker processes matches the single-device engine" *
          doctest::timeout(300)) {
    const auto dir = fresh_dir("synth");
    if (!cli_has_command("synth", dir)) {
        MESSAGE("skipped: `tandem --help` lists no synth command (the synth helper's work is not in this build)");
        return;
    }
    const auto path = dir + "/synth-q8_0.gguf";
    const auto s = run_command({cli(), "synth", "--dim", "256", "--ffn", "512", "--layers", "6", "--heads", "8",
                                "--kv-heads", "4", "--ctx", "256", "--tokenizer", "stories260k", "--models-dir",
                                test::models_dir(), "--type", "q8_0", "-t", "2", "-o", path},
                               dir, 120s);
    INFO("tandem synth: " << s.err);
    REQUIRE(s.code == 0);
    const auto full = Model::open(path);
    bool quantized = false;
    for (const auto& t : full->file().tensors()) quantized = quantized || t.type == GgmlType::Q8_0;
    REQUIRE(quantized);

    const auto key = make_key(dir);
    auto ws = start_workers(dir, key, 3);
    const auto model = Model::from_file(GgufFile::open(path), BlockRange{0, 0});
    TlsConfig tls(ClusterKey::load(key));
    const std::vector<std::int32_t> prompt = {1, 400, 35, 270};
    const auto want = single_device_tokens(full, prompt, 24);
    auto p = connect_when_free(model, endpoints(ws), Plan::even(model->config(), device_ids(3)), remote_options(&tls));
    std::uint64_t received = 0;
    for (const auto& [id, ready] : p->ready()) received += ready.bytes_received;
    CHECK(received > 0);  // fresh caches: the weights were streamed
    CHECK(remote_tokens(*p, prompt, 24) == want);
}
