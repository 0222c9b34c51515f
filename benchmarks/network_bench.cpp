// Network overhead and end-to-end speed on loopback, against in-process
// baselines measured in the same run.
//
// 1. Per hop: a ring of 3 endpoints passes one token's hidden state (1, dim)
//    around, each forwarding it as soon as it arrives; microseconds per token
//    per hop = median round time / 3. TcpTransport (plaintext and TLS 1.3) with
//    F32, F16 and Q8_0 activations, against the in-process ChannelTransport;
//    dim 2048 and 4096 (tinyllama-1.1B and llama-3-8B widths). Bytes per token
//    per hop = the whole frame (16-byte header + payload). Serialization alone
//    (to_wire + encode + decode + from_wire, no socket) is shown too.
// 2. End to end: decode tokens/s with 1..W `tandem worker` processes (TLS, one
//    compute thread each) against the in-process pipeline with as many devices
//    and the single-device engine (one thread), same model, one request (K=1)
//    and W requests in flight (K=W, summed). This machine has few cores: with
//    more processes than cores, the networked numbers measure contention too.
//
//   bench-network-bench [-m MODEL.gguf] [-n TOKENS] [--rounds N] [--runs R] [--max-workers W]
//                       [--dims 2048,4096] [--tandem PATH] [--skip-hop] [--skip-e2e] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>

#include <tandem/device/cpu_device.hpp>
#include <tandem/model/generator.hpp>
#include <tandem/runtime/inprocess_pipeline.hpp>
#include <tandem/runtime/remote_pipeline.hpp>
#include <tandem/scheduler/fifo_scheduler.hpp>
#include <tandem/segment/model_segment.hpp>
#include <tandem/transport/channel_transport.hpp>
#include <tandem/transport/listener.hpp>
#include <tandem/transport/tls.hpp>

#include "../examples/cli/local_workers.hpp"

using namespace tandem;
using clock_type = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

struct Thread {
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    std::thread t{[this] { io.run(); }};
    ~Thread() {
        guard.reset();
        io.stop();
        t.join();
    }
};

Message token_message(std::int64_t dim) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.5f);
    Message m;
    m.kind = MessageKind::Activations;
    m.request = 1;
    m.first_block = 1;
    m.positions = {0};
    Tensor h{"hidden", {1, dim}, {}};
    for (std::int64_t i = 0; i < dim; ++i) h.data.push_back(nd(rng));
    m.tensors.push_back(std::move(h));
    return m;
}

// Endpoints 1 and 2 forward whatever arrives to the next endpoint of the ring.
template <typename T>
asio::awaitable<void> relay(T& t, DeviceId next) {
    for (;;) {
        Message m;
        try {
            m = co_await t.receive();
        } catch (const std::exception&) {
            co_return;
        }
        try {
            co_await t.send(next, std::move(m));
        } catch (const std::exception&) {
            co_return;
        }
    }
}

// Endpoint 0 sends a token round the ring `warmup + rounds` times; returns the timed rounds in seconds.
template <typename T>
asio::awaitable<std::vector<double>> drive(T& t, Message m, int warmup, int rounds) {
    std::vector<double> times;
    for (int i = 0; i < warmup + rounds; ++i) {
        m.step = static_cast<std::uint64_t>(i);
        const auto t0 = clock_type::now();
        co_await t.send(1, m);
        auto back = co_await t.receive();
        if (i >= warmup) times.push_back(since(t0));
        (void)back;
    }
    co_return times;
}

double ring_channel(std::int64_t dim, int warmup, int rounds) {
    Thread th[3];
    auto hub = std::make_shared<ChannelHub>(std::vector<asio::any_io_executor>{
        th[0].io.get_executor(), th[1].io.get_executor(), th[2].io.get_executor()});
    ChannelTransport t0(hub, 0), t1(hub, 1), t2(hub, 2);
    asio::co_spawn(th[1].io, relay(t1, 2), asio::detached);
    asio::co_spawn(th[2].io, relay(t2, 0), asio::detached);
    auto times = asio::co_spawn(th[0].io, drive(t0, token_message(dim), warmup, rounds), asio::use_future).get();
    hub->close_all();
    return median(times) / 3.0;
}

