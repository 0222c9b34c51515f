// Slicing the model: any contiguous range of blocks runs on its own, prefill
// equals token-by-token decoding, and sequences never see each other's cache.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>

#include <tandem/model/model.hpp>

#include "support/paths.hpp"

using namespace tandem;

namespace {

const std::vector<std::int32_t> kPrompt = {1, 403, 407, 261, 378, 280, 301, 312, 292, 437, 324, 268, 440};

float max_abs_diff(const Activations& a, const Activations& b) {
    REQUIRE(a.rows() == b.rows());
    REQUIRE(a.cols() == b.cols());
    return (a - b).cwiseAbs().maxCoeff();
}

// Logits of every prompt token, computed by running `ranges` one after another.
Activations run_split(const Model& m, const std::vector<BlockRange>& ranges, ThreadPool& pool) {
    const auto& c = m.config();
    std::vector<KvStore> stores;
    for (const auto& r : ranges) stores.emplace_back(r.first_kv_layer(), r.end_kv_layer(c), c.kv_dim(), c.context_length);
    Workspace ws;
    Batch b = Batch::for_sequence(7, kPrompt, 0);
    b.want_logits.assign(kPrompt.size(), 1);
    for (std::size_t i = 0; i < ranges.size(); ++i) run_blocks(m.arch(), ranges[i], b, stores[i], ws, pool);
    return b.logits;
}

}  // namespace

TEST_CASE("model: running blocks [0,k) then [k,N) equals running [0,N), for every k") {
    const auto m = Model::open(test::stories260k());
    ThreadPool pool(2);
    const auto n = m->config().n_blocks();
    const auto whole = run_split(*m, {{0, n}}, pool);
    for (std::int64_t k = 1; k < n; ++k) {
        CAPTURE(k);
        const auto split = run_split(*m, {{0, k}, {k, n}}, pool);
        // Same kernels, same order of operations: the results are bit-identical.
        CHECK(max_abs_diff(whole, split) == 0.0f);
    }
    // Three and five pieces, with sub-layer cuts.
    CHECK(max_abs_diff(whole, run_split(*m, {{0, 2}, {2, 7}, {7, n}}, pool)) == 0.0f);
    CHECK(max_abs_diff(whole, run_split(*m, {{0, 1}, {1, 4}, {4, 5}, {5, 10}, {10, n}}, pool)) == 0.0f);
}

TEST_CASE("model: prefill logits equal token-by-token logits") {
    const auto m = Model::open(test::stories260k());
    const auto& c = m->config();
    ThreadPool pool(2);
    const auto all = BlockRange::all(c);
    const auto prefill = run_split(*m, {all}, pool);

    KvStore kv(0, c.n_layers, c.kv_dim(), c.context_length);
    Workspace ws;
    for (std::size_t i = 0; i < kPrompt.size(); ++i) {
        Batch b = Batch::for_sequence(3, std::span(&kPrompt[i], 1), static_cast<std::int32_t>(i));
        run_blocks(m->arch(), all, b, kv, ws, pool);
        const float diff = (b.logits.row(0) - prefill.row(static_cast<Eigen::Index>(i))).cwiseAbs().maxCoeff();
        CAPTURE(i);
        // Batched and single-token matmuls may sum in a different order.
        CHECK(diff < 1e-4f);
    }
}

