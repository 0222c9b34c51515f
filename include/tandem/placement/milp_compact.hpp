// The compact placement MILP for llama-shaped models: a device order plus
// block counts per device and kind (see the formulation in milp.hpp).
#pragma once

#if defined(TANDEM_HAS_GLPK)

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "tandem/placement/milp.hpp"

namespace tandem::milp {

class CompactProblem final : public Problem {
public:
    /// Throws ConfigError unless the model is llama-shaped (regular_shape()).
    /// `cap_ms`: Throughput: an upper bound on T from a known plan (+inf: none);
    /// TieBreak: the bound every resource is held to while latency is minimised.
    CompactProblem(const CostModel& m, bool layer_granularity, Mode mode, const Restriction& r = {},
                   double cap_ms = std::numeric_limits<double>::infinity(), std::vector<std::uint64_t> margin_bytes = {})
        : Problem(m, Formulation::Compact, layer_granularity, mode, std::move(margin_bytes)), regular_(regular_shape(m)) {
        if (!regular_)
            throw ConfigError("the compact placement formulation needs a llama-shaped model "
                              "(embedding, attention/FFN pairs, head)");
        build_compact(r);
        finish(cap_ms);
    }

    bool exact_memory() const noexcept override { return regular_->exact; }

private:
    int node(int d) const { return d + 1; }  // node 0 = coordinator
    int y(int a, int b) const { return y0_ + a * (D_ + 1) + b; }
    int col(int base, int d) const { return base + d; }

    /// Devices d < e that are interchangeable: same profile, memory and links.
    bool identical(int d, int e) const {
        const auto& p = m_.cluster().device(d);
        const auto& q = m_.cluster().device(e);
        if (p.decode != q.decode || p.prefill != q.prefill || p.memory_bytes != q.memory_bytes) return false;
        const auto& c = m_.cluster();
        if (c.link(d, e) != c.link(e, d)) return false;
        for (int x = Cluster::kCoordinator; x < D_; ++x) {
            if (x == d || x == e) continue;
            if (c.link(x, d) != c.link(x, e) || c.link(d, x) != c.link(e, x)) return false;
        }
        return true;
    }

