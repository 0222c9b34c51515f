// Single-device engine speed: prefill and decode tokens/s, next to the
// memory-bandwidth bound measured in the same run.
//
// For each model and thread count: prefill of a P-token prompt (median of runs,
// fresh KV cache each time) and decode of D tokens after it (median tokens/s).
// The decode bound is this machine's measured read bandwidth divided by the
// bytes a decode step must read (every weight but the embedding, plus one
// embedding row and the KV cache). Models: the real stories260K, and synthetic
// ones named SHAPE-TYPE after `tandem synth`'s shapes and types (default
// tinyllama-1.1b in Q8_0 and Q4_0), written into --synth-dir when missing.
//
//   bench-engine-bench [--models stories260K,tinyllama-1.1b-q8_0,tinyllama-1.1b-q4_0] [--threads 1,2]
//                      [--prompt 64] [--decode 32] [--runs 5] [--synth-dir DIR] [--json FILE]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <vector>

#include <tandem/core/memory.hpp>
#include <tandem/model/generator.hpp>
#include <tandem/model/synth.hpp>

#include "bandwidth.hpp"

using namespace tandem;

namespace {

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string x;
    while (std::getline(ss, x, ','))
        if (!x.empty()) out.push_back(x);
    return out;
}

bool exists(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0;
}

std::string model_file(const std::string& name, const std::string& synth_dir) {
    if (name == "stories260K") return std::string(TANDEM_MODELS_DIR) + "/stories260K.gguf";
    const auto dash = name.rfind('-');
    if (dash == std::string::npos) throw ConfigError("model name " + name + " is not stories260K or SHAPE-TYPE");
    const std::string shape = name.substr(0, dash), type = name.substr(dash + 1);
    const std::string path = synth_dir + "/" + name + ".gguf";
    if (exists(path)) return path;
    const auto t = parse_type_name(type);
    if (!t) throw ConfigError("unknown type in model name " + name);
    std::fprintf(stderr, "writing %s (synthetic %s, %s) ...\n", path.c_str(), shape.c_str(), type.c_str());
    const auto vocab = GgufFile::open(std::string(TANDEM_MODELS_DIR) + "/vocab/ggml-vocab-llama-spm.gguf");
    ThreadPool pool(0);
    SynthOptions opt;
    opt.type = *t;
    opt.pool = &pool;
    ::mkdir(synth_dir.c_str(), 0755);
    write_synth_model(path, find_synth_shape(shape), vocab, opt);
    return path;
}

struct Result {
    std::string model;
    unsigned threads = 0;
    double prefill_tps = 0, decode_tps = 0, bound_tps = 0, bytes_per_token = 0, bandwidth_gbs = 0;
};

}  // namespace

int main(int argc, char** argv) {
    std::string models = "stories260K,tinyllama-1.1b-q8_0,tinyllama-1.1b-q4_0", threads_s = "1,2", json, synth_dir = "synth-models";
    int prompt = 64, decode = 32, runs = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "--models") models = v;
        else if (a == "--threads") threads_s = v;
        else if (a == "--prompt") prompt = std::stoi(v);
        else if (a == "--decode") decode = std::stoi(v);
        else if (a == "--runs") runs = std::stoi(v);
        else if (a == "--synth-dir") synth_dir = v;
        else if (a == "--json") json = v;
        else {
            std::fprintf(stderr, "unknown option %s\n", a.c_str());
            return 2;
        }
    }
    std::vector<Result> results;
    std::printf("%-20s %3s %12s %12s %14s %12s %8s\n", "model", "thr", "prefill t/s", "decode t/s", "bound t/s",
                "MB/token", "of bound");
    for (const auto& name : split(models)) {
        const auto path = model_file(name, synth_dir);
        const auto model = Model::open(path);
        const auto& c = model->config();
        // Bytes one decode step reads: all weights but the embedding table, one
        // embedding row, and (small here) the KV cache up to the last position.
        double bytes = 0;
        for (std::int64_t b = 1; b < c.n_blocks(); ++b) bytes += static_cast<double>(model->block_weight_bytes(b));
        if (c.tied_output) bytes += 0;  // the head reads token_embd as its output matrix (counted in its block)
        bytes += static_cast<double>(model->block_weight_bytes(0)) / static_cast<double>(c.n_vocab);
        bytes += static_cast<double>(c.n_layers * c.kv_dim() * 2 * 4) * (prompt + decode / 2.0);
        for (const auto& ts : split(threads_s)) {
            const unsigned nt = static_cast<unsigned>(std::stoi(ts));
            ThreadPool pool(nt);
            const auto bw = bench::measure_read_bandwidth(pool, 256u << 20, 5, true);
            std::vector<std::int32_t> toks(static_cast<std::size_t>(prompt));
            for (int i = 0; i < prompt; ++i) toks[static_cast<std::size_t>(i)] = i == 0 ? 1 : 100 + (i * 37) % 400;
            Generator gen(model, pool);
            GenerateOptions opt;
            opt.max_tokens = decode;
            gen.generate(toks, {.max_tokens = 2});  // warm: page in the weights
            std::vector<double> pre, dec;
            for (int r = 0; r < runs; ++r) {
                GenerateStats st;
                gen.generate(toks, opt, {}, &st);
                pre.push_back(st.prefill_tokens_per_second());
                dec.push_back(st.decode_tokens_per_second());
            }
            Result res;
            res.model = name;
            res.threads = nt;
            res.prefill_tps = bench::median(pre);
            res.decode_tps = bench::median(dec);
            res.bandwidth_gbs = bw.median_gbs;
            res.bytes_per_token = bytes;
            res.bound_tps = bw.median_gbs * 1e9 / bytes;
            std::printf("%-20s %3u %12.1f %12.1f %14.1f %12.1f %7.0f%%\n", name.c_str(), nt, res.prefill_tps,
                        res.decode_tps, res.bound_tps, bytes / 1e6, 100.0 * res.decode_tps / res.bound_tps);
            std::fflush(stdout);
            results.push_back(res);
        }
    }
    std::printf("peak memory: %.1f MiB (largest model file plus KV caches and scratch)\n", to_mib(peak_rss_bytes()));
    std::printf("reference (issue 3, llama.cpp on this machine, 2 threads): tinyllama Q8_0 ~31 decode / ~112 prefill(64); "
                "Q4_0 ~52 / ~135 tokens/s\n");
    if (!json.empty()) {
        std::ofstream f(json);
        f << "[";
        for (std::size_t i = 0; i < results.size(); ++i) {
            const auto& r = results[i];
            f << (i ? ",\n" : "") << "{\"model\":\"" << r.model << "\",\"threads\":" << r.threads
              << ",\"prefill_tps\":" << r.prefill_tps << ",\"decode_tps\":" << r.decode_tps
              << ",\"bound_tps\":" << r.bound_tps << ",\"bytes_per_token\":" << r.bytes_per_token
              << ",\"bandwidth_gbs\":" << r.bandwidth_gbs << "}";
        }
        f << "]\n";
    }
    return 0;
}