TEST_CASE("model: two sequences in one batch equal each run alone") {
    const auto m = Model::open(test::stories260k());
    const auto& c = m->config();
    ThreadPool pool(1);
    const auto all = BlockRange::all(c);
    const std::vector<std::int32_t> other = {1, 300, 301, 302, 303};

    auto alone = [&](SeqId id, const std::vector<std::int32_t>& toks) {
        KvStore kv(0, c.n_layers, c.kv_dim(), c.context_length);
        Workspace ws;
        Batch b = Batch::for_sequence(id, toks, 0);
        b.want_logits.assign(toks.size(), 1);
        run_blocks(m->arch(), all, b, kv, ws, pool);
        return b.logits;
    };
    const auto a = alone(1, kPrompt);
    const auto b = alone(2, other);

    // Interleave: the first 5 tokens of each, then the rest of the prompt.
    KvStore kv(0, c.n_layers, c.kv_dim(), c.context_length);
    Workspace ws;
    Batch mixed;
    for (std::int32_t i = 0; i < 5; ++i) {
        mixed.tokens.push_back(kPrompt[static_cast<std::size_t>(i)]);
        mixed.positions.push_back(i);
        mixed.seq_ids.push_back(1);
        mixed.tokens.push_back(other[static_cast<std::size_t>(i)]);
        mixed.positions.push_back(i);
        mixed.seq_ids.push_back(2);
    }
    mixed.want_logits.assign(10, 1);
    run_blocks(m->arch(), all, mixed, kv, ws, pool);
    for (std::int32_t i = 0; i < 5; ++i) {
        CHECK((mixed.logits.row(2 * i) - a.row(i)).cwiseAbs().maxCoeff() < 1e-4f);
        CHECK((mixed.logits.row(2 * i + 1) - b.row(i)).cwiseAbs().maxCoeff() < 1e-4f);
    }
    // Continue sequence 1 alone from its cache: no trace of sequence 2.
    Batch rest = Batch::for_sequence(1, std::span(kPrompt).subspan(5), 5);
    rest.want_logits.assign(kPrompt.size() - 5, 1);
    run_blocks(m->arch(), all, rest, kv, ws, pool);
    for (Eigen::Index i = 0; i < rest.logits.rows(); ++i)
        CHECK((rest.logits.row(i) - a.row(i + 5)).cwiseAbs().maxCoeff() < 1e-4f);
}

TEST_CASE("model: bad inputs are refused with typed errors") {
    const auto m = Model::open(test::stories260k());
    const auto& c = m->config();
    ThreadPool pool(1);
    KvStore kv(0, c.n_layers, c.kv_dim(), c.context_length);
    Workspace ws;
    std::int32_t bad = 100000;
    Batch b = Batch::for_sequence(0, std::span(&bad, 1), 0);
    CHECK_THROWS_AS(run_blocks(m->arch(), BlockRange::all(c), b, kv, ws, pool), ConfigError);
    std::int32_t ok = 5;
    Batch far = Batch::for_sequence(0, std::span(&ok, 1), static_cast<std::int32_t>(c.context_length));
    CHECK_THROWS_AS(run_blocks(m->arch(), BlockRange::all(c), far, kv, ws, pool), ConfigError);
    // A slice that did not bind a block refuses to run it.
    const auto part = Model::open(test::stories260k(), BlockRange{0, 3});
    Batch p = Batch::for_sequence(0, std::span(&ok, 1), 0);
    CHECK_THROWS_AS(run_blocks(part->arch(), BlockRange{0, 5}, p, kv, ws, pool), ConfigError);
}

TEST_CASE("model: run_blocks times each block it runs, and only those; the result is unchanged") {
    const auto m = Model::open(test::stories260k());
    ThreadPool pool(1);
    const auto& c = m->config();
    const auto n = c.n_blocks();
    const BlockRange range{2, n - 1};
    std::vector<double> secs(static_cast<std::size_t>(n), 0.0);
    auto run = [&](double* per_block) {
        KvStore kv(range.first_kv_layer(), range.end_kv_layer(c), c.kv_dim(), c.context_length);
        Workspace ws;
        Batch b = Batch::for_sequence(3, kPrompt, 0);
        // The blocks before the range: the embedding and layer 0's attention.
        KvStore kv0(BlockRange{0, 2}.first_kv_layer(), BlockRange{0, 2}.end_kv_layer(c), c.kv_dim(), c.context_length);
        run_blocks(m->arch(), {0, 2}, b, kv0, ws, pool);
        const auto t0 = std::chrono::steady_clock::now();
        run_blocks(m->arch(), range, b, kv, ws, pool, per_block);
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return std::make_pair(Activations(b.hidden), wall);
    };
    const auto [timed, wall] = run(secs.data());
    const auto [plain, unused] = run(nullptr);
    CHECK((timed - plain).cwiseAbs().maxCoeff() == 0.0f);
    double sum = 0;
    for (std::int64_t b = 0; b < n; ++b) {
        CAPTURE(b);
        if (range.contains(b))
            CHECK(secs[static_cast<std::size_t>(b)] > 0);
        else
            CHECK(secs[static_cast<std::size_t>(b)] == 0);
        sum += secs[static_cast<std::size_t>(b)];
    }
    CHECK(sum <= wall);
}
