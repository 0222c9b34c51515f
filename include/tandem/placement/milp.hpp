// The placement MILPs, built and solved with GLPK's C API: the problem types
// and the part both formulations share (objectives, solving, warm start).
// The formulations themselves: milp_compact.hpp and milp_flow.hpp.
//
// Two exact formulations of the same problem (each device one contiguous
// range of blocks or none; devices in a pipeline order; memory; the time of
// cost_model.hpp as objective):
//
// COMPACT (llama-shaped models: embedding, L x (attention, FFN), head, every
// attention block alike and every FFN block alike; the default there). Since
// a block's cost depends only on its kind, a plan is a device order plus, per
// device, how many blocks of each kind it runs:
//
//   y[a][b] in {0,1}   node b follows node a (nodes: coordinator c, devices)
//   u[d] in {0,1}      device d is used
//   na[d], nf[d] in Z  attention / FFN blocks on d
//   al[d], om[d]       d's range starts after an attention block (mid-layer) /
//                      ends after one; then na - nf = om - al
//   pi[d]              position in the order (Miller-Tucker-Zemlin)
//
//   sum_b y[c][b] = sum_a y[a][c] = 1;  sum_b y[d][b] = sum_a y[a][d] = u[d]
//   pi[b] >= pi[a] + 1 - D (1 - y[a][b])             no cycles without the coordinator
//   y[a][b] = 1  =>  al[b] = om[a];  first: al = 0;  last: om = 0  (ranges meet)
//   sum na = sum nf = L;  na + nf + y[c][d] + y[d][c] >= u[d]  (a used device runs a block)
//   m_att na + m_ffn nf + m_emb y[c][d] + m_head y[d][c] <= M[d]
//   the first device (y[c][d] = 1) runs the embedding, the last (y[d][c]) the head.
//
// It has O(D^2) columns whatever the model's depth, so an 80-layer model on 8
// devices solves in milliseconds. Identical devices (same profile, same
// links) are ordered to break symmetry: d before d' and d used if d' is.
// Layer granularity fixes al = om = 0. If attention (or FFN) blocks differ in
// memory (mixed quantisation), the largest of each kind is used: plans then
// never exceed memory but may leave a few bytes unused (the solver says so).
//
// FLOW (any shape; U units = blocks, or layers at layer granularity):
//
//   z[u][d] in {0,1}     unit u runs on device d
//   v[u][d][e] in [0,1]  the step leaves unit u on d and enters unit u+1 on e
//   sum_d z[0][d] = 1;  sum_e v[u][d][e] = z[u][d];  sum_d v[u][d][e] = z[u+1][e]
//   z[0][d] + sum_{u, d' != d} v[u][d'][d] <= 1  (entered once); likewise left once
//   sum_u mem[u] z[u][d] <= M[d]
//
// The v form a flow through a layered graph (a shortest path without the
// entry rows: integral LP), tighter than w >= z[u][d] + z[u+1][e] - 1. Units
// too big for a device are fixed off it. Exact for any memory per block, but
// U D^2 columns: seconds for 80 layers on 8 devices (benchmarks/placement_bench).
//
// Objectives, in ms per token:
//   latency      sum of computes + hops (coordinator hops included)
//   throughput   min T: T >= each device's compute, T >= each hop, K T >= latency
//   tie-break    latency subject to every resource <= a given T
//   elastic      min total memory overflow (memory rows get a slack per device):
//                how much is missing when nothing fits
// GLPK never prints (glpk.hpp) and never aborts the process: an internal
// GLPK error is caught and reported as Solution::Status::Failed.
#pragma once

#include <cstdint>

namespace tandem::milp {

enum class Formulation : std::uint8_t { Auto, Compact, Flow };

inline const char* formulation_name(Formulation f) noexcept {
    return f == Formulation::Compact ? "compact" : f == Formulation::Flow ? "flow" : "auto";
}

}  // namespace tandem::milp

// The rest needs GLPK (TANDEM_WITH_GLPK=ON defines TANDEM_HAS_GLPK); without
// it solver.hpp reports the solver as unavailable.
#if defined(TANDEM_HAS_GLPK)

#include <glpk.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tandem/placement/cost_model.hpp"
#include "tandem/placement/glpk.hpp"

namespace tandem::milp {

/// Contiguous groups of blocks the flow formulation assigns whole.
struct Units {
    std::vector<std::int64_t> begin;  // (U + 1) block boundaries; begin[U] = n_blocks

