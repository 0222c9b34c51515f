// The flow placement MILP for any block sequence: unit-by-device binaries
// and a flow between consecutive units (see the formulation in milp.hpp).
#pragma once

#if defined(TANDEM_HAS_GLPK)

#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "tandem/placement/milp.hpp"

namespace tandem::milp {

class FlowProblem final : public Problem {
public:
    /// `cap_ms`, `margin_bytes`: as for CompactProblem.
    FlowProblem(const CostModel& m, bool layer_granularity, Mode mode, const Restriction& r = {},
                double cap_ms = std::numeric_limits<double>::infinity(), std::vector<std::uint64_t> margin_bytes = {})
        : Problem(m, Formulation::Flow, layer_granularity, mode, std::move(margin_bytes)) {
        build_flow(r);
        finish(cap_ms);
    }

    bool exact_memory() const noexcept override { return true; }

private:
    int z(std::int64_t u, int d) const { return z0_ + static_cast<int>(u * D_ + d); }
    int v(std::int64_t u, int d, int e) const { return v0_ + static_cast<int>((u * D_ + d) * D_ + e); }

    void build_flow(const Restriction& r) {
        glp_prob* P = prob_.get();
        units_ = layers_ ? Units::layers(m_.shape()) : Units::blocks(m_.n_blocks());
        const int D = D_;
        const std::int64_t U = units_.size();
        const double scale = mem_scale();
        std::vector<int> next(static_cast<std::size_t>(D), -1);
        std::vector<char> in_order(static_cast<std::size_t>(D), 0);
        for (std::size_t i = 0; i < r.order.size(); ++i) {
            in_order[static_cast<std::size_t>(r.order[i])] = 1;
            if (i + 1 < r.order.size()) next[static_cast<std::size_t>(r.order[i])] = r.order[i + 1];
        }
        auto device_ok = [&](int d) {
            return (r.allowed.empty() || r.allowed[static_cast<std::size_t>(d)]) &&
                   (r.order.empty() || in_order[static_cast<std::size_t>(d)]);
        };
        auto arc_ok = [&](int d, int e) { return d == e || r.order.empty() || next[static_cast<std::size_t>(d)] == e; };

        std::vector<double> t(static_cast<std::size_t>(U * D), 0.0);  // (U, D) ms per token
        std::vector<std::uint64_t> mem(static_cast<std::size_t>(U), 0);
        for (std::int64_t u = 0; u < U; ++u)
            for (auto b = units_.begin[static_cast<std::size_t>(u)]; b < units_.begin[static_cast<std::size_t>(u + 1)]; ++b) {
                mem[static_cast<std::size_t>(u)] += m_.block_memory(b);
                for (int d = 0; d < D; ++d) t[static_cast<std::size_t>(u * D + d)] += ms_block(b, d);
            }

        z0_ = add_cols(static_cast<int>(U * D));
        v0_ = add_cols(static_cast<int>(std::max<std::int64_t>(U - 1, 0) * D * D));
        for (std::int64_t u = 0; u < U; ++u)
            for (int d = 0; d < D; ++d) {
                binary(z(u, d));
                const bool fits = mode_ == Mode::Elastic || mem[static_cast<std::size_t>(u)] <= capacity(d);
                if (!device_ok(d) || !fits) fix(z(u, d), 0);
            }
        for (std::int64_t u = 0; u + 1 < U; ++u)
            for (int d = 0; d < D; ++d)
                for (int e = 0; e < D; ++e) {
                    const bool ok = device_ok(d) && device_ok(e) && arc_ok(d, e);
                    glp_set_col_bnds(P, v(u, d, e), ok ? GLP_DB : GLP_FX, 0, ok ? 1 : 0);
                }

        {
            detail::Row cover;
            for (int d = 0; d < D; ++d) cover.add(z(0, d), 1);
            add_row(cover, GLP_FX, 1, 1);
        }
        for (std::int64_t u = 0; u + 1 < U; ++u)
            for (int d = 0; d < D; ++d) {
                detail::Row out, in;
                for (int e = 0; e < D; ++e) {
                    out.add(v(u, d, e), 1);
                    in.add(v(u, e, d), 1);
                }
                out.add(z(u, d), -1);
                in.add(z(u + 1, d), -1);
                add_row(out, GLP_FX, 0, 0);
                add_row(in, GLP_FX, 0, 0);
            }
        for (int d = 0; d < D; ++d) {
            detail::Row enter, leave;
            enter.add(z(0, d), 1);
            leave.add(z(U - 1, d), 1);
            for (std::int64_t u = 0; u + 1 < U; ++u)
                for (int e = 0; e < D; ++e) {
                    if (e == d) continue;
                    enter.add(v(u, e, d), 1);
                    leave.add(v(u, d, e), 1);
                }
            add_row(enter, GLP_UP, 0, 1);
            add_row(leave, GLP_UP, 0, 1);
        }
        auto must_use = [&](int d) {
            detail::Row row;
            for (std::int64_t u = 0; u < U; ++u) row.add(z(u, d), 1);
            add_row(row, GLP_LO, 1, 0);
        };
        if (r.must_use >= 0) must_use(r.must_use);
        for (const int d : r.order) must_use(d);

        memory_.assign(static_cast<std::size_t>(D), {});
        for (int d = 0; d < D; ++d) {
            detail::Row compute;
            for (std::int64_t u = 0; u < U; ++u) {
                const double cost = t[static_cast<std::size_t>(u * D + d)];
                compute.add(z(u, d), cost);
                latency_.add(z(u, d), cost + (u == 0 ? ms_in(d) : 0.0) + (u == U - 1 ? ms_out(d) : 0.0));
                memory_[static_cast<std::size_t>(d)].add(z(u, d), static_cast<double>(mem[static_cast<std::size_t>(u)]) / scale);
            }
            resources_.push_back(compute);
        }
        for (std::int64_t u = 0; u + 1 < U; ++u) {
            detail::Row hop;  // at most one hop at each boundary
            for (int d = 0; d < D; ++d)
                for (int e = 0; e < D; ++e)
                    if (d != e) {
                        hop.add(v(u, d, e), ms_hop(d, e));
                        latency_.add(v(u, d, e), ms_hop(d, e));
                    }
            resources_.push_back(hop);
        }
        detail::Row in, out;
        for (int d = 0; d < D; ++d) {
            in.add(z(0, d), ms_in(d));
            out.add(z(U - 1, d), ms_out(d));
        }
        resources_.push_back(in);
        resources_.push_back(out);
    }

