// Sampling options shared by `tandem generate` and `tandem run`.
#pragma once

#include <tandem/model/sampler.hpp>

#include "args.hpp"

namespace tandem::cli {

inline constexpr const char* kSamplingHelp = R"(      --temp T           temperature; 0 = greedy (default 0)
      --top-k K          keep the K most likely tokens (default 40; 0 = off)
      --top-p P          nucleus sampling threshold (default 0.95; 1 = off)
      --min-p P          drop tokens below P x the top probability (default 0.05)
      --repeat-penalty R repetition penalty (default 1 = off)
      --repeat-last-n N  tokens the penalty looks back over (default 64)
      --seed S           sampler seed (default 0)
)";

inline SamplerConfig sampling_from_args(const Args& args) {
    SamplerConfig sc;
    sc.temperature = args.num<float>({"temp", "temperature"}, 0.0f);
    sc.top_k = args.num<std::int32_t>({"top-k"}, 40);
    sc.top_p = args.num<float>({"top-p"}, 0.95f);
    sc.min_p = args.num<float>({"min-p"}, 0.05f);
    sc.repeat_penalty = args.num<float>({"repeat-penalty"}, 1.0f);
    sc.repeat_last_n = args.num<std::int32_t>({"repeat-last-n"}, 64);
    sc.seed = args.num<std::uint64_t>({"seed"}, 0);
    return sc;
}

}  // namespace tandem::cli