    std::int64_t size() const noexcept { return static_cast<std::int64_t>(begin.size()) - 1; }

    static Units blocks(std::int64_t n_blocks) {
        Units u;
        for (std::int64_t b = 0; b <= n_blocks; ++b) u.begin.push_back(b);
        return u;
    }
    static Units layers(const ModelShape& s) {
        Units u;
        u.begin.push_back(0);
        for (const auto c : s.layer_cuts()) u.begin.push_back(c);
        u.begin.push_back(s.n_blocks());
        return u;
    }
};

/// What the compact formulation needs: a llama-shaped block sequence.
struct RegularShape {
    std::int64_t n_layers = 0;
    std::array<std::uint64_t, kCostKinds> memory{};  // largest block of each kind (weights + KV)
    bool exact = true;                               // every block of a kind has the same memory
};

/// The model as embedding, L x (attention, FFN), head; nullopt otherwise.
inline std::optional<RegularShape> regular_shape(const CostModel& m) {
    const auto& blocks = m.shape().blocks;
    const auto n = static_cast<std::int64_t>(blocks.size());
    if (n < 4 || n % 2 != 0 || blocks.front().kind != CostKind::Embedding || blocks.back().kind != CostKind::Head)
        return std::nullopt;
    RegularShape r;
    r.n_layers = (n - 2) / 2;
    std::array<bool, kCostKinds> seen{};
    for (std::int64_t b = 0; b < n; ++b) {
        const auto want = b == 0 ? CostKind::Embedding
                          : b == n - 1 ? CostKind::Head
                          : (b % 2 == 1) ? CostKind::Attention
                                         : CostKind::Ffn;
        if (blocks[static_cast<std::size_t>(b)].kind != want) return std::nullopt;
        const auto k = static_cast<std::size_t>(want);
        const auto mem = m.block_memory(b);
        if (seen[k] && mem != r.memory[k]) r.exact = false;
        r.memory[k] = seen[k] ? std::max(r.memory[k], mem) : mem;
        seen[k] = true;
    }
    return r;
}

/// Restrictions for counterfactual solves ("what if this device were used").
struct Restriction {
    std::vector<char> allowed;  // per device; empty = all allowed
    int must_use = -1;          // a device that must run at least one block
    std::vector<int> order;     // non-empty: exactly these devices, all used, in this order

    bool empty() const noexcept { return allowed.empty() && must_use < 0 && order.empty(); }
};

enum class Mode : std::uint8_t { Latency, Throughput, TieBreak, Elastic };

struct Solution {
    // Failed: GLPK hit an internal error (caught, see detail::guarded).
    enum class Status : std::uint8_t { Optimal, Feasible, Infeasible, NoSolution, Failed };
    Status status = Status::NoSolution;
    Placement placement;      // when Optimal or Feasible
    double objective_ms = 0;  // GLPK's objective value
    double seconds = 0;
    int glpk_code = 0;        // glp_intopt's return value

    bool found() const noexcept { return status == Status::Optimal || status == Status::Feasible; }
};

class Problem {
public:
    virtual ~Problem() = default;
    Problem(const Problem&) = delete;
    Problem& operator=(const Problem&) = delete;