double ring_tcp(std::int64_t dim, wire::Encoding e, TlsConfig* tls, int warmup, int rounds) {
    Thread th[3];
    std::vector<std::unique_ptr<TcpTransport>> t;
    std::vector<std::unique_ptr<Listener>> l;
    for (DeviceId i = 0; i < 3; ++i) {
        t.push_back(std::make_unique<TcpTransport>(th[i].io.get_executor(), i,
                                                   TcpTransportOptions{.tls = tls, .encoding = e, .name = "bench"}));
        l.push_back(std::make_unique<Listener>(*t.back(), "127.0.0.1", 0));
        l.back()->start([](const wire::Hello&, std::shared_ptr<Connection>) -> asio::awaitable<std::string> { co_return ""; });
    }
    for (DeviceId i = 0; i < 3; ++i) t[i]->set_address((i + 1) % 3, "127.0.0.1", l[(i + 1) % 3]->port());
    asio::co_spawn(th[1].io, relay(*t[1], 2), asio::detached);
    asio::co_spawn(th[2].io, relay(*t[2], 0), asio::detached);
    auto times = asio::co_spawn(th[0].io, drive(*t[0], token_message(dim), warmup, rounds), asio::use_future).get();
    for (auto& x : l) x->stop();
    for (auto& x : t) x->close();
    return median(times) / 3.0;
}

// to_wire + encode + decode + from_wire of one token's message, in seconds.
double serialization(std::int64_t dim, wire::Encoding e, int rounds) {
    const auto m = token_message(dim);
    std::vector<double> times;
    for (int i = 0; i < rounds; ++i) {
        const auto t0 = clock_type::now();
        const auto bytes = wire::encode(wire::to_wire(m, e));
        const auto back = wire::from_wire(wire::decode<wire::DataMsg>(bytes, "bench"), "bench");
        times.push_back(since(t0));
        if (back.tensors.size() != 1) std::abort();
    }
    return median(times);
}

std::uint64_t frame_bytes(std::int64_t dim, wire::Encoding e) {
    return wire::kHeaderSize + wire::encode(wire::to_wire(token_message(dim), e)).size();
}

// ---- end to end ----

struct E2e {
    int devices = 0;
    double single = 0, inproc_k1 = 0, net_k1 = 0, inproc_kd = 0, net_kd = 0;  // tokens/s
};

double tokens_per_s(std::size_t tokens, double secs) { return secs > 0 ? static_cast<double>(tokens) / secs : 0; }

double single_device(const std::shared_ptr<const Model>& model, std::int32_t n, int runs) {
    ThreadPool pool(1);
    std::vector<double> v;
    for (int r = 0; r < runs; ++r) {
        Generator g(model, pool);
        GenerateOptions opt;
        opt.max_tokens = n;
        const auto t0 = clock_type::now();
        const std::vector<std::int32_t> prompt = {1};
        const auto toks = g.generate(prompt, opt);
        v.push_back(tokens_per_s(toks.size(), since(t0)));
    }
    return median(v);
}

template <typename P>
double pipeline_rate(P& p, std::int32_t n, int k, int runs) {
    std::vector<double> v;
    for (int r = 0; r < runs; ++r) {
        for (int i = 0; i < k; ++i) {
            RequestSpec s;
            s.prompt = {1};
            s.max_tokens = n;
            p.submit(std::move(s));
        }
        const auto t0 = clock_type::now();
        const auto res = p.run();
        const double secs = since(t0);
        std::size_t tokens = 0;
        for (const auto& x : res) {
            if (!x.error.empty()) throw std::runtime_error("request failed: " + x.error);
            tokens += x.tokens.size();
        }
        v.push_back(tokens_per_s(tokens, secs));
    }
    return median(v);
}

