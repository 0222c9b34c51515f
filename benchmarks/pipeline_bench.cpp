// Pipeline throughput and overhead, in-process.
//
// 1. Overhead: the pipeline machinery's cost per step per device, measured with
//    segments that do no work (so only coroutines, channels, scheduling and
//    message conversion remain), against a plain function-call chain doing the
//    same hidden-state copies in the same run.
// 2. Throughput: tokens/s summed over all requests, against requests in flight
//    K = 1..2D, for D = 1..4 in-process devices on a real model, with the
//    speedup over one request at a time.
//
//   bench-pipeline-bench [-m MODEL.gguf] [-n TOKENS] [--threads T] [--max-devices D] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <tandem/device/cpu_device.hpp>
#include <tandem/runtime/inprocess_pipeline.hpp>
#include <tandem/scheduler/fifo_scheduler.hpp>
#include <tandem/segment/model_segment.hpp>

using namespace tandem;
using clock_type = std::chrono::steady_clock;

namespace {

// A segment that passes the hidden state on untouched: measures the machinery.
class NullSegment {
public:
    NullSegment(BlockRange r, std::int64_t dim, std::int64_t n_blocks, std::int64_t vocab)
        : r_(r), dim_(dim), n_blocks_(n_blocks), vocab_(vocab) {}
    BlockRange blocks() const { return r_; }
    void forward(Batch& b, ThreadPool&) {
        if (r_.begin == 0) b.hidden = Activations::Zero(b.size(), dim_);
        if (r_.end == n_blocks_) {
            b.logits = Activations::Zero(static_cast<Eigen::Index>(b.logit_rows().size()), vocab_);
            b.logits(0, 1) = 1.0f;
        }
    }
    void release(SeqId) {}
    std::vector<SeqId> sequences() const { return {}; }
    std::pair<std::int64_t, std::int64_t> kv_layers() const { return {0, 0}; }
    LayerKv export_kv(SeqId, std::int64_t) const { return {}; }
    void import_kv(SeqId, std::int64_t, const LayerKv&) {}
    void set_blocks(BlockRange r) { r_ = r; }
    std::uint64_t weight_bytes() const { return 0; }
    std::uint64_t kv_bytes() const { return 0; }
    std::vector<std::string> produces() const { return {}; }
    std::vector<std::string> consumes() const { return {}; }

private:
    BlockRange r_;
    std::int64_t dim_, n_blocks_, vocab_;
};
static_assert(Segment<NullSegment>);

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Microseconds per step per device with do-nothing segments.
double overhead_us(int devices, int steps, std::int64_t dim) {
    const std::int64_t n_blocks = devices;
    std::vector<std::unique_ptr<NullSegment>> segs;
    std::vector<std::unique_ptr<CpuDevice>> devs;
    Plan plan;
    for (int d = 0; d < devices; ++d) {
        segs.push_back(std::make_unique<NullSegment>(BlockRange{d, d + 1}, dim, n_blocks, 32));
        devs.push_back(std::make_unique<CpuDevice>(CpuDeviceOptions{.threads = 1}));
        plan.stages.push_back({static_cast<DeviceId>(d + 1), {d, d + 1}});
    }
    InProcessPipeline<NullSegment, CpuDevice, FifoScheduler> p(std::move(segs), std::move(devs), plan, FifoScheduler(1),
                                                               dim, n_blocks);
    p.submit({.prompt = {1}, .max_tokens = steps});
    const auto t0 = clock_type::now();
    p.run();
    const double us = std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
    return us / steps / devices;
}

// The same copies through a plain call chain: the floor the machinery adds to.
double call_chain_us(int devices, int steps, std::int64_t dim) {
    Activations h = Activations::Zero(1, dim);
    std::vector<float> buf(static_cast<std::size_t>(dim));
    volatile float sink = 0;
    const auto t0 = clock_type::now();
    for (int s = 0; s < steps; ++s)
        for (int d = 0; d < devices; ++d) {
            std::copy(h.data(), h.data() + dim, buf.begin());
            h = Eigen::Map<Activations>(buf.data(), 1, dim);
            sink = sink + h(0, 0);
        }
    return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count() / steps / devices;
}

struct Row {
    int devices, in_flight;
    double tokens_per_s, speedup;
};

}  // namespace

