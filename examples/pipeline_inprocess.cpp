// Splits a model over N simulated devices in one process, generates with K
// requests in flight, and prints each device's time. Shows the Segment,
// Device, Transport and Scheduler concepts composed into the coroutine
// pipeline, with channels instead of sockets.
//
//   pipeline-inprocess [-m MODEL.gguf] [--devices N] [--in-flight K] [-n TOKENS] [--trace FILE.json]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include <tandem/device/cpu_device.hpp>
#include <tandem/runtime/inprocess_pipeline.hpp>
#include <tandem/scheduler/fifo_scheduler.hpp>
#include <tandem/segment/model_segment.hpp>
#include <tandem/tokenizer/stream_decoder.hpp>
#include <tandem/tokenizer/tokenizer.hpp>

using namespace tandem;

int main(int argc, char** argv) {
    std::string model_path = std::string(TANDEM_MODELS_DIR) + "/stories260K.gguf", trace_path;
    int devices = 3, in_flight = 3, n_tokens = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "-m") model_path = v;
        else if (a == "--devices") devices = std::stoi(v);
        else if (a == "--in-flight") in_flight = std::stoi(v);
        else if (a == "-n") n_tokens = std::stoi(v);
        else if (a == "--trace") trace_path = v;
        else {
            std::fprintf(stderr, "unknown option %s\n", a.c_str());
            return 2;
        }
    }
    try {
        const auto file = GgufFile::open(model_path);
        const auto tokenizer = Tokenizer::from_gguf(file);
        const auto model = Model::from_file(file);  // one copy of the weights, shared by all devices
        const auto& c = model->config();

        // Segment i runs on device i+1; the plan splits the layers evenly.
        std::vector<DeviceId> ids;
        for (int d = 1; d <= devices; ++d) ids.push_back(static_cast<DeviceId>(d));
        const Plan plan = Plan::even(c, ids);
        std::vector<std::unique_ptr<ModelSegment>> segments;
        std::vector<std::unique_ptr<CpuDevice>> cpus;
        for (const auto& st : plan.stages) {
            segments.push_back(std::make_unique<ModelSegment>(model, st.blocks));
            cpus.push_back(std::make_unique<CpuDevice>(CpuDeviceOptions{.name = "sim-" + std::to_string(st.device), .threads = 1}));
        }
        TraceRecorder trace(!trace_path.empty());
        InProcessPipeline<ModelSegment, CpuDevice, FifoScheduler> pipeline(
            std::move(segments), std::move(cpus), plan, FifoScheduler(static_cast<std::size_t>(in_flight)), c.dim,
            c.n_blocks(), &trace);

        const char* prompts[] = {"Once upon a time", "The little dog", "One day, Lily", "Tom had a big"};
        for (int i = 0; i < in_flight; ++i)
            pipeline.submit({.prompt = tokenizer.encode(prompts[i % 4], true), .max_tokens = n_tokens,
                             .sampler = {.temperature = 0.8f, .top_k = 40, .seed = static_cast<std::uint64_t>(i)},
                             .stop_tokens = tokenizer.eog_tokens()});
        const auto t0 = std::chrono::steady_clock::now();
        const auto results = pipeline.run();
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

        std::size_t tokens = 0;
        for (const auto& r : results) {
            tokens += r.tokens.size();
            StreamDecoder text(tokenizer, /*sequence_start=*/false);  // continues the prompt
            std::string out;
            for (const auto t : r.tokens)
                if (!tokenizer.is_eog(t)) out += text.push(t);
            out += text.flush();
            std::printf("[%llu] %s%s\n\n", static_cast<unsigned long long>(r.id), prompts[(r.id - 1) % 4], out.c_str());
        }
        std::printf("plan %s, %d requests in flight: %zu tokens in %.3f s (%.1f tokens/s)\n", plan.describe().c_str(),
                    in_flight, tokens, secs, static_cast<double>(tokens) / secs);
        std::printf("%-8s %-8s %8s %8s %12s %12s\n", "device", "blocks", "steps", "batches", "compute ms", "send ms");
        for (std::size_t d = 0; d < pipeline.size(); ++d) {
            const auto& s = pipeline.device_stats(d);
            std::printf("%-8zu %-8s %8llu %8llu %12.2f %12.2f\n", d + 1, to_string(plan.stages[d].blocks).c_str(),
                        static_cast<unsigned long long>(s.steps), static_cast<unsigned long long>(s.batches),
                        s.busy_seconds * 1e3, s.send_seconds * 1e3);
        }
        if (!trace_path.empty()) {
            trace.write(trace_path);
            std::printf("trace written to %s (open it in ui.perfetto.dev or chrome://tracing)\n", trace_path.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
