// The placement solver: which device runs which blocks, in which order.
//
// solve_placement() solves the MILP of milp.hpp with GLPK for the chosen
// objective (latency of one request, or time per token with K requests in
// flight), never returns anything worse than the baselines of baselines.hpp
// (the best one that fits is the fallback if GLPK finds nothing in time), and
// explains its choice in sentences: which devices it left out and why, what
// made it pick its order, what the bottleneck is, where memory binds.
//
// When no assignment satisfies memory it throws InsufficientMemoryError with
// the smallest total shortfall and where it falls (from a second, "elastic"
// MILP that lets each device overflow and minimises the overflow).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/placement/baselines.hpp"
#include "tandem/placement/cost_model.hpp"
#include "tandem/placement/milp.hpp"
#include "tandem/placement/milp_compact.hpp"
#include "tandem/placement/milp_flow.hpp"

namespace tandem {

/// No placement fits in memory. missing_bytes(): the least total extra memory
/// that would make one fit; shortfall()[d]: how much of it device d lacks in
/// that placement.
class InsufficientMemoryError : public PlacementError {
public:
    InsufficientMemoryError(const std::string& msg, std::uint64_t missing, std::vector<std::uint64_t> shortfall)
        : PlacementError(msg), missing_(missing), shortfall_(std::move(shortfall)) {}
    std::uint64_t missing_bytes() const noexcept { return missing_; }
    const std::vector<std::uint64_t>& shortfall() const noexcept { return shortfall_; }

private:
    std::uint64_t missing_;
    std::vector<std::uint64_t> shortfall_;
};

struct SolverOptions {
    Objective objective = Objective::Latency;
    double time_limit_s = 10;          // for the main solve (GLPK's tm_lim)
    double mip_gap = 0;                // relative gap at which GLPK may stop; 0: prove optimality
    bool layer_granularity = false;    // cut only between layers (coarser plans)
    milp::Formulation formulation = milp::Formulation::Auto;  // see milp.hpp
    bool tie_break = true;             // throughput: among plans with the best time, the lowest latency
    bool explain = true;               // counterfactual solves for the explanation (one per left-out device + order)
    double explain_time_limit_s = 2;   // per counterfactual solve
};

struct PlacementResult {
    Placement placement;
    Evaluation evaluation;
    Objective objective = Objective::Latency;
    bool optimal = false;              // GLPK proved it optimal (within mip_gap)
    std::string source;                // "GLPK", or the baseline it fell back to
    double solve_seconds = 0;          // main solve (+ tie-break), explanation excluded
    int milp_columns = 0, milp_rows = 0;
    std::string formulation;           // "compact" or "flow"
    std::vector<std::string> explanation;