double inprocess(const std::shared_ptr<const Model>& model, int d, std::int32_t n, int k, int runs) {
    std::vector<DeviceId> ids;
    for (int i = 0; i < d; ++i) ids.push_back(static_cast<DeviceId>(i + 1));
    const auto plan = Plan::even(model->config(), ids);
    std::vector<std::unique_ptr<ModelSegment>> segs;
    std::vector<std::unique_ptr<CpuDevice>> devs;
    for (const auto& st : plan.stages) {
        segs.push_back(std::make_unique<ModelSegment>(model, st.blocks));
        devs.push_back(std::make_unique<CpuDevice>(CpuDeviceOptions{.name = "d", .threads = 1}));
    }
    InProcessPipeline<ModelSegment, CpuDevice, FifoScheduler> p(std::move(segs), std::move(devs), plan,
                                                                 FifoScheduler(static_cast<std::size_t>(k), 1),
                                                                 model->config().dim, model->config().n_blocks());
    return pipeline_rate(p, n, k, runs);
}

double networked(const std::string& tandem, const std::string& model_path, const std::string& scratch, int d,
                 std::int32_t n, int k, int runs) {
    const auto key = scratch + "/bench.key";
    ClusterKey::generate().save(key);
    TlsConfig tls(ClusterKey::load(key));
    cli::LocalWorkers workers(d, {"--threads", "1", "--key", key, "--cache-dir", scratch + "/cache"}, tandem);
    const auto coord = Model::from_file(GgufFile::open(model_path), BlockRange{0, 0});
    std::vector<DeviceId> ids;
    for (int i = 0; i < d; ++i) ids.push_back(static_cast<DeviceId>(i + 1));
    RemoteOptions ro;
    ro.tls = &tls;
    ro.max_in_flight = static_cast<std::size_t>(k);
    RemotePipeline p(coord, workers.endpoints(), Plan::even(coord->config(), ids), ro);
    return pipeline_rate(p, n, k, runs);
}

