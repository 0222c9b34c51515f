// A loaded model: the GGUF file (memory-mapped), its configuration and the
// architecture bound to the blocks this process runs. Immutable once loaded
// and shared by every sequence and segment that uses it.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "tandem/gguf/reader.hpp"
#include "tandem/model/architecture.hpp"
#include "tandem/model/config.hpp"
#include "tandem/model/registry.hpp"

namespace tandem {

class Model {
public:
    /// Opens `path` and binds the weights of `blocks` (default: all of them).
    static std::shared_ptr<const Model> open(const std::string& path, std::optional<BlockRange> blocks = std::nullopt) {
        return from_file(GgufFile::open(path), blocks);
    }

    static std::shared_ptr<const Model> from_file(GgufFile file, std::optional<BlockRange> blocks = std::nullopt) {
        require_supported_architecture(file);
        auto m = std::shared_ptr<Model>(new Model(std::move(file)));
        m->config_ = read_config(m->file_);
        m->bound_ = blocks.value_or(BlockRange::all(m->config_));
        m->arch_ = make_architecture(m->file_, m->config_, m->bound_);
        return m;
    }

    const GgufFile& file() const noexcept { return file_; }
    const ModelConfig& config() const noexcept { return config_; }
    const Architecture& arch() const noexcept { return *arch_; }
    BlockRange bound_blocks() const noexcept { return bound_; }

    /// Bytes of weights block `b` reads from the file.
    std::uint64_t block_weight_bytes(std::int64_t b) const {
        std::uint64_t total = 0;
        for (const auto& name : arch_->block_tensors(b))
            if (const auto* t = file_.find_tensor(name)) total += t->n_bytes();
        return total;
    }

    /// Bytes of KV cache one sequence needs per position in block `b`.
    std::uint64_t block_kv_bytes_per_position(std::int64_t b) const {
        return block_ref(config_, b).kind == BlockKind::Attention
                   ? static_cast<std::uint64_t>(config_.kv_dim()) * 2 * sizeof(float)
                   : 0;
    }

private:
    explicit Model(GgufFile file) : file_(std::move(file)) {}
    GgufFile file_;
    ModelConfig config_;
    BlockRange bound_;
    std::unique_ptr<Architecture> arch_;
};

}  // namespace tandem
