// Device profiling: how fast a device runs this model's blocks, measured by
// running them, and a cache of the results.
//
// profile_device() runs real blocks of a loaded model through run_blocks() on
// the device's own thread pool, via Device::compute (so an emulated device's
// stretching is measured too), and takes the median of several repetitions:
//
//   decode    one token at position `decode_position` (its KV cache filled
//             first; truncated back after each run so every run sees the
//             same context), seconds per block;
//   prefill   a `prefill_tokens`-token step from an empty cache, seconds per
//             block divided by the tokens.
//
// Attention and FFN are timed on up to `max_layers` layers spread over the
// model and averaged; a run repeats a block until it lasts `min_run_seconds`,
// so microsecond blocks of a small model are timed above the clock's noise.
// No FLOP counts or synthetic kernels: the engine's own kernels, on the
// model's own weights. profile_blocks() does the same for a model received
// in part: a worker profiled over the network (runtime/live_profile.hpp) gets
// only the tensors of the sampled blocks (profiled_blocks()) and binds each
// to a Model of its own (SampledModel).
//
// ProfileCache keeps profiles in a JSON file keyed by model identity, device
// name and thread count; cached_profile() measures only on a miss or when
// asked to refresh. The file:
//   {"profiles": [{"key": "...", "device": {<device object, placement/profile.hpp>}}]}
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "tandem/device/device.hpp"
#include "tandem/model/architecture.hpp"
#include "tandem/model/model.hpp"
#include "tandem/placement/profile.hpp"
#include "tandem/runtime/placement_plan.hpp"

namespace tandem {

struct ProfilerOptions {
    int reps = 7;                        // runs per measurement; the median is kept
    std::int64_t prefill_tokens = 64;    // tokens in the timed prefill step
    std::int64_t decode_position = 64;   // the position a decode step is timed at
    std::int64_t max_layers = 4;         // attention/FFN layers sampled (evenly spread)
    double min_run_seconds = 2e-3;       // a run repeats its block(s) until at least this long
};

/// Bytes of RAM this machine has (the memory of a device with no budget).
inline std::uint64_t physical_memory_bytes() noexcept {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) : 0;
}

