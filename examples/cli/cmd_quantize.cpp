// tandem quantize: requantizes a GGUF model's weight matrices to one type
// (norms and other 1-D tensors stay as they are) and reports the sizes.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <unistd.h>

#include <tandem/core/memory.hpp>
#include <tandem/model/quantize_model.hpp>

#include "args.hpp"
#include "commands.hpp"
#include "progress.hpp"

namespace tandem::cli {

namespace {

constexpr const char* kQuantizeHelp = R"(usage: tandem quantize IN.gguf OUT.gguf --type T [options]

Writes OUT with every weight matrix of IN converted to type T: each row is
dequantized (from any type tandem reads) and quantized with ggml's reference
quantizer. 1-D tensors (norms) are copied as they are, and so are matrices
already of type T. All metadata is copied; general.file_type is updated.

  --type T           Q8_0, Q4_0 (also Q4_1, Q5_0, Q5_1, Q6_K, F16, BF16, F32)
  --strict           refuse a matrix whose rows are not a whole number of T's
                     blocks (32 elements; 256 for Q6_K) instead of keeping it in
                     its own type
  -t, --threads N    threads (default: all cores)
  -v, --verbose      list every tensor
)";

double mib(std::uint64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); }

std::string shape_str(const std::vector<std::uint64_t>& s) {
    std::string out = "[";
    for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

}  // namespace

int cmd_quantize(int argc, char** argv) {
    Args args(argc, argv, {"help", "h", "strict", "verbose", "v"});
    if (args.flag({"help", "h"})) {
        std::fputs(kQuantizeHelp, stdout);
        return 0;
    }
    const auto type_str = args.str({"type"});
    const bool strict = args.flag({"strict"});
    const bool verbose = args.flag({"verbose", "v"});
    const auto threads = args.num<unsigned>({"t", "threads"}, std::thread::hardware_concurrency());
    args.reject_unknown();
    if (args.positional().size() != 2) throw std::runtime_error("give IN.gguf and OUT.gguf (see --help)");
    if (type_str.empty()) throw std::runtime_error("give the target type with --type (e.g. --type q8_0)");
    const auto type = parse_type_name(type_str);
    if (!type) throw std::runtime_error("unknown type '" + type_str + "'");
    const auto& in_path = args.positional()[0];
    const auto& out_path = args.positional()[1];

    const auto in = GgufFile::open(in_path);
    ThreadPool pool(threads);
    WriteProgress progress;
    QuantizeOptions opt{*type, strict, &pool, {}};
    opt.on_tensor = [&progress](const QuantizeProgress& p) { progress(p); };

    QuantizePlan plan;
    const auto writer = make_quantize_writer(in, opt, &plan);
    writer.write(out_path);
    const double secs = progress.seconds();

    if (verbose) {
        for (const auto& e : plan.tensors)
            std::printf("  %-32s %-20s %-5s -> %-5s %10.3f -> %10.3f MiB  %s\n", e.name.c_str(), shape_str(e.shape).c_str(),
                        std::string(type_name(e.from)).c_str(), std::string(type_name(e.to)).c_str(), mib(e.bytes_before),
                        mib(e.bytes_after), quantize_action_name(e.action));
    }
    std::printf("%s (%.2f MiB) -> %s (%.2f MiB, %s): %.1f%% of the size; tensors %.2f -> %.2f MiB\n", in_path.c_str(),
                mib(plan.file_bytes_before), out_path.c_str(), mib(plan.file_bytes_after),
                std::string(type_name(*type)).c_str(),
                100.0 * static_cast<double>(plan.file_bytes_after) / static_cast<double>(plan.file_bytes_before),
                mib(plan.tensor_bytes_before()), mib(plan.tensor_bytes_after()));
    std::printf("  %zu quantized, %zu already %s, %zu 1-D kept", plan.count(QuantizeAction::Quantized),
                plan.count(QuantizeAction::Copied), std::string(type_name(*type)).c_str(),
                plan.count(QuantizeAction::Kept1D));
    if (const auto kept = plan.count(QuantizeAction::KeptRowLength); kept > 0) {
        std::printf(", %zu kept in their type (rows not a multiple of the %u-element block):", kept,
                    type_traits(*type).block_size);
        for (const auto& e : plan.tensors)
            if (e.action == QuantizeAction::KeptRowLength)
                std::printf(" %s (%s, rows of %llu)", e.name.c_str(), std::string(type_name(e.from)).c_str(),
                            static_cast<unsigned long long>(e.shape[0]));
    }
    std::printf("\n  %.2f s, peak memory %.1f MiB\n", secs, mib(peak_rss_bytes()));
    return 0;
}

}  // namespace tandem::cli