    void build_compact(const Restriction& r) {
        glp_prob* P = prob_.get();
        const int D = D_, N = D + 1;
        const auto L = static_cast<double>(regular_->n_layers);
        const auto B = m_.n_blocks();
        const double scale = mem_scale();
        const auto& mem = regular_->memory;
        auto mem_of = [&](CostKind k) { return static_cast<double>(mem[static_cast<std::size_t>(k)]); };
        auto allowed = [&](int d) {
            if (!r.allowed.empty() && !r.allowed[static_cast<std::size_t>(d)]) return false;
            return r.order.empty() || std::find(r.order.begin(), r.order.end(), d) != r.order.end();
        };

        y0_ = add_cols(N * N);
        u0_ = add_cols(D);
        na0_ = add_cols(D);
        nf0_ = add_cols(D);
        al0_ = add_cols(D);
        om0_ = add_cols(D);
        pi0_ = add_cols(D);
        for (int a = 0; a < N; ++a)
            for (int b = 0; b < N; ++b) {
                binary(y(a, b));
                const bool ok = a != b && (a == 0 || allowed(a - 1)) && (b == 0 || allowed(b - 1));
                if (!ok) fix(y(a, b), 0);
            }
        for (int d = 0; d < D; ++d) {
            binary(col(u0_, d));
            if (!allowed(d)) fix(col(u0_, d), 0);
            if (d == r.must_use) fix(col(u0_, d), 1);
            // Block counts, bounded by what fits in memory.
            for (const auto& [base, kind] : {std::pair{na0_, CostKind::Attention}, std::pair{nf0_, CostKind::Ffn}}) {
                const double m = mem_of(kind);
                const double cap = m > 0 ? std::floor(static_cast<double>(capacity(d)) / m) : L;
                glp_set_col_kind(P, col(base, d), GLP_IV);
                const double hi = std::min(L, cap);
                glp_set_col_bnds(P, col(base, d), hi > 0 ? GLP_DB : GLP_FX, 0, std::max(hi, 0.0));
            }
            binary(col(al0_, d));
            binary(col(om0_, d));
            if (layers_) {
                fix(col(al0_, d), 0);
                fix(col(om0_, d), 0);
            }
            glp_set_col_bnds(P, col(pi0_, d), GLP_DB, 1, std::max(1, D));
        }
        // A fixed order: its arcs.
        if (!r.order.empty()) {
            fix(y(0, node(r.order.front())), 1);
            for (std::size_t i = 0; i + 1 < r.order.size(); ++i) fix(y(node(r.order[i]), node(r.order[i + 1])), 1);
            fix(y(node(r.order.back()), 0), 1);
        }

        // The coordinator starts and ends the pipeline; used devices have one
        // arc in and one out.
        {
            detail::Row out, in;
            for (int d = 0; d < D; ++d) {
                out.add(y(0, node(d)), 1);
                in.add(y(node(d), 0), 1);
            }
            add_row(out, GLP_FX, 1, 1);
            add_row(in, GLP_FX, 1, 1);
        }
        for (int d = 0; d < D; ++d) {
            detail::Row out, in;
            for (int b = 0; b < N; ++b) {
                if (b == node(d)) continue;
                out.add(y(node(d), b), 1);
                in.add(y(b, node(d)), 1);
            }
            out.add(col(u0_, d), -1);
            in.add(col(u0_, d), -1);
            add_row(out, GLP_FX, 0, 0);
            add_row(in, GLP_FX, 0, 0);
        }
        // No cycle among devices (MTZ), and no 2-cycle even fractionally.
        for (int a = 0; a < D; ++a)
            for (int b = 0; b < D; ++b) {
                if (a == b) continue;
                detail::Row mtz;
                mtz.add(col(pi0_, b), 1);
                mtz.add(col(pi0_, a), -1);
                mtz.add(y(node(a), node(b)), -static_cast<double>(D));
                add_row(mtz, GLP_LO, 1 - static_cast<double>(D), 0);
                if (a < b) {
                    detail::Row two;
                    two.add(y(node(a), node(b)), 1);
                    two.add(y(node(b), node(a)), 1);
                    add_row(two, GLP_UP, 0, 1);
                }
            }
        // Every layer is placed; a used device runs at least one block; counts
        // only on used devices.
        {
            detail::Row att, ffn;
            for (int d = 0; d < D; ++d) {
                att.add(col(na0_, d), 1);
                ffn.add(col(nf0_, d), 1);
            }
            add_row(att, GLP_FX, L, L);
            add_row(ffn, GLP_FX, L, L);
        }
        for (int d = 0; d < D; ++d) {
            detail::Row some;
            some.add(col(na0_, d), 1);
            some.add(col(nf0_, d), 1);
            some.add(y(0, node(d)), 1);
            some.add(y(node(d), 0), 1);
            some.add(col(u0_, d), -1);
            add_row(some, GLP_LO, 0, 0);
            if (layers_) {  // whole layers only: a used device runs at least one
                detail::Row layer;
                layer.add(col(na0_, d), 1);
                layer.add(col(u0_, d), -1);
                add_row(layer, GLP_LO, 0, 0);
            }
            for (const int base : {na0_, nf0_}) {
                detail::Row only;
                only.add(col(base, d), 1);
                only.add(col(u0_, d), -L);
                add_row(only, GLP_UP, 0, 0);
            }
            for (const int base : {al0_, om0_}) {
                detail::Row only;
                only.add(col(base, d), 1);
                only.add(col(u0_, d), -1);
                add_row(only, GLP_UP, 0, 0);
            }
            // Parity: na - nf = om - al.
            detail::Row parity;
            parity.add(col(na0_, d), 1);
            parity.add(col(nf0_, d), -1);
            parity.add(col(om0_, d), -1);
            parity.add(col(al0_, d), 1);
            add_row(parity, GLP_FX, 0, 0);
            // The first device starts at layer 0's attention, the last ends after an FFN.
            detail::Row first, last;
            first.add(col(al0_, d), 1);
            first.add(y(0, node(d)), 1);
            add_row(first, GLP_UP, 0, 1);
            last.add(col(om0_, d), 1);
            last.add(y(node(d), 0), 1);
            add_row(last, GLP_UP, 0, 1);
        }
        // Consecutive devices meet at the same point of a layer.
        for (int a = 0; a < D; ++a)
            for (int b = 0; b < D; ++b) {
                if (a == b || layers_) continue;
                detail::Row up, down;
                up.add(col(al0_, b), 1);
                up.add(col(om0_, a), -1);
                up.add(y(node(a), node(b)), 1);
                add_row(up, GLP_UP, 0, 1);
                down.add(col(om0_, a), 1);
                down.add(col(al0_, b), -1);
                down.add(y(node(a), node(b)), 1);
                add_row(down, GLP_UP, 0, 1);
            }
        // Symmetry: within each class of interchangeable devices, a device is
        // used only if the one before it in the class is, and comes after it.
        if (r.empty()) {
            std::vector<char> classed(static_cast<std::size_t>(D), 0);
            for (int d = 0; d < D; ++d) {
                if (classed[static_cast<std::size_t>(d)]) continue;
                std::vector<int> cls{d};
                for (int e = d + 1; e < D; ++e) {
                    if (classed[static_cast<std::size_t>(e)]) continue;
                    bool all = true;
                    for (const int c : cls) all = all && identical(c, e);
                    if (all) {
                        cls.push_back(e);
                        classed[static_cast<std::size_t>(e)] = 1;
                    }
                }
                for (std::size_t i = 0; i + 1 < cls.size(); ++i) {
                    const int a = cls[i], b = cls[i + 1];
                    detail::Row used, before;
                    used.add(col(u0_, a), 1);
                    used.add(col(u0_, b), -1);
                    add_row(used, GLP_LO, 0, 0);
                    before.add(col(pi0_, b), 1);
                    before.add(col(pi0_, a), -1);
                    before.add(col(u0_, b), -static_cast<double>(D));
                    add_row(before, GLP_LO, 1 - static_cast<double>(D), 0);
                }
            }
        }

        // Times (ms per token) and memory. Block 0 is the embedding, 1 an
        // attention block, 2 an FFN block, B-1 the head.
        memory_.assign(static_cast<std::size_t>(D), {});
        for (int d = 0; d < D; ++d) {
            const double ta = ms_block(1, d), tf = ms_block(2, d), te = ms_block(0, d), th = ms_block(B - 1, d);
            detail::Row compute;
            compute.add(col(na0_, d), ta);
            compute.add(col(nf0_, d), tf);
            compute.add(y(0, node(d)), te);
            compute.add(y(node(d), 0), th);
            resources_.push_back(compute);
            latency_.add(col(na0_, d), ta);
            latency_.add(col(nf0_, d), tf);
            latency_.add(y(0, node(d)), te + ms_in(d));
            latency_.add(y(node(d), 0), th + ms_out(d));
            detail::Row hop_in;  // one arc into d at most: the hop into d
            for (int a = 0; a < D; ++a)
                if (a != d) {
                    hop_in.add(y(node(a), node(d)), ms_hop(a, d));
                    latency_.add(y(node(a), node(d)), ms_hop(a, d));
                }
            resources_.push_back(hop_in);
            auto& mrow = memory_[static_cast<std::size_t>(d)];
            mrow.add(col(na0_, d), mem_of(CostKind::Attention) / scale);
            mrow.add(col(nf0_, d), mem_of(CostKind::Ffn) / scale);
            mrow.add(y(0, node(d)), mem_of(CostKind::Embedding) / scale);
            mrow.add(y(node(d), 0), mem_of(CostKind::Head) / scale);
        }
        detail::Row in, out;
        for (int d = 0; d < D; ++d) {
            in.add(y(0, node(d)), ms_in(d));
            out.add(y(node(d), 0), ms_out(d));
        }
        resources_.push_back(in);
        resources_.push_back(out);
    }