    double value() const noexcept { return evaluation.value(objective); }
};

namespace detail {

inline double per_layer_s(const CostModel& m, int d) {
    const auto& t = m.options().step_tokens == 1 ? m.cluster().device(d).decode : m.cluster().device(d).prefill;
    return t[CostKind::Attention] + t[CostKind::Ffn];
}

inline std::string link_words(const Link& l) {
    char buf[96];
    if (std::isinf(l.bytes_per_s)) std::snprintf(buf, sizeof buf, "local, %.3g ms", l.latency_ms());
    else std::snprintf(buf, sizeof buf, "%.3g Mbit/s, %.3g ms", l.mbps(), l.latency_ms());
    return buf;
}

inline std::string stage_words(const CostModel& m, const PlacedStage& s) {
    return m.cluster().device(s.device).name + " [blocks " + std::to_string(s.begin) + ":" + std::to_string(s.end) + "]";
}

inline std::string pipeline_words(const CostModel& m, const Placement& p) {
    std::string out = "coordinator";
    for (const auto& s : p.stages) out += " -> " + stage_words(m, s);
    return out + " -> coordinator";
}

inline std::string order_words(const CostModel& m, const std::vector<int>& order) {
    std::string out;
    for (const int d : order) out += (out.empty() ? "" : " -> ") + m.cluster().device(d).name;
    return out;
}

inline std::string signed_ms(double s) {
    std::string out = s >= 0 ? "+" : "-";  // (not "+" + string: GCC 12's -Wrestrict false positive)
    out += format_ms(std::abs(s));
    return out;
}

/// The hops of a placement as (from node, to node, seconds per token), the
/// coordinator's included.
struct Hop {
    int from, to;
    double s;
};
inline std::vector<Hop> hops_of(const CostModel& m, const Placement& p) {
    std::vector<Hop> h;
    h.push_back({Cluster::kCoordinator, p.stages.front().device, m.input_s(p.stages.front().device)});
    for (std::size_t i = 0; i + 1 < p.stages.size(); ++i)
        h.push_back({p.stages[i].device, p.stages[i + 1].device, m.hop_s(p.stages[i].device, p.stages[i + 1].device)});
    h.push_back({p.stages.back().device, Cluster::kCoordinator, m.output_s(p.stages.back().device)});
    return h;
}

}  // namespace detail

#if defined(TANDEM_HAS_GLPK)

namespace detail {

inline milp::Mode mode_of(Objective o) { return o == Objective::Latency ? milp::Mode::Latency : milp::Mode::Throughput; }

/// The MILP in formulation f (Auto: compact for llama-shaped models).
inline std::unique_ptr<milp::Problem> make_problem(const CostModel& m, milp::Formulation f, bool layers, milp::Mode mode,
                                                   const milp::Restriction& r = {},
                                                   double cap_ms = std::numeric_limits<double>::infinity(),
                                                   std::vector<std::uint64_t> margin = {}) {
    if (f == milp::Formulation::Auto) f = milp::regular_shape(m) ? milp::Formulation::Compact : milp::Formulation::Flow;
    if (f == milp::Formulation::Compact)
        return std::make_unique<milp::CompactProblem>(m, layers, mode, r, cap_ms, std::move(margin));
    return std::make_unique<milp::FlowProblem>(m, layers, mode, r, cap_ms, std::move(margin));
}

/// Auto: compact for llama-shaped models whose blocks of a kind are alike;
/// flow for other shapes, and for mixed block sizes when it stays small
/// (exact memory); compact, counting each kind at its largest, beyond that.
inline milp::Formulation choose_formulation(const CostModel& m, const SolverOptions& opt) {
    if (opt.formulation != milp::Formulation::Auto) return opt.formulation;
    const auto reg = milp::regular_shape(m);
    if (!reg) return milp::Formulation::Flow;
    if (reg->exact) return milp::Formulation::Compact;
    const auto units = opt.layer_granularity ? reg->n_layers + 1 : m.n_blocks();
    const auto d = static_cast<std::int64_t>(m.n_devices());
    return units * d * d <= 20000 ? milp::Formulation::Flow : milp::Formulation::Compact;
}

/// Solves with restrictions; the evaluation of the result if one was found.
inline std::optional<std::pair<Placement, Evaluation>> solve_restricted(const CostModel& m, const SolverOptions& opt,
                                                                        const milp::Restriction& r) {
    const auto f = choose_formulation(m, opt);
    auto s = make_problem(m, f, opt.layer_granularity, mode_of(opt.objective), r)->solve(opt.explain_time_limit_s, 0);
    if (s.status == milp::Solution::Status::Failed)
        s = make_problem(m, f, opt.layer_granularity, mode_of(opt.objective), r)
                ->solve(opt.explain_time_limit_s, 0, nullptr, true);
    if (!s.found()) return std::nullopt;
    auto e = m.evaluate(s.placement);
    return std::pair{s.placement, e};
}

/// When the MILP finds nothing that fits: the plan with the least total
/// overflow. If that overflow is zero (a plan within GLPK's tolerance of a
/// device's memory, passed over by the main solve), it is returned; otherwise
/// InsufficientMemoryError says how much is missing, and where.
inline Placement elastic_or_throw(const CostModel& m, const SolverOptions& opt) {
    // The flow formulation: exact memory per block, whatever the shape.
    const auto s = milp::FlowProblem(m, opt.layer_granularity, milp::Mode::Elastic).solve(opt.time_limit_s, 0);
    const std::uint64_t need = m.total_memory_needed();
    std::uint64_t have = 0;
    for (int d = 0; d < m.n_devices(); ++d) have += m.memory_available(d);
    std::vector<std::uint64_t> shortfall(static_cast<std::size_t>(m.n_devices()), 0);
    std::uint64_t missing = need > have ? need - have : 0;
    if (s.found()) {
        // Exact overflow of the elastic placement, in whole bytes.
        const auto e = m.evaluate(s.placement);
        missing = 0;
        for (int d = 0; d < m.n_devices(); ++d) {
            const auto used = e.memory_used[static_cast<std::size_t>(d)], avail = e.memory_available[static_cast<std::size_t>(d)];
            shortfall[static_cast<std::size_t>(d)] = used > avail ? used - avail : 0;
            missing += shortfall[static_cast<std::size_t>(d)];
        }
        if (e.fits) return s.placement;
    }
    std::string msg = "the model does not fit: it needs " + format_bytes(need) + " (weights " +
                      format_bytes(m.shape().total_weight_bytes()) + " + KV cache " + format_bytes(m.total_kv_bytes()) +
                      " for " + std::to_string(m.options().context) + " positions x " +
                      std::to_string(m.options().sequences) + " sequences) and the devices hold " + format_bytes(have) +
                      "; at least " + std::to_string(missing) + " bytes (" + format_bytes(missing) + ") are missing";
    std::string where;
    for (int d = 0; d < m.n_devices(); ++d)
        if (shortfall[static_cast<std::size_t>(d)] > 0)
            where += (where.empty() ? "" : ", ") + m.cluster().device(d).name + " " +
                     std::to_string(shortfall[static_cast<std::size_t>(d)]) + " bytes (" +
                     format_bytes(shortfall[static_cast<std::size_t>(d)]) + ")";
    if (!where.empty()) msg += ": the closest placement lacks " + where;
    if (need > have) msg += "; even pooled, the devices are " + format_bytes(need - have) + " short";
    throw InsufficientMemoryError(msg, missing, std::move(shortfall));
}

inline void explain(const CostModel& m, const SolverOptions& opt, PlacementResult& r) {
    auto& out = r.explanation;
    const auto& e = r.evaluation;
    const auto o = opt.objective;
    char buf[256];
    std::snprintf(buf, sizeof buf, "; %s per token with %lld requests in flight", format_ms(e.throughput_s).c_str(),
                  static_cast<long long>(e.in_flight));
    out.push_back("plan: " + pipeline_words(m, r.placement) + ": " + format_ms(e.latency_s) + " per token for one request" +
                  (e.in_flight > 1 ? std::string(buf) : std::string()) + " (objective: " + objective_name(o) + ")");

    // Devices left out, and why.
    std::vector<int> used;
    for (const auto& s : r.placement.stages) used.push_back(s.device);
    double fastest_used = std::numeric_limits<double>::infinity(), slowest_used = 0, worst_hop = 0;
    for (const int d : used) {
        fastest_used = std::min(fastest_used, per_layer_s(m, d));
        slowest_used = std::max(slowest_used, per_layer_s(m, d));
    }
    const auto hops = hops_of(m, r.placement);
    for (const auto& h : hops) worst_hop = std::max(worst_hop, h.s);
    std::uint64_t smallest_block = std::numeric_limits<std::uint64_t>::max();
    for (std::int64_t b = 0; b < m.n_blocks(); ++b) smallest_block = std::min(smallest_block, m.block_memory(b));
    for (int d = 0; d < m.n_devices(); ++d) {
        if (r.placement.uses(d)) continue;
        const auto& name = m.cluster().device(d).name;
        if (m.memory_available(d) < smallest_block) {
            out.push_back("left out " + name + ": its memory (" + format_bytes(m.memory_available(d)) +
                          ") cannot hold even the smallest block (" + format_bytes(smallest_block) + ")");
            continue;
        }
        // The cheapest way to splice it into the chosen pipeline: the extra link time.
        double splice = std::numeric_limits<double>::infinity();
        for (const auto& h : hops) {
            const double in = h.from == Cluster::kCoordinator ? m.input_s(d) : m.hop_s(h.from, d);
            const double outs = h.to == Cluster::kCoordinator ? m.output_s(d) : m.hop_s(d, h.to);
            splice = std::min(splice, in + outs - h.s);
        }
        const double layer = per_layer_s(m, d);
        const bool slow = layer > slowest_used;
        const bool remote = splice > slowest_used;
        const char* why = slow && remote ? "too slow and too poorly connected"
                          : slow         ? "too slow"
                          : remote       ? "too poorly connected"
                                         : "no gain";
        std::string line = "left out " + name + " (" + why + "): a layer takes " + format_ms(layer) +
                           " there vs " + format_ms(fastest_used) +
                           (slowest_used > fastest_used ? " to " + format_ms(slowest_used) : std::string()) +
                           " on the devices used; splicing it into the pipeline adds " + format_ms(splice) +
                           " of link time per token";
        if (opt.explain) {
            milp::Restriction forced;
            forced.must_use = d;
            if (const auto alt = solve_restricted(m, opt, forced)) {
                line += "; the best plan that uses it takes " + format_ms(alt->second.value(o)) + " (" +
                        signed_ms(alt->second.value(o) - e.value(o)) + ")";
            } else {
                line += "; no plan that uses it was found within memory";
            }
        }
        out.push_back(line);
    }

    // The order, when it is not the listed one.
    if (used.size() >= 2) {
        std::vector<int> listed = used;
        std::sort(listed.begin(), listed.end());
        if (listed != used) {
            std::string line = "order " + order_words(m, used) + " rather than the listed " + order_words(m, listed);
            if (opt.explain) {
                milp::Restriction fixed;
                fixed.order = listed;
                if (const auto alt = solve_restricted(m, opt, fixed)) {
                    line += ": the listed order would take " + format_ms(alt->second.value(o)) + " (" +
                            signed_ms(alt->second.value(o) - e.value(o)) + ")";
                    // The costliest hop of that order that the chosen plan avoids.
                    const auto alt_hops = hops_of(m, alt->first);
                    const Hop* worst = nullptr;
                    for (const auto& h : alt_hops) {
                        bool shared = false;
                        for (const auto& c : hops) shared = shared || (c.from == h.from && c.to == h.to);
                        if (!shared && (!worst || h.s > worst->s)) worst = &h;
                    }
                    if (worst)
                        line += ", mostly for its hop " + m.cluster().node_name(worst->from) + " -> " +
                                m.cluster().node_name(worst->to) + " (" +
                                link_words(m.cluster().link(worst->from, worst->to)) + ": " + format_ms(worst->s) +
                                " per token)";
                } else {
                    line += ": no plan in the listed order was found within memory";
                }
            }
            out.push_back(line);
        }
    }
    std::string hop_line = "hops:";
    for (const auto& h : hops)
        hop_line += " " + m.cluster().node_name(h.from) + " -> " + m.cluster().node_name(h.to) + " " + format_ms(h.s) +
                    " (" + link_words(m.cluster().link(h.from, h.to)) + ");";
    hop_line.pop_back();
    out.push_back(hop_line);

    // Where the time goes (latency), or what limits the rate (throughput).
    double compute = 0, links = 0;
    int slowest = 0;
    for (std::size_t i = 0; i < e.stages.size(); ++i) {
        compute += e.stages[i].compute_s;
        if (e.stages[i].compute_s > e.stages[static_cast<std::size_t>(slowest)].compute_s) slowest = static_cast<int>(i);
    }
    for (const auto& h : hops) links += h.s;
    const Hop* worst = &hops.front();
    for (const auto& h : hops)
        if (h.s > worst->s) worst = &h;
    auto pct = [&](double x) { return std::to_string(static_cast<int>(std::lround(100 * x / e.latency_s))) + "%"; };
    if (o == Objective::Latency) {
        std::string line = "time per token: compute " + format_ms(compute) + " (" + pct(compute) + "), links " +
                           format_ms(links) + " (" + pct(links) + "); the largest part is ";
        const auto& s = e.stages[static_cast<std::size_t>(slowest)];
        if (s.compute_s >= worst->s)
            line += "stage " + std::to_string(slowest) + ", " +
                    stage_words(m, r.placement.stages[static_cast<std::size_t>(slowest)]) + ", computing " +
                    format_ms(s.compute_s);
        else
            line += "the hop " + m.cluster().node_name(worst->from) + " -> " + m.cluster().node_name(worst->to) +
                    ", " + format_ms(worst->s) + " (" + link_words(m.cluster().link(worst->from, worst->to)) + ")";
        out.push_back(line);
    } else if (e.bottleneck == Bottleneck::Stage) {
        const auto& s = e.stages[static_cast<std::size_t>(e.bottleneck_index)];
        out.push_back("bottleneck: stage " + std::to_string(e.bottleneck_index) + ", " +
                      stage_words(m, r.placement.stages[static_cast<std::size_t>(e.bottleneck_index)]) + ", computes " +
                      format_ms(s.compute_s) + " per token");
    } else if (e.bottleneck == Bottleneck::Link) {
        const int i = e.bottleneck_index;
        const int from = i < 0 ? Cluster::kCoordinator : r.placement.stages[static_cast<std::size_t>(i)].device;
        const int to = i < 0 ? r.placement.stages.front().device
                       : static_cast<std::size_t>(i) + 1 < r.placement.stages.size()
                           ? r.placement.stages[static_cast<std::size_t>(i) + 1].device
                           : Cluster::kCoordinator;
        out.push_back("bottleneck: the hop " + m.cluster().node_name(from) + " -> " + m.cluster().node_name(to) + ", " +
                      format_ms(i < 0 ? e.receive_s : e.stages[static_cast<std::size_t>(i)].send_s) + " per token (" +
                      link_words(m.cluster().link(from, to)) + ")");
    } else {
        out.push_back("bottleneck: too few requests in flight: " + std::to_string(e.in_flight) +
                      " cannot keep the pipeline busy (latency / K = " + format_ms(e.throughput_s) +
                      " > slowest stage or hop " + format_ms(e.cycle_s) + ")");
    }

    // Where memory binds.
    for (const int d : used) {
        const auto u = e.memory_used[static_cast<std::size_t>(d)], a = e.memory_available[static_cast<std::size_t>(d)];
        if (a > 0 && static_cast<double>(u) >= 0.9 * static_cast<double>(a))
            out.push_back("memory: " + m.cluster().device(d).name + " holds " + format_bytes(u) + " of " +
                          format_bytes(a) + ", which limits its share");
    }
    out.push_back("solver: " + r.source + (r.optimal ? " (proven optimal" : " (not proven optimal") + ", " +
                  format_ms(r.solve_seconds) + ", " + r.formulation + " formulation, " +
                  std::to_string(r.milp_columns) + " columns x " + std::to_string(r.milp_rows) + " rows, cuts " +
                  (opt.layer_granularity ? "between layers)" : "between sub-layer blocks)"));
}

}  // namespace detail

/// The best placement under `m` for `opt.objective`. Throws
/// InsufficientMemoryError when nothing fits, PlacementError when GLPK found
/// nothing in the time limit and no baseline fits either.
inline PlacementResult solve_placement(const CostModel& m, const SolverOptions& opt = {}) {
    if (!(opt.time_limit_s > 0)) throw ConfigError("solver time limit must be positive");
    const auto t0 = std::chrono::steady_clock::now();
    const auto o = opt.objective;

    // Baselines: the fallback, and a bound on T for the throughput MILP.
    std::optional<std::pair<std::string, Evaluation>> best_base;
    std::optional<Placement> best_base_placement;
    for (auto& b : baselines(m, o))
        if (b.evaluation && b.evaluation->fits && (!best_base || b.evaluation->value(o) < best_base->second.value(o))) {
            best_base = {b.name, *b.evaluation};
            best_base_placement = b.placement;
        }
    const double cap_ms = best_base ? best_base->second.value(o) * 1e3 * (1 + 1e-9) + 1e-9
                                    : std::numeric_limits<double>::infinity();
    bool exact_memory = true;

    PlacementResult r;
    r.objective = o;
    auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    auto formulation = detail::choose_formulation(m, opt);
    // GLPK accepts a memory row that overflows by its feasibility tolerance
    // (1e-7 of the largest device's memory: ~430 bytes of 4 GiB). Every plan
    // is checked exactly; if one overflows, that device's limit is lowered by
    // the overflow plus that tolerance and the MILP solved again. (So a plan
    // within ~1e-7 of a device's memory may be passed over.)
    std::vector<std::uint64_t> margin(static_cast<std::size_t>(m.n_devices()), 0);
    // The best baseline is GLPK's first incumbent. (Solving at layer
    // granularity first to seed the sub-layer solve was tried: it saves
    // about what it costs, so it is not done.)
    const std::optional<Placement> start = best_base_placement;
    double scale = 1;
    for (int d = 0; d < m.n_devices(); ++d) scale = std::max(scale, static_cast<double>(m.memory_available(d)));
    const auto tolerance_bytes = static_cast<std::uint64_t>(std::ceil(2e-7 * scale)) + 1;
    milp::Solution sol;
    bool have = false, overflowed = false, other_branching = false;
    for (int attempt = 0; attempt < 6 && !have; ++attempt) {
        const double remaining = std::max(0.05, opt.time_limit_s - elapsed());
        const auto prob = detail::make_problem(
            m, formulation, opt.layer_granularity, detail::mode_of(o), {},
            o == Objective::Throughput ? cap_ms : std::numeric_limits<double>::infinity(), margin);
        r.milp_columns = prob->n_columns();
        r.milp_rows = prob->n_rows();
        r.formulation = milp::formulation_name(prob->formulation());
        exact_memory = prob->exact_memory();
        sol = prob->solve(remaining, opt.mip_gap, start ? &*start : nullptr, other_branching);
        if (sol.found()) {
            const auto e = m.evaluate(sol.placement);
            if (e.fits) {
                r.placement = sol.placement;
                r.evaluation = e;
                r.optimal = sol.status == milp::Solution::Status::Optimal;
                r.source = "GLPK";
                have = true;
            } else {
                overflowed = true;
                for (int d = 0; d < m.n_devices(); ++d) {
                    const auto u = e.memory_used[static_cast<std::size_t>(d)], a = e.memory_available[static_cast<std::size_t>(d)];
                    if (u > a) margin[static_cast<std::size_t>(d)] += u - a + tolerance_bytes;
                }
            }
        } else if (sol.status == milp::Solution::Status::Failed && !other_branching) {
            other_branching = true;  // GLPK failed inside; again with the other branching rule
        } else if (sol.status == milp::Solution::Status::Infeasible && !exact_memory) {
            formulation = milp::Formulation::Flow;  // the conservative form found nothing: try the exact one
        } else {
            break;
        }
    }
    const bool nothing_fits = !have && (sol.status == milp::Solution::Status::Infeasible || overflowed);
    if (nothing_fits && !best_base) {
        r.placement = detail::elastic_or_throw(m, opt);
        r.evaluation = m.evaluate(r.placement);
        r.optimal = false;
        r.source = "GLPK (the least-overflow plan, which fits exactly)";
        have = true;
    }
    if (have && o == Objective::Throughput && opt.tie_break && m.options().in_flight > 1) {
        // Second stage: the lowest latency among plans as fast as the optimum.
        const double remaining = std::max(0.05, opt.time_limit_s - elapsed());
        const auto tie = detail::make_problem(m, formulation, opt.layer_granularity, milp::Mode::TieBreak, {},
                                              r.evaluation.throughput_s * 1e3 * (1 + 1e-9) + 1e-9, margin);
        const auto s2 = tie->solve(remaining, opt.mip_gap, &r.placement, other_branching);
        if (s2.found()) {
            const auto e2 = m.evaluate(s2.placement);
            if (e2.fits && e2.throughput_s <= r.evaluation.throughput_s * (1 + 1e-9) &&
                e2.latency_s < r.evaluation.latency_s) {
                r.placement = s2.placement;
                r.evaluation = e2;
            }
        }
    }
    // Never worse than a baseline (GLPK may stop at its time limit).
    if (best_base && (!have || best_base->second.value(o) < r.evaluation.value(o) * (1 - 1e-9))) {
        r.placement = *best_base_placement;
        r.evaluation = best_base->second;
        r.optimal = false;
        r.source = best_base->first + " (GLPK found nothing better in " + format_ms(opt.time_limit_s) + ")";
        have = true;
    }
    if (!have) {
        if (sol.status == milp::Solution::Status::Failed)
            throw PlacementError("GLPK failed internally (twice) and no baseline fits in memory");
        throw PlacementError("GLPK found no placement within " + format_ms(opt.time_limit_s) +
                             " and no baseline fits in memory; raise the time limit");
    }
    r.solve_seconds = elapsed();
    detail::explain(m, opt, r);
    if (!exact_memory && r.formulation == "compact")
        r.explanation.push_back("memory: blocks of one kind differ in size; each was counted at the largest, "
                                "so the plan may leave some memory unused");
    return r;
}

#else  // !TANDEM_HAS_GLPK

inline PlacementResult solve_placement(const CostModel&, const SolverOptions& = {}) {
    throw UnsupportedError("tandem was built without GLPK (TANDEM_WITH_GLPK=OFF): the placement solver is unavailable");
}

#endif

}  // namespace tandem