    /// Solves within `time_limit_s`; `start`, a plan known to be feasible
    /// (the best baseline), is offered to GLPK as its first incumbent.
    /// `other_branching`: the branching rule not chosen by default (see
    /// below); the retry after GLPK failed internally.
    Solution solve(double time_limit_s, double mip_gap, const Placement* start = nullptr, bool other_branching = false) {
        const auto t0 = std::chrono::steady_clock::now();
        Solution s;
        auto done = [&](Solution::Status st) {
            s.status = st;
            s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            return s;
        };
        if (!prob_) return done(Solution::Status::Failed);
        detail::QuietGlpk quiet;
        const int limit_ms = static_cast<int>(std::clamp(time_limit_s * 1e3, 1.0, 2.0e9));
        // The root LP first, without presolve: GLPK's MIP presolver tightens
        // bounds with a tolerance and was seen to accept a plan 578 bytes
        // over a 34 MB limit; without it GLPK's answers check out exactly.
        glp_smcp lp;
        glp_init_smcp(&lp);
        lp.msg_lev = GLP_MSG_OFF;
        lp.presolve = GLP_OFF;
        lp.tm_lim = limit_ms;
        int lp_code = 0;
        if (!detail::guarded(prob_.get(), &lp, lp_code)) {
            (void)prob_.release();  // freed with GLPK's environment
            return done(Solution::Status::Failed);
        }
        if (lp_code == 0 && glp_get_status(prob_.get()) == GLP_NOFEAS) return done(Solution::Status::Infeasible);
        if (lp_code != 0 || glp_get_status(prob_.get()) != GLP_OPT) {
            s.glpk_code = lp_code;
            return done(Solution::Status::NoSolution);
        }
        glp_iocp parm;
        glp_init_iocp(&parm);
        parm.msg_lev = GLP_MSG_OFF;
        parm.presolve = GLP_OFF;
        const double spent = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        parm.tm_lim = static_cast<int>(std::clamp((time_limit_s - spent) * 1e3, 1.0, 2.0e9));
        parm.mip_gap = mip_gap;
        // Throughput (min-max, and its tie-break under a cap on T): pseudocost
        // branching with best-projection backtracking proves optima ~10x
        // sooner than Driebeck-Tomlin on 8 devices x 162 blocks; for latency
        // Driebeck-Tomlin with best-bound backtracking is ~4x faster.
        // GLPK's default integrality tolerance is kept: tighter ones made its
        // pseudocost update divide by zero (an assertion in glpios09.c).
        const bool minmax = mode_ == Mode::Throughput || mode_ == Mode::TieBreak;
        const bool pseudocost = minmax != other_branching;
        parm.br_tech = pseudocost ? GLP_BR_PCH : GLP_BR_DTH;
        parm.bt_tech = pseudocost ? GLP_BT_BPH : GLP_BT_BLB;
        std::vector<double> x;
        HeuristicStart hs{nullptr, false};
        if (start) {
            x = columns_of(*start);
            hs.x = &x;
            parm.cb_func = &HeuristicStart::callback;
            parm.cb_info = &hs;
        }
        if (!detail::guarded(prob_.get(), &parm, s.glpk_code)) {
            (void)prob_.release();
            return done(Solution::Status::Failed);
        }
        const int st = glp_mip_status(prob_.get());
        if (st == GLP_OPT || st == GLP_FEAS) {
            const bool proven = st == GLP_OPT && (s.glpk_code == 0 || s.glpk_code == GLP_EMIPGAP);
            s.objective_ms = glp_mip_obj_val(prob_.get());
            s.placement = extract();
            return done(proven ? Solution::Status::Optimal : Solution::Status::Feasible);
        }
        if (st == GLP_NOFEAS) return done(Solution::Status::Infeasible);
        return done(Solution::Status::NoSolution);  // the time limit before any solution
    }

    Formulation formulation() const noexcept { return formulation_; }
    /// Whether memory is modelled to the byte (compact: only when blocks of a kind are alike).
    virtual bool exact_memory() const noexcept = 0;
    int n_columns() const { return prob_ ? glp_get_num_cols(prob_.get()) : 0; }
    int n_rows() const { return prob_ ? glp_get_num_rows(prob_.get()) : 0; }

protected:
    /// `margin_bytes[d]`: memory held back on device d (see solver.hpp: how
    /// GLPK's feasibility tolerance is made exact).
    Problem(const CostModel& m, Formulation f, bool layer_granularity, Mode mode, std::vector<std::uint64_t> margin_bytes)
        : m_(m), mode_(mode), layers_(layer_granularity), D_(m.n_devices()), margin_(std::move(margin_bytes)),
          formulation_(f), prob_(glp_create_prob()) {
        margin_.resize(static_cast<std::size_t>(D_), 0);
        glp_set_obj_dir(prob_.get(), GLP_MIN);
    }

    /// The placement in GLPK's MIP solution.
    virtual Placement extract() const = 0;
    /// Sets the columns (1-based) of placement p in x, T excepted.
    virtual void set_columns(const Placement& p, std::vector<double>& x) const = 0;

    // Hands GLPK a known solution once, when it asks for heuristic solutions.
    struct HeuristicStart {
        const std::vector<double>* x;
        bool offered;
        static void callback(glp_tree* tree, void* info) {
            auto* self = static_cast<HeuristicStart*>(info);
            if (glp_ios_reason(tree) != GLP_IHEUR || self->offered) return;
            self->offered = true;
            glp_ios_heur_sol(tree, self->x->data());  // GLPK checks it and ignores it if infeasible
        }
    };

