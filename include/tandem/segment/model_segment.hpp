// ModelSegment: the Segment that runs a range of a real model's blocks with
// the engine of model/, keeping the KV caches of its layers per sequence.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tandem/model/architecture.hpp"
#include "tandem/model/model.hpp"
#include "tandem/segment/segment.hpp"

namespace tandem {

class ModelSegment {
public:
    /// `model` must bind at least the weights of `blocks`; sharing one Model
    /// between segments in one process shares the mapped weights.
    ModelSegment(std::shared_ptr<const Model> model, BlockRange blocks) : model_(std::move(model)) {
        set_blocks(blocks);
    }

    BlockRange blocks() const noexcept { return blocks_; }
    const Model& model() const noexcept { return *model_; }

    void forward(Batch& batch, ThreadPool& pool) { forward(batch, pool, nullptr); }
    /// As above, adding each block's wall time to block_seconds[block id]
    /// (an array of at least the model's block count).
    void forward(Batch& batch, ThreadPool& pool, double* block_seconds) {
        if (blocks_.empty()) throw ConfigError("segment has no blocks to run");
        run_blocks(model_->arch(), blocks_, batch, kv_, ws_, pool, block_seconds);
    }

    void release(SeqId seq) { kv_.erase(seq); }

    std::vector<SeqId> sequences() const {
        std::vector<SeqId> ids;
        for (const auto& [id, c] : kv_.caches()) ids.push_back(id);
        return ids;
    }

    std::pair<std::int64_t, std::int64_t> kv_layers() const noexcept { return {kv_.first_layer(), kv_.end_layer()}; }

    LayerKv export_kv(SeqId seq, std::int64_t layer) const {
        const auto it = kv_.caches().find(seq);
        if (it == kv_.caches().end() || !it->second.has_layer(layer))
            throw ConfigError("no KV cache for sequence " + std::to_string(seq) + " layer " + std::to_string(layer));
        return it->second.export_layer(layer);
    }

    void import_kv(SeqId seq, std::int64_t layer, const LayerKv& kv) { kv_.at(seq).import_layer(layer, kv); }

    /// Changes the range. The model must bind the new blocks (see the overload
    /// taking a model for a process that loads new weights).
    void set_blocks(BlockRange r) { set_blocks(r, model_); }

    void set_blocks(BlockRange r, std::shared_ptr<const Model> model) {
        const auto& c = model->config();
        const auto bound = model->bound_blocks();
        if (r.begin < bound.begin || r.end > bound.end || r.begin > r.end)
            throw ConfigError("segment range " + to_string(r) + " is not within the loaded blocks " + to_string(bound));
        model_ = std::move(model);
        blocks_ = r;
        const auto first = r.first_kv_layer(), end = r.end_kv_layer(c);
        if (kv_.n_sequences() == 0)
            kv_ = KvStore(first, end, c.kv_dim(), c.context_length);
        else
            kv_.set_layers(first, end);
    }

    std::uint64_t weight_bytes() const {
        std::uint64_t total = 0;
        for (auto b = blocks_.begin; b < blocks_.end; ++b) total += model_->block_weight_bytes(b);
        return total;
    }
    std::uint64_t kv_bytes() const noexcept { return kv_.bytes(); }

    std::vector<std::string> produces() const { return collect(&Architecture::block_produces); }
    std::vector<std::string> consumes() const { return collect(&Architecture::block_consumes); }

private:
    std::vector<std::string> collect(std::vector<std::string> (Architecture::*f)(std::int64_t) const) const {
        std::set<std::string> names;
        for (auto b = blocks_.begin; b < blocks_.end; ++b)
            for (auto& n : (model_->arch().*f)(b)) names.insert(std::move(n));
        return {names.begin(), names.end()};
    }

    std::shared_ptr<const Model> model_;
    BlockRange blocks_;
    KvStore kv_;
    Workspace ws_;
};

static_assert(Segment<ModelSegment>);

}  // namespace tandem