    Placement extract() const override {
        Placement p;
        for (std::int64_t u = 0; u < units_.size(); ++u) {
            int dev = -1;
            for (int d = 0; d < D_; ++d)
                if (glp_mip_col_val(prob_.get(), z(u, d)) > 0.5) dev = d;
            const auto b0 = units_.begin[static_cast<std::size_t>(u)], b1 = units_.begin[static_cast<std::size_t>(u + 1)];
            if (!p.stages.empty() && p.stages.back().device == dev) p.stages.back().end = b1;
            else p.stages.push_back({dev, b0, b1});
        }
        return p;
    }

    void set_columns(const Placement& p, std::vector<double>& x) const override {
        auto set = [&](int c, double value) { x[static_cast<std::size_t>(c)] = value; };
        for (std::int64_t u = 0; u < units_.size(); ++u) {
            const auto b = units_.begin[static_cast<std::size_t>(u)];
            int dev = -1, next = -1;
            for (const auto& st : p.stages) {
                if (b >= st.begin && b < st.end) dev = st.device;
                if (u + 1 < units_.size() && units_.begin[static_cast<std::size_t>(u + 1)] >= st.begin &&
                    units_.begin[static_cast<std::size_t>(u + 1)] < st.end)
                    next = st.device;
            }
            if (dev >= 0) set(z(u, dev), 1);
            if (dev >= 0 && next >= 0) set(v(u, dev, next), 1);
        }
    }

    Units units_;
    int z0_ = 0, v0_ = 0;  // first column of each group
};

}  // namespace tandem::milp

#endif  // TANDEM_HAS_GLPK