    /// Column values (1-based, as glp_ios_heur_sol wants) of placement p.
    std::vector<double> columns_of(const Placement& p) const {
        std::vector<double> x(static_cast<std::size_t>(n_columns()) + 1, 0.0);
        set_columns(p, x);
        if (t_col_ > 0) x[static_cast<std::size_t>(t_col_)] = m_.evaluate(p).throughput_s * 1e3 * (1 + 1e-9);
        return x;
    }

    int add_cols(int n) { return n > 0 ? glp_add_cols(prob_.get(), n) : glp_get_num_cols(prob_.get()) + 1; }
    void binary(int c) { glp_set_col_kind(prob_.get(), c, GLP_BV); }
    void fix(int c, double v) { glp_set_col_bnds(prob_.get(), c, GLP_FX, v, v); }
    void add_row(const detail::Row& r, int type, double lo, double hi) {
        if (r.size() == 0) return;
        const int i = glp_add_rows(prob_.get(), 1);
        glp_set_mat_row(prob_.get(), i, r.size(), r.idx.data(), r.val.data());
        glp_set_row_bnds(prob_.get(), i, type, lo, hi);
    }
    double ms_block(std::int64_t b, int d) const { return m_.block_s(b, d) * 1e3; }
    double ms_hop(int a, int b) const { return m_.hop_s(a, b) * 1e3; }
    double ms_in(int d) const { return m_.input_s(d) * 1e3; }
    double ms_out(int d) const { return m_.output_s(d) * 1e3; }
    double mem_scale() const {
        double s = 1;
        for (int d = 0; d < D_; ++d) s = std::max(s, static_cast<double>(m_.memory_available(d)));
        return s;
    }
    /// Memory device d may fill: its budget less the margin held back.
    std::uint64_t capacity(int d) const {
        const auto a = m_.memory_available(d), k = margin_[static_cast<std::size_t>(d)];
        return a > k ? a - k : 0;
    }

    // The builders fill these; finish() turns them into an objective and rows.
    detail::Row latency_;                 // ms per token of one request
    std::vector<detail::Row> resources_;  // each <= T: device computes and hops
    std::vector<detail::Row> memory_;     // per device, in units of mem_scale()

    void finish(double cap_ms) {
        glp_prob* P = prob_.get();
        const double scale = mem_scale();
        if (mode_ == Mode::Elastic) {
            const int s0 = add_cols(D_);
            for (int d = 0; d < D_; ++d) {
                glp_set_col_bnds(P, s0 + d, GLP_LO, 0, 0);
                glp_set_obj_coef(P, s0 + d, 1.0);
                memory_[static_cast<std::size_t>(d)].add(s0 + d, -1);
            }
        }
        for (int d = 0; d < D_; ++d)
            add_row(memory_[static_cast<std::size_t>(d)], GLP_UP, 0, static_cast<double>(capacity(d)) / scale);
        if (mode_ == Mode::Elastic) return;
        if (mode_ == Mode::Latency || mode_ == Mode::TieBreak)
            for (int i = 1; i <= latency_.size(); ++i)
                glp_set_obj_coef(P, latency_.idx[static_cast<std::size_t>(i)],
                                 glp_get_obj_coef(P, latency_.idx[static_cast<std::size_t>(i)]) +
                                     latency_.val[static_cast<std::size_t>(i)]);
        if (mode_ == Mode::TieBreak) {
            for (const auto& r : resources_) add_row(r, GLP_UP, 0, cap_ms);
            return;
        }
        if (mode_ == Mode::Throughput) {
            const int t = add_cols(1);
            t_col_ = t;
            glp_set_col_bnds(P, t, std::isfinite(cap_ms) ? GLP_DB : GLP_LO, 0, std::isfinite(cap_ms) ? cap_ms : 0);
            glp_set_obj_coef(P, t, 1.0);
            for (auto r : resources_) {
                r.add(t, -1);
                add_row(r, GLP_UP, 0, 0);
            }
            auto lat = latency_;
            lat.add(t, -static_cast<double>(m_.options().in_flight));
            add_row(lat, GLP_UP, 0, 0);
        }
    }

    const CostModel& m_;
    Mode mode_;
    bool layers_;
    int D_;
    std::vector<std::uint64_t> margin_;  // (D) bytes held back per device
    Formulation formulation_;
    int t_col_ = 0;  // T (throughput mode)
    std::unique_ptr<glp_prob, detail::ProbDeleter> prob_;
};

}  // namespace tandem::milp

#endif  // TANDEM_HAS_GLPK
