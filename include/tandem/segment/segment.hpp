// The Segment concept: a contiguous slice of the model that runs on one device.
//
// Requirements, for a Segment `s` (const view `cs`), a Batch `b`, a ThreadPool
// `pool`, a sequence id `seq`, a layer index `l`, a LayerKv `kv` and a
// BlockRange `r`:
//
//  1. cs.blocks() -> BlockRange: the blocks [begin, end) it runs, at sub-layer
//     granularity (see model/config.hpp). The first segment's range starts at
//     the embedding (block 0) and reads b.tokens; the last one's ends with the
//     head and fills b.logits.
//  2. s.forward(b, pool): runs its blocks on the batch in place. The batch
//     holds n tokens with their hidden states (n, dim), positions and sequence
//     ids; tokens of several sequences may share a batch.
//  3. s.release(seq): forgets everything kept for `seq` (its KV caches).
//  4. cs.sequences() -> std::vector<SeqId>: the sequences it keeps state for.
//  5. cs.kv_layers() -> std::pair<int64, int64>: the layers [first, end) whose
//     KV cache it keeps (the layers whose attention half it runs).
//  6. s.export_kv(seq, l) -> LayerKv and s.import_kv(seq, l, kv): copy one
//     layer's cache of one sequence out and in, so that a block's cache moves
//     with the block.
//  7. s.set_blocks(r): changes its range between steps (the load balancer moves
//     blocks). Caches of layers that leave are dropped (export them first);
//     layers that arrive start empty until imported.
//  8. cs.weight_bytes() and cs.kv_bytes() -> std::uint64_t: memory it uses.
//  9. cs.produces() and cs.consumes() -> std::vector<std::string>: names of the
//     extra tensors (beyond the hidden state) its blocks make for, or need from,
//     non-adjacent blocks. The pipeline sends each such tensor straight from
//     its producer to its consumers, never through the devices in between.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tandem/core/thread_pool.hpp"
#include "tandem/model/batch.hpp"
#include "tandem/model/config.hpp"

namespace tandem {

template <typename S>
concept Segment = requires(S& s, const S& cs, Batch& b, ThreadPool& pool, SeqId seq, std::int64_t l,
                           const LayerKv& kv, BlockRange r) {
    { cs.blocks() } -> std::same_as<BlockRange>;                             // 1
    { s.forward(b, pool) } -> std::same_as<void>;                            // 2
    { s.release(seq) } -> std::same_as<void>;                                // 3
    { cs.sequences() } -> std::same_as<std::vector<SeqId>>;                  // 4
    { cs.kv_layers() } -> std::same_as<std::pair<std::int64_t, std::int64_t>>;  // 5
    { s.export_kv(seq, l) } -> std::same_as<LayerKv>;                        // 6
    { s.import_kv(seq, l, kv) } -> std::same_as<void>;                       // 6
    { s.set_blocks(r) } -> std::same_as<void>;                               // 7
    { cs.weight_bytes() } -> std::convertible_to<std::uint64_t>;             // 8
    { cs.kv_bytes() } -> std::convertible_to<std::uint64_t>;                 // 8
    { cs.produces() } -> std::same_as<std::vector<std::string>>;             // 9
    { cs.consumes() } -> std::same_as<std::vector<std::string>>;             // 9
};

}  // namespace tandem
