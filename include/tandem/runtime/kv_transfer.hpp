// KV caches on the wire, for live migration: one layer of one sequence per
// KvChunk frame, K and V as little-endian f32 (exact: a moved cache gives the
// same next token as one that never moved).
#pragma once

#include <cstdint>
#include <string>

#include "tandem/model/kv_cache.hpp"
#include "tandem/transport/protocol.hpp"

namespace tandem {

inline wire::KvChunk kv_to_chunk(SeqId seq, std::int64_t layer, std::int64_t kv_dim, const LayerKv& kv) {
    wire::KvChunk c;
    c.seq = seq;
    c.layer = layer;
    c.n_positions = kv.n_positions;
    c.kv_dim = kv_dim;
    c.k.resize(kv.k.size() * 4);
    c.v.resize(kv.v.size() * 4);
    wire::detail::put_f32(c.k.data(), kv.k.data(), kv.k.size());
    wire::detail::put_f32(c.v.data(), kv.v.data(), kv.v.size());
    return c;
}

/// Checks a received chunk against what the receiver holds (its KV width and
/// context length) before any allocation follows from its fields.
inline LayerKv kv_from_chunk(const wire::KvChunk& c, std::int64_t kv_dim, std::int64_t context_length,
                             const std::string& who) {
    if (c.kv_dim != kv_dim)
        throw ProtocolError(who, "KV chunk of width " + std::to_string(c.kv_dim) + ", this model's is " +
                                     std::to_string(kv_dim));
    if (c.n_positions < 0 || c.n_positions > context_length)
        throw ProtocolError(who, "KV chunk of " + std::to_string(c.n_positions) + " positions (context " +
                                     std::to_string(context_length) + ")");
    const auto n = static_cast<std::uint64_t>(c.n_positions) * static_cast<std::uint64_t>(kv_dim);
    if (c.k.size() != n * 4 || c.v.size() != n * 4)
        throw ProtocolError(who, "KV chunk bytes do not match its shape");
    LayerKv kv;
    kv.n_positions = c.n_positions;
    kv.k.resize(static_cast<std::size_t>(n));
    kv.v.resize(static_cast<std::size_t>(n));
    wire::detail::get_f32(kv.k.data(), c.k.data(), kv.k.size());
    wire::detail::get_f32(kv.v.data(), c.v.data(), kv.v.size());
    for (std::size_t i = 0; i < kv.k.size(); ++i)
        if (!std::isfinite(kv.k[i]) || !std::isfinite(kv.v[i])) throw ProtocolError(who, "KV chunk holds NaN or infinity");
    return kv;
}

}  // namespace tandem