    Placement extract() const override {
        glp_prob* P = prob_.get();
        const auto B = m_.n_blocks();
        auto on = [&](int c) { return glp_mip_col_val(P, c) > 0.5; };
        Placement p;
        int at = 0;              // current node
        std::int64_t next = 1;   // first middle block not yet placed
        for (int step = 0; step <= D_; ++step) {
            int to = -1;
            for (int b = 0; b <= D_; ++b)
                if (b != at && on(y(at, b))) to = b;
            if (to <= 0) break;  // back at the coordinator (or no arc: caught by validation)
            const int d = to - 1;
            const auto n = static_cast<std::int64_t>(std::llround(glp_mip_col_val(P, col(na0_, d))) +
                                                     std::llround(glp_mip_col_val(P, col(nf0_, d))));
            const std::int64_t begin = p.stages.empty() ? 0 : next;
            const std::int64_t end = on(y(to, 0)) ? B : next + n;
            p.stages.push_back({d, begin, end});
            next += n;
            at = to;
        }
        return p;
    }

    void set_columns(const Placement& p, std::vector<double>& x) const override {
        auto set = [&](int c, double value) { x[static_cast<std::size_t>(c)] = value; };
        const auto B = m_.n_blocks();
        int prev = 0;
        for (std::size_t i = 0; i < p.stages.size(); ++i) {
            const auto& st = p.stages[i];
            const int d = st.device;
            set(y(prev, node(d)), 1);
            prev = node(d);
            set(col(u0_, d), 1);
            double na = 0, nf = 0;
            for (auto b = st.begin; b < st.end; ++b) {
                const auto k = m_.shape().blocks[static_cast<std::size_t>(b)].kind;
                na += k == CostKind::Attention;
                nf += k == CostKind::Ffn;
            }
            set(col(na0_, d), na);
            set(col(nf0_, d), nf);
            // Middle blocks: attention at odd indices, FFN at even ones.
            const double al = (st.begin > 0 && st.begin < B - 1 && st.begin % 2 == 0) ? 1 : 0;
            set(col(al0_, d), al);
            set(col(om0_, d), na - nf + al);
            set(col(pi0_, d), static_cast<double>(i + 1));
        }
        set(y(prev, 0), 1);
        for (int d = 0; d < D_; ++d)
            if (!p.uses(d)) set(col(pi0_, d), 1);
    }

    std::optional<RegularShape> regular_;
    int y0_ = 0, u0_ = 0, na0_ = 0, nf0_ = 0, al0_ = 0, om0_ = 0, pi0_ = 0;  // first column of each group
};

}  // namespace tandem::milp

#endif  // TANDEM_HAS_GLPK