std::vector<std::int64_t> parse_dims(const std::string& s) {
    std::vector<std::int64_t> out;
    std::stringstream ss(s);
    std::string part;
    while (std::getline(ss, part, ',')) out.push_back(std::stoll(part));
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::string model_path = std::string(TANDEM_MODELS_DIR) + "/stories260K.gguf", json_path, dims_arg = "2048,4096";
    std::string tandem;
    {
        char buf[4096];
        const auto n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
        if (n > 0) {
            std::string self(buf, static_cast<std::size_t>(n));
            tandem = self.substr(0, self.rfind('/')) + "/tandem";
        }
    }
    std::int32_t n_tokens = 128;
    int rounds = 300, runs = 3, max_workers = 4;
    bool hop = true, e2e = true;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
            return argv[++i];
        };
        if (a == "-m" || a == "--model") model_path = value();
        else if (a == "-n") n_tokens = std::stoi(value());
        else if (a == "--rounds") rounds = std::stoi(value());
        else if (a == "--runs") runs = std::stoi(value());
        else if (a == "--max-workers") max_workers = std::stoi(value());
        else if (a == "--dims") dims_arg = value();
        else if (a == "--tandem") tandem = value();
        else if (a == "--json") json_path = value();
        else if (a == "--skip-hop") hop = false;
        else if (a == "--skip-e2e") e2e = false;
        else {
            std::fprintf(stderr, "unknown option %s\n", a.c_str());
            return 2;
        }
    }
    std::ostringstream json;
    json << "{\"hop\":[";
    std::printf("machine: %u hardware threads\n\n", std::thread::hardware_concurrency());

    if (hop) {
        std::printf("1. per hop on loopback: one token's hidden state round a ring of 3 endpoints (median of %d rounds)\n",
                    rounds);
        std::printf("%6s %-5s %-9s %12s %12s %10s %14s %12s\n", "dim", "enc", "link", "us/tok/hop", "channel us",
                    "ratio", "bytes/tok/hop", "serialize us");
        TlsConfig tls(ClusterKey::generate());
        bool first = true;
        for (const auto dim : parse_dims(dims_arg)) {
            const double base = ring_channel(dim, 30, rounds);
            for (const auto e : {wire::Encoding::F32, wire::Encoding::F16, wire::Encoding::Q8_0}) {
                const double ser = serialization(dim, e, rounds);
                const auto bytes = frame_bytes(dim, e);
                for (const bool use_tls : {false, true}) {
                    const double us = ring_tcp(dim, e, use_tls ? &tls : nullptr, 30, rounds);
                    std::printf("%6lld %-5s %-9s %12.1f %12.1f %9.1fx %14llu %12.1f\n", static_cast<long long>(dim),
                                wire::encoding_name(e), use_tls ? "tcp+tls" : "tcp", us * 1e6, base * 1e6, us / base,
                                static_cast<unsigned long long>(bytes), ser * 1e6);
                    std::fflush(stdout);
                    json << (first ? "" : ",") << "{\"dim\":" << dim << ",\"encoding\":\"" << wire::encoding_name(e)
                         << "\",\"tls\":" << (use_tls ? "true" : "false") << ",\"us_per_token_hop\":" << us * 1e6
                         << ",\"channel_us_per_token_hop\":" << base * 1e6 << ",\"bytes_per_token_hop\":" << bytes
                         << ",\"serialize_us\":" << ser * 1e6 << "}";
                    first = false;
                }
            }
        }
        std::printf("\n");
    }
    json << "],\"end_to_end\":[";

    if (e2e) {
        const auto model = Model::open(model_path);
        const auto& c = model->config();
        std::printf("2. end to end on %s (dim %lld, %lld layers): decode tokens/s, %d tokens per request, median of %d\n",
                    model_path.substr(model_path.rfind('/') + 1).c_str(), static_cast<long long>(c.dim),
                    static_cast<long long>(c.n_layers), n_tokens, runs);
        const auto scratch = "/tmp/tandem-network-bench-" + std::to_string(::getpid());
        std::system(("mkdir -p " + scratch).c_str());
        const double single = single_device(model, n_tokens, runs);
        std::printf("single-device engine (1 thread): %.1f tokens/s\n", single);
        std::printf("%8s %14s %14s %8s %8s %16s %16s %8s\n", "devices", "in-process K=1", "network K=1", "net/inp",
                    "net/1dev", "in-process K=D", "network K=D", "net/inp");
        bool first = true;
        for (int d = 1; d <= max_workers && d <= c.n_layers; ++d) {
            E2e r;
            r.devices = d;
            r.single = single;
            r.inproc_k1 = inprocess(model, d, n_tokens, 1, runs);
            r.net_k1 = networked(tandem, model_path, scratch, d, n_tokens, 1, runs);
            r.inproc_kd = inprocess(model, d, n_tokens, d, runs);
            r.net_kd = networked(tandem, model_path, scratch, d, n_tokens, d, runs);
            std::printf("%8d %14.1f %14.1f %7.2fx %7.2fx %16.1f %16.1f %7.2fx\n", d, r.inproc_k1, r.net_k1,
                        r.net_k1 / r.inproc_k1, r.net_k1 / single, r.inproc_kd, r.net_kd, r.net_kd / r.inproc_kd);
            std::fflush(stdout);
            json << (first ? "" : ",") << "{\"devices\":" << d << ",\"single_device\":" << single
                 << ",\"inprocess_k1\":" << r.inproc_k1 << ",\"network_k1\":" << r.net_k1
                 << ",\"inprocess_kd\":" << r.inproc_kd << ",\"network_kd\":" << r.net_kd << "}";
            first = false;
        }
        std::system(("rm -rf " + scratch).c_str());
    }
    json << "]}";
    if (!json_path.empty()) std::ofstream(json_path) << json.str() << "\n";
    return 0;
}
