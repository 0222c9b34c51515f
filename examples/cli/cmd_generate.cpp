// tandem generate: text from one device. Streams tokens as they are sampled and
// ends with prefill and decode speed and the process's peak memory.
#include <cstdio>
#include <string>
#include <thread>

#include <tandem/core/memory.hpp>
#include <tandem/model/generator.hpp>
#include <tandem/tokenizer/stream_decoder.hpp>
#include <tandem/tokenizer/tokenizer.hpp>

#include "args.hpp"
#include "commands.hpp"
#include "model_source.hpp"
#include "sampling_args.hpp"

namespace tandem::cli {

namespace {
constexpr const char* kGenerateHelp = R"(usage: tandem generate [-m MODEL.gguf] [-p PROMPT] [-n N] [options]

Generates text with one device. Without -m it uses the embedded stories260K model.

  -m, --model FILE       GGUF model (llama family; F32/F16/BF16/Q8_0/Q4_0/K-quants)
  -p, --prompt TEXT      prompt (default: empty, i.e. start from BOS)
  -n, --n-predict N      tokens to generate (default 128)
%s  -t, --threads N        compute threads (default: all cores)
      --no-bos           do not start the prompt with BOS
      --quiet            print only the generated text
)";
}  // namespace

int cmd_generate(int argc, char** argv) {
    Args args(argc, argv, {"help", "h", "no-bos", "quiet"});
    if (args.flag({"help", "h"})) {
        std::printf(kGenerateHelp, kSamplingHelp);
        return 0;
    }
    const auto prompt = args.str({"p", "prompt"});
    const auto n_predict = args.num<std::int32_t>({"n", "n-predict"}, 128);
    const SamplerConfig sc = sampling_from_args(args);
    const auto threads = args.num<unsigned>({"t", "threads"}, std::thread::hardware_concurrency());
    const bool add_bos = !args.flag({"no-bos"});
    const bool quiet = args.flag({"quiet"});
    auto file = open_model_file(args);
    args.reject_unknown();

    const auto tokenizer = Tokenizer::from_gguf(file);
    const auto model = Model::from_file(std::move(file));
    ThreadPool pool(threads);
    Generator gen(model, pool);

    auto ids = tokenizer.encode(prompt, add_bos);
    if (ids.empty()) ids.push_back(tokenizer.bos());
    if (!quiet) {
        const auto& c = model->config();
        std::fprintf(stderr, "model: %s (%s, %lld layers, dim %lld, vocab %lld), %u threads, prompt %zu tokens\n",
                     model->file().name().c_str(), c.architecture.c_str(), static_cast<long long>(c.n_layers),
                     static_cast<long long>(c.dim), static_cast<long long>(c.n_vocab), pool.size(), ids.size());
    }
    std::fputs(prompt.c_str(), stdout);
    std::fflush(stdout);

    GenerateOptions opt;
    opt.max_tokens = n_predict;
    opt.sampler = sc;
    opt.stop_tokens = tokenizer.eog_tokens();
    StreamDecoder out(tokenizer, prompt.empty());
    GenerateStats st;
    gen.generate(ids, opt, [&](std::int32_t id) {
        if (!tokenizer.is_eog(id)) std::fputs(out.push(id).c_str(), stdout);
        std::fflush(stdout);
        return true;
    }, &st);
    std::fputs(out.flush().c_str(), stdout);
    std::fputs("\n", stdout);
    if (!quiet) {
        std::fprintf(stderr, "\nprefill: %lld tokens, %.1f tokens/s | decode: %lld tokens, %.1f tokens/s | peak memory: %.1f MiB\n",
                     static_cast<long long>(st.prompt_tokens), st.prefill_tokens_per_second(),
                     static_cast<long long>(st.generated_tokens), st.decode_tokens_per_second(),
                     to_mib(peak_rss_bytes()));
    }
    return 0;
}

}  // namespace tandem::cli
