// tandem synth: writes a llama GGUF of a real model's shape with deterministic
// random weights and a real tokenizer, for benchmarks at realistic sizes.
// Same arguments, same bytes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <tandem/core/memory.hpp>
#include <tandem/model/synth.hpp>

#include "args.hpp"
#include "commands.hpp"
#include "progress.hpp"

namespace tandem::cli {

namespace {

constexpr const char* kSynthHelp = R"(usage: tandem synth --shape NAME [options] -o FILE
       tandem synth --dim N --ffn N --layers N --heads N [options] -o FILE
       tandem synth --list

Writes a llama-architecture GGUF with deterministic random weights (same
arguments: byte-identical file) and a real tokenizer, for benchmarks at real
sizes: speed depends on shapes and types, not on weight values. Norm weights
are 1 and stay F32; other weights have mean 0 and deviation 1/sqrt(row length).

  --shape NAME         a named shape (--list shows them); the options below
                       override its fields
  --dim N --ffn N --layers N --heads N --kv-heads N --vocab N --ctx N
                       a custom shape (kv-heads defaults to heads, ctx to 2048,
                       vocab to the tokenizer's size)
  --rope-base F        RoPE frequency base (default 10000 for custom shapes)
  --tied               the output head reuses the embedding (custom shapes)
  --type T             type of the 2-D weights: F32 (default), F16, BF16, Q8_0,
                       Q4_0, Q4_1, Q5_0, Q5_1, Q6_K; a weight whose rows are not
                       whole blocks of T stays F32
  --tokenizer T        stories260k, llama-spm, gpt-2 (shipped), or a GGUF file
                       with tokenizer.* metadata (default: the shape's; for a
                       custom shape the largest shipped one that fits --vocab)
  --models-dir DIR     where the shipped tokenizers are (default:
                       $TANDEM_MODELS_DIR, else models/ near this program)
  --seed N             random seed (default 0)
  -t, --threads N      threads (default: all cores)
  -o, --output FILE    where to write
  --list               list the named shapes with parameter counts and sizes

Llama 3 shapes: their 128256-token tokenizer is not shipped with tandem, so
they carry the GPT-2 BPE vocabulary (50257 tokens) padded with unused
"[PAD<id>]" tokens to 128256, which keeps every matrix at its real shape; the
file's general.name says so. Llama 3's long-context RoPE scaling is not written.
)";

bool file_exists(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string exe_dir() {
    std::vector<char> buf(4096);
    const auto n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
    if (n <= 0) return ".";
    std::string p(buf.data(), static_cast<std::size_t>(n));
    const auto slash = p.rfind('/');
    return slash == std::string::npos ? "." : p.substr(0, slash);
}

/// Finds `relative` (e.g. "vocab/ggml-vocab-gpt-2.gguf") in the models directory.
std::string find_model_file(const std::string& models_dir, const std::string& relative) {
    std::vector<std::string> dirs;
    if (!models_dir.empty()) {
        dirs.push_back(models_dir);
    } else {
        if (const char* env = std::getenv("TANDEM_MODELS_DIR"); env && *env) dirs.emplace_back(env);
#ifdef TANDEM_MODELS_DIR
        dirs.emplace_back(TANDEM_MODELS_DIR);
#endif
        const auto exe = exe_dir();
        for (const char* up : {"/../models", "/../../models", "/../share/tandem/models", "/models"})
            dirs.push_back(exe + up);
        dirs.emplace_back("models");
    }
    for (const auto& d : dirs)
        if (file_exists(d + "/" + relative)) return d + "/" + relative;
    std::string tried;
    for (const auto& d : dirs) tried += "\n  " + d;
    throw std::runtime_error("cannot find " + relative + " in the models directory; looked in:" + tried +
                             "\n(give --models-dir DIR, set TANDEM_MODELS_DIR, or --tokenizer FILE)");
}

/// The tokenizer source: the embedded stories260K, a shipped vocabulary, or a file.
GgufFile open_tokenizer(const std::string& spec, const std::string& models_dir) {
    if (spec == "stories260k" || spec == "stories260K") return GgufFile::from_memory(default_model(), "stories260K");
    if (spec == "llama-spm") return GgufFile::open(find_model_file(models_dir, synth_vocab_file(SynthVocab::LlamaSpm)));
    if (spec == "gpt-2" || spec == "gpt2") return GgufFile::open(find_model_file(models_dir, synth_vocab_file(SynthVocab::Gpt2)));
    return GgufFile::open(spec);
}

const char* vocab_spec(SynthVocab v) {
    switch (v) {
        case SynthVocab::Stories260K: return "stories260k";
        case SynthVocab::LlamaSpm: return "llama-spm";
        case SynthVocab::Gpt2: return "gpt-2";
    }
    return "";
}

std::string human_count(std::uint64_t n) {
    char buf[32];
    if (n >= 1000000000ull) std::snprintf(buf, sizeof buf, "%.2fB", static_cast<double>(n) / 1e9);
    else if (n >= 1000000ull) std::snprintf(buf, sizeof buf, "%.1fM", static_cast<double>(n) / 1e6);
    else std::snprintf(buf, sizeof buf, "%.1fK", static_cast<double>(n) / 1e3);
    return buf;
}

std::string human_bytes(std::uint64_t n) {
    char buf[32];
    const double b = static_cast<double>(n);
    if (b >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
    else std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
    return buf;
}

int list_shapes(const std::string& models_dir) {
    const GgmlType types[] = {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0};
    std::printf("%-15s %9s %6s %5s %6s %5s %3s %7s %7s %10s %10s %10s %10s  %s\n", "shape", "params", "layers", "dim",
                "ffn", "heads", "kv", "vocab", "ctx", "F32", "F16", "Q8_0", "Q4_0", "shape of");
    for (const auto& s : synth_shapes()) {
        std::printf("%-15s %9s %6lld %5lld %6lld %5lld %3lld %7lld %7lld", s.name.c_str(),
                    human_count(synth_parameter_count(s)).c_str(), static_cast<long long>(s.n_layers),
                    static_cast<long long>(s.dim), static_cast<long long>(s.ffn_dim), static_cast<long long>(s.n_heads),
                    static_cast<long long>(s.n_kv_heads), static_cast<long long>(s.n_vocab),
                    static_cast<long long>(s.context_length));
        // Exact file sizes need the tokenizer (its metadata is part of the file).
        std::optional<GgufFile> vocab;
        try {
            vocab = open_tokenizer(vocab_spec(s.vocab), models_dir);
        } catch (const std::exception&) {
        }
        for (const auto t : types) {
            std::uint64_t bytes = 0;
            if (vocab) {
                SynthSummary sum;
                (void)make_synth_writer(s, *vocab, SynthOptions{t, 0, nullptr, {}}, &sum);
                bytes = sum.file_bytes;
            } else {
                for (const auto& x : synth_tensors(s)) {
                    const auto tt = synth_tensor_type(x, t);
                    bytes += x.n_elements() / x.shape[0] * row_bytes(tt, x.shape[0]);
                }
            }
            std::printf(" %s%9s", vocab ? " " : "~", human_bytes(bytes).c_str());
        }
        std::printf("  %s%s\n", s.source.c_str(), s.vocab == SynthVocab::Gpt2 ? " (GPT-2 vocabulary, padded)" : "");
    }
    std::printf("\nparams: weights counted as model hubs count them (a tied head once). Sizes are whole files;\n"
                "'~' marks tensor bytes only, when the shape's tokenizer was not found.\n");
    return 0;
}

}  // namespace

int cmd_synth(int argc, char** argv) {
    Args args(argc, argv, {"help", "h", "list", "tied"});
    if (args.flag({"help", "h"})) {
        std::fputs(kSynthHelp, stdout);
        return 0;
    }
    const auto models_dir = args.str({"models-dir"});
    if (args.flag({"list"})) {
        args.reject_unknown();
        return list_shapes(models_dir);
    }

    // The shape: a named one, then any overrides.
    SynthShape shape;
    const auto shape_name = args.str({"shape"});
    const bool custom_dims = args.has("dim") || args.has("ffn") || args.has("layers") || args.has("heads") ||
                             args.has("kv-heads") || args.has("vocab") || args.has("ctx") || args.has("rope-base") ||
                             args.has("tied");
    if (!shape_name.empty()) {
        shape = find_synth_shape(shape_name);
    } else {
        if (!(args.has("dim") && args.has("ffn") && args.has("layers") && args.has("heads")))
            throw std::runtime_error("give --shape NAME, or --dim, --ffn, --layers and --heads (see --help)");
        shape.name = "custom";
        shape.context_length = 2048;
    }
    std::string changed;
    auto over = [&](const char* opt, std::int64_t& field) {
        if (!args.has(opt)) return;
        field = args.num<std::int64_t>({opt}, field);
        changed += std::string(changed.empty() ? "" : ", ") + opt + " " + std::to_string(field);
    };
    over("dim", shape.dim);
    over("ffn", shape.ffn_dim);
    over("layers", shape.n_layers);
    over("heads", shape.n_heads);
    if (shape_name.empty() && !args.has("kv-heads")) shape.n_kv_heads = shape.n_heads;
    over("kv-heads", shape.n_kv_heads);
    over("vocab", shape.n_vocab);
    over("ctx", shape.context_length);
    if (args.has("rope-base")) shape.rope_freq_base = args.num<float>({"rope-base"}, shape.rope_freq_base);
    if (args.has("tied")) shape.tied_output = args.flag({"tied"});
    if (!shape_name.empty() && custom_dims) {
        shape.name += "-custom";
        shape.source += shape.source.empty() ? "" : ", modified: " + changed;
        shape.published_parameters = 0;
    }

    // The tokenizer.
    std::string tok_spec = args.str({"tokenizer"});
    if (tok_spec.empty()) {
        if (!shape_name.empty()) {
            tok_spec = vocab_spec(shape.vocab);
        } else if (shape.n_vocab == 0 || shape.n_vocab >= 50257) {
            tok_spec = shape.n_vocab == 0 ? "llama-spm" : "gpt-2";
        } else if (shape.n_vocab >= 32000) {
            tok_spec = "llama-spm";
        } else if (shape.n_vocab >= 512) {
            tok_spec = "stories260k";
        } else {
            throw std::runtime_error("--vocab " + std::to_string(shape.n_vocab) +
                                     " is smaller than every shipped tokenizer (512 tokens at least): give "
                                     "--tokenizer FILE");
        }
    }
    const auto vocab = open_tokenizer(tok_spec, models_dir);
    if (shape.n_vocab == 0) shape.n_vocab = static_cast<std::int64_t>(vocab.at("tokenizer.ggml.tokens").array().items.size());

    const auto type_str = args.str({"type"}, "F32");
    const auto type = parse_type_name(type_str);
    if (!type) throw std::runtime_error("unknown type '" + type_str + "'");
    const auto seed = args.num<std::uint64_t>({"seed"}, 0);
    const auto threads = args.num<unsigned>({"t", "threads"}, std::thread::hardware_concurrency());
    const auto out = args.str({"o", "output"});
    args.reject_unknown();
    if (out.empty()) throw std::runtime_error("give the output file with -o FILE");
    if (!args.positional().empty()) throw std::runtime_error("unexpected argument '" + args.positional()[0] + "'");

    ThreadPool pool(threads);
    WriteProgress progress;
    SynthOptions opt{*type, seed, &pool, {}};
    opt.on_tensor = [&progress](const SynthProgress& p) { progress(p); };

    SynthSummary sum;
    const auto writer = make_synth_writer(shape, vocab, opt, &sum);
    std::fprintf(stderr, "synth %s: %s parameters, %s weights, %s tokenizer (%lld tokens%s), seed %llu -> %s (%s)\n",
                 shape.name.c_str(), human_count(sum.parameters).c_str(), std::string(type_name(*type)).c_str(),
                 tok_spec.c_str(), static_cast<long long>(sum.tokenizer_tokens),
                 sum.tokenizer_tokens < shape.n_vocab ? (", padded to " + std::to_string(shape.n_vocab)).c_str() : "",
                 static_cast<unsigned long long>(seed), out.c_str(), human_bytes(sum.file_bytes).c_str());
    if (!sum.kept_f32.empty()) {
        std::fprintf(stderr, "note: %zu weights stay F32 (rows not a multiple of the %s block size), e.g. %s\n",
                     sum.kept_f32.size(), std::string(type_name(*type)).c_str(), sum.kept_f32.front().c_str());
    }
    writer.write(out);
    const double secs = progress.seconds();
    std::printf("wrote %s: %s, %zu tensors, %s weights, %.1f s (%.0f MiB/s), peak memory %.1f MiB\n", out.c_str(),
                human_bytes(sum.file_bytes).c_str(), sum.n_tensors, std::string(type_name(*type)).c_str(), secs,
                to_mib(sum.file_bytes) / std::max(secs, 1e-9), to_mib(peak_rss_bytes()));
    return 0;
}

}  // namespace tandem::cli