int main(int argc, char** argv) {
    std::string model_path = std::string(TANDEM_MODELS_DIR) + "/stories260K.gguf", json_path;
    int n_tokens = 32, max_devices = 4, reps = 3;
    unsigned threads = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "-m") model_path = v;
        else if (a == "-n") n_tokens = std::stoi(v);
        else if (a == "--threads") threads = static_cast<unsigned>(std::stoi(v));
        else if (a == "--max-devices") max_devices = std::stoi(v);
        else if (a == "--reps") reps = std::stoi(v);
        else if (a == "--json") json_path = v;
    }

    std::printf("== pipeline machinery overhead (no-op segments, hidden width 2048) ==\n");
    std::printf("%-8s %16s %18s %8s\n", "devices", "pipeline us/step", "call chain us/step", "ratio");
    std::vector<std::pair<int, double>> overheads;
    for (int d = 1; d <= 4; ++d) {
        std::vector<double> a, b;
        for (int r = 0; r < 5; ++r) {
            a.push_back(overhead_us(d, 2000, 2048));
            b.push_back(call_chain_us(d, 2000, 2048));
        }
        const double ma = median(a), mb = median(b);
        overheads.push_back({d, ma});
        std::printf("%-8d %16.2f %18.3f %8.1f\n", d, ma, mb, ma / mb);
    }

    const auto model = Model::open(model_path);
    const auto& c = model->config();
    std::printf("\n== throughput: %s, %d tokens per request, %u thread(s) per device, median of %d ==\n",
                model->file().name().c_str(), n_tokens, threads, reps);
    std::printf("%-8s %-10s %12s %22s\n", "devices", "in flight", "tokens/s", "speedup vs 1 in flight");
    std::vector<Row> rows;
    for (int d = 1; d <= std::min<int>(max_devices, static_cast<int>(c.n_layers)); ++d) {
        std::vector<DeviceId> ids;
        for (int i = 1; i <= d; ++i) ids.push_back(static_cast<DeviceId>(i));
        const auto plan = Plan::even(c, ids);
        double base = 0;
        for (int k = 1; k <= 2 * d; ++k) {
            std::vector<double> tps;
            for (int r = 0; r < reps; ++r) {
                std::vector<std::unique_ptr<ModelSegment>> segs;
                std::vector<std::unique_ptr<CpuDevice>> devs;
                for (const auto& st : plan.stages) {
                    segs.push_back(std::make_unique<ModelSegment>(model, st.blocks));
                    devs.push_back(std::make_unique<CpuDevice>(CpuDeviceOptions{.threads = threads}));
                }
                InProcessPipeline<ModelSegment, CpuDevice, FifoScheduler> p(
                    std::move(segs), std::move(devs), plan, FifoScheduler(static_cast<std::size_t>(k)), c.dim, c.n_blocks());
                for (int i = 0; i < k; ++i)
                    p.submit({.prompt = {1, static_cast<std::int32_t>(100 + i)}, .max_tokens = n_tokens});
                const auto t0 = clock_type::now();
                const auto res = p.run();
                const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
                std::size_t tokens = 0;
                for (const auto& x : res) tokens += x.tokens.size();
                tps.push_back(static_cast<double>(tokens) / secs);
            }
            const double m = median(tps);
            if (k == 1) base = m;
            rows.push_back({d, k, m, m / base});
            std::printf("%-8d %-10d %12.1f %22.2f\n", d, k, m, m / base);
        }
    }
    if (!json_path.empty()) {
        std::ofstream f(json_path);
        f << "{\"model\":\"" << model_path << "\",\"tokens_per_request\":" << n_tokens << ",\"overhead_us\":[";
        for (std::size_t i = 0; i < overheads.size(); ++i)
            f << (i ? "," : "") << "{\"devices\":" << overheads[i].first << ",\"us_per_step\":" << overheads[i].second << "}";
        f << "],\"throughput\":[";
        for (std::size_t i = 0; i < rows.size(); ++i)
            f << (i ? "," : "") << "{\"devices\":" << rows[i].devices << ",\"in_flight\":" << rows[i].in_flight
              << ",\"tokens_per_s\":" << rows[i].tokens_per_s << ",\"speedup\":" << rows[i].speedup << "}";
        f << "]}\n";
    }
    return 0;
}