namespace detail {

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const auto n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace detail

/// The blocks a profile times: the embedding, the attention and FFN halves
/// of up to `max_layers` layers spread evenly over the model, and the head.
/// Sorted, without repeats.
inline std::vector<std::int64_t> profiled_blocks(const ModelConfig& c, const ProfilerOptions& opt = {}) {
    std::vector<std::int64_t> out{0};
    const std::int64_t n_sample = std::clamp<std::int64_t>(opt.max_layers, 1, std::max<std::int64_t>(c.n_layers, 1));
    for (std::int64_t i = 0; i < n_sample && c.n_layers > 0; ++i) {
        const auto l = i * c.n_layers / n_sample;
        out.push_back(1 + 2 * l);
        out.push_back(2 + 2 * l);
    }
    out.push_back(c.n_blocks() - 1);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

/// Which loaded architecture runs block b: a model bound to every block, or
/// (on a worker that received only the sampled blocks' tensors) one Model
/// per sampled block.
using BlockArchitecture = std::function<const Architecture&(std::int64_t block)>;

/// Throws ConfigError unless `opt` can profile a model of configuration `c`.
inline void check_profiler_options(const ModelConfig& c, const ProfilerOptions& opt) {
    if (opt.reps < 1 || opt.prefill_tokens < 1 || opt.decode_position < 0 || opt.max_layers < 1 ||
        !(opt.min_run_seconds >= 0))
        throw ConfigError("profiler options must be positive");
    const std::int64_t context_needed = std::max(opt.prefill_tokens, opt.decode_position + 1);
    if (context_needed > c.context_length)
        throw ConfigError("profiling needs " + std::to_string(context_needed) + " positions; the model has " +
                          std::to_string(c.context_length));
}

/// Measures `device` on the blocks profiled_blocks(c, opt), each run by
/// arch_of(block). The profile's memory is the device's budget, or this
/// machine's RAM when the budget is unlimited; its model is `model_id`.
template <Device D>
DeviceProfile profile_blocks(const ModelConfig& c, const BlockArchitecture& arch_of, const std::string& model_id,
                             D& device, const ProfilerOptions& opt = {}) {
    check_profiler_options(c, opt);
    const auto B = c.n_blocks();
    const auto sampled = profiled_blocks(c, opt);

    KvStore kv(0, c.n_layers, c.kv_dim(), c.context_length);
    Workspace ws;
    const SeqId seq = 0;

    // Deterministic token ids spread over the vocabulary.
    auto make_batch = [&](std::int64_t n, std::int64_t start) {
        std::vector<std::int32_t> toks;
        for (std::int64_t i = 0; i < n; ++i)
            toks.push_back(static_cast<std::int32_t>((1 + (start + i) * 7919) % c.n_vocab));
        return Batch::for_sequence(seq, toks, static_cast<std::int32_t>(start));
    };
    auto run_one = [&](std::int64_t b, Batch& batch, ThreadPool& pool) {
        run_blocks(arch_of(b), {b, b + 1}, batch, kv, ws, pool);
    };
    // The hidden state a middle block sees: the embedding of the batch's tokens.
    auto embed = [&](Batch& b) { run_one(0, b, device.pool()); };

    // Times `blocks` on `batch`; before every block run the hidden state is
    // restored and the cache cut back to `keep` positions, so each run does
    // the same work. Returns seconds per block run (median over reps).
    auto time_blocks = [&](const std::vector<std::int64_t>& blocks, Batch& batch, const Activations& hidden,
                           std::int64_t keep) {
        auto one_pass = [&](ThreadPool& pool, int inner) {
            for (int i = 0; i < inner; ++i)
                for (const auto b : blocks) {
                    batch.hidden = hidden;
                    if (kv.contains(seq)) kv.at(seq).truncate(keep);
                    run_one(b, batch, pool);
                }
        };
        // Calibrate how many passes make a run of at least min_run_seconds.
        const double first = device.compute([&](ThreadPool& pool) { one_pass(pool, 1); });
        const int inner = static_cast<int>(std::clamp(opt.min_run_seconds / std::max(first, 1e-9), 1.0, 100000.0));
        std::vector<double> runs;
        for (int r = 0; r < opt.reps; ++r)
            runs.push_back(device.compute([&](ThreadPool& pool) { one_pass(pool, inner); }) /
                           (static_cast<double>(inner) * static_cast<double>(blocks.size())));
        return detail::median(runs);
    };

    std::vector<std::int64_t> att, ffn;
    for (const auto b : sampled) {
        if (b == 0 || b == B - 1) continue;
        (b % 2 == 1 ? att : ffn).push_back(b);
    }
    DeviceProfile p;
    p.name = device.name();
    p.threads = device.threads();
    p.memory_bytes = device.memory_budget() == std::numeric_limits<std::uint64_t>::max() ? physical_memory_bytes()
                                                                                          : device.memory_budget();
    p.model = model_id;

    // Prefill: a step of prefill_tokens from an empty cache.
    {
        Batch batch = make_batch(opt.prefill_tokens, 0);
        embed(batch);
        const Activations hidden = batch.hidden;
        const double n = static_cast<double>(opt.prefill_tokens);
        p.prefill[CostKind::Embedding] = time_blocks({0}, batch, hidden, 0) / n;
        p.prefill[CostKind::Attention] = att.empty() ? 0.0 : time_blocks(att, batch, hidden, 0) / n;
        p.prefill[CostKind::Ffn] = ffn.empty() ? 0.0 : time_blocks(ffn, batch, hidden, 0) / n;
        p.prefill[CostKind::Head] = time_blocks({B - 1}, batch, hidden, 0) / n;
    }
    // Decode: fill the sampled layers' caches up to decode_position, then time
    // one token there.
    kv.erase(seq);
    if (opt.decode_position > 0) {
        Batch fill = make_batch(opt.decode_position, 0);
        embed(fill);
        const Activations hidden = fill.hidden;
        for (const auto b : att) {
            fill.hidden = hidden;
            run_one(b, fill, device.pool());
        }
    }
    {
        Batch batch = make_batch(1, opt.decode_position);
        embed(batch);
        const Activations hidden = batch.hidden;
        const auto keep = opt.decode_position;
        p.decode[CostKind::Embedding] = time_blocks({0}, batch, hidden, keep);
        p.decode[CostKind::Attention] = att.empty() ? 0.0 : time_blocks(att, batch, hidden, keep);
        p.decode[CostKind::Ffn] = ffn.empty() ? 0.0 : time_blocks(ffn, batch, hidden, keep);
        p.decode[CostKind::Head] = time_blocks({B - 1}, batch, hidden, keep);
    }
    p.validate();
    return p;
}

/// Measures `device` on `model` (which must bind every block; Model::open
/// binds all by default). See profile_blocks.
template <Device D>
DeviceProfile profile_device(const Model& model, D& device, const ProfilerOptions& opt = {}) {
    const auto& c = model.config();
    if (model.bound_blocks() != BlockRange::all(c))
        throw ConfigError("profiling needs a model that binds all of its blocks, not " + to_string(model.bound_blocks()));
    const auto& arch = model.arch();
    return profile_blocks(c, [&arch](std::int64_t) -> const Architecture& { return arch; }, model_identity(model),
                          device, opt);
}

/// The sampled blocks of a model received in part (a worker that got only
/// the tensors profiled_blocks() reads): one Model bound to each block.
class SampledModel {
public:
    SampledModel(const GgufFile& file, const ProfilerOptions& opt) {
        const auto c = read_config(file);
        check_profiler_options(c, opt);
        for (const auto b : profiled_blocks(c, opt)) models_.emplace_back(b, Model::from_file(GgufFile(file), BlockRange{b, b + 1}));
        config_ = models_.front().second->config();
    }

    const ModelConfig& config() const noexcept { return config_; }
    const Architecture& arch(std::int64_t b) const {
        for (const auto& [block, m] : models_)
            if (block == b) return m->arch();
        throw ConfigError("block " + std::to_string(b) + " is not one of the profiled blocks");
    }
    BlockArchitecture arch_of() const {
        return [this](std::int64_t b) -> const Architecture& { return arch(b); };
    }
    /// Weight bytes of the largest sampled block (what must be resident at once).
    std::uint64_t largest_block_bytes() const {
        std::uint64_t most = 0;
        for (const auto& [block, m] : models_) most = std::max(most, m->block_weight_bytes(block));
        return most;
    }

private:
    std::vector<std::pair<std::int64_t, std::shared_ptr<const Model>>> models_;
    ModelConfig config_;
};

/// Profiles kept in a JSON file; see the top of this file for its layout.
class ProfileCache {
public:
    /// Loads `path` if it exists (FormatError if it is malformed).
    explicit ProfileCache(std::string path) : path_(std::move(path)) {
        std::ifstream probe(path_);
        if (!probe) return;
        probe.close();
        const auto root = Json::parse(read_text_file(path_), path_);
        const detail::JsonFields f(root, "", path_, {"profiles"});
        const auto& list = f.need("profiles");
        if (!list.is_array()) f.fail(list, "profiles: expected an array");
        for (std::size_t i = 0; i < list.as_array().size(); ++i) {
            const auto& e = list.as_array()[i];
            const std::string where = "profiles[" + std::to_string(i) + "]";
            const detail::JsonFields ef(e, where, path_, {"key", "device"});
            entries_.push_back({ef.string("key"), device_profile_from_json(ef.need("device"), path_, where + ".device")});
        }
    }

    static std::string key(const std::string& model_id, const std::string& device_name, unsigned threads) {
        return model_id + "|" + device_name + "|t" + std::to_string(threads);
    }

    std::optional<DeviceProfile> find(const std::string& key) const {
        for (const auto& e : entries_)
            if (e.key == key) return e.profile;
        return std::nullopt;
    }

    void put(const std::string& key, DeviceProfile p) {
        for (auto& e : entries_)
            if (e.key == key) {
                e.profile = std::move(p);
                return;
            }
        entries_.push_back({key, std::move(p)});
    }

    std::size_t size() const noexcept { return entries_.size(); }
    const std::string& path() const noexcept { return path_; }

    /// Writes the file (to a temporary, then renamed over it: a crash never
    /// leaves half a cache). Throws IoError.
    void save() const {
        Json root;
        Json list = Json::Array{};
        for (const auto& e : entries_) {
            Json o;
            o.set("key", e.key);
            o.set("device", device_profile_to_json(e.profile));
            list.push(std::move(o));
        }
        root.set("profiles", std::move(list));
        const std::string tmp = path_ + ".tmp." + std::to_string(::getpid());
        {
            std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
            if (!out) throw IoError(tmp + ": cannot write");
            out << root.dump();
            if (!out.flush()) throw IoError(tmp + ": write failed");
        }
        if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
            std::remove(tmp.c_str());
            throw IoError(path_ + ": cannot replace");
        }
    }

private:
    struct Entry {
        std::string key;
        DeviceProfile profile;
    };
    std::string path_;
    std::vector<Entry> entries_;
};

/// The cached profile of `device` on `model`, measured (and saved) on a miss
/// or when `refresh` is set. `measured`, if given, says which happened.
template <Device D>
DeviceProfile cached_profile(const Model& model, D& device, const std::string& cache_path, bool refresh = false,
                             const ProfilerOptions& opt = {}, bool* measured = nullptr) {
    ProfileCache cache(cache_path);
    const auto key = ProfileCache::key(model_identity(model), device.name(), device.threads());
    if (!refresh)
        if (auto p = cache.find(key)) {
            if (measured) *measured = false;
            return *p;
        }
    auto p = profile_device(model, device, opt);
    cache.put(key, p);
    cache.save();
    if (measured) *measured = true;
    return p;
}

}  // namespace tandem
