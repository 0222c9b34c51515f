// `tandem run --plan auto`: profile the workers live (runtime/live_profile.hpp),
// solve the placement for this run (its requests in flight, its context),
// print the plan table, and hand back the Plan the pipeline runs with; and
// the per-worker emulation flags of --local-workers that make such a plan
// worth having on one machine.
#pragma once

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <tandem/placement/solver.hpp>
#include <tandem/runtime/live_profile.hpp>
#include <tandem/runtime/placement_plan.hpp>

#include "args.hpp"
#include "live_plan.hpp"
#include "net_common.hpp"
#include "plan_table.hpp"

namespace tandem::cli {

inline constexpr const char* kAutoPlanHelp = R"(Placement (--plan auto):
  --plan auto           profile the workers and their links, solve the placement (GLPK),
                        print the plan, and run with it (instead of --split)
  --objective O         latency (default: one request) or throughput (--in-flight requests)
%s  --local-slowdown LIST compute slowdown of each local worker, e.g. 1,1,4 (one value: all)
  --local-memory LIST   memory limit of each local worker, e.g. 48M,48M,1G (one value: all)
)";

/// The extra `tandem worker` flags of each of `n` local workers from
/// --local-slowdown and --local-memory.
inline std::vector<std::vector<std::string>> local_worker_flags(const Args& args, int n) {
    std::vector<std::vector<std::string>> each(static_cast<std::size_t>(std::max(n, 0)));
    auto spread = [&](const char* flag, const char* worker_flag) {
        const auto v = split_list(args.str({flag}));
        if (v.empty()) return;
        if (v.size() != 1 && static_cast<int>(v.size()) != n)
            throw std::runtime_error(std::string("--") + flag + " needs one value or " + std::to_string(n));
        for (std::size_t i = 0; i < each.size(); ++i) {
            each[i].push_back(worker_flag);
            each[i].push_back(v[v.size() == 1 ? 0 : i]);
        }
    };
    spread("local-slowdown", "--slowdown");
    spread("local-memory", "--memory-limit");
    spread("local-schedule", "--slowdown-schedule");
    spread("local-noise", "--slowdown-noise");
    return each;
}

struct AutoPlanOptions {
    Objective objective = Objective::Latency;
    std::int64_t in_flight = 1;
    std::int64_t context = 0;  // positions a sequence will use (0: the model's context)
    bool quiet = false;
};

/// The objective named by --objective (latency or throughput).
inline Objective objective_from_args(const Args& args) {
    const auto s = args.str({"objective"}, "latency");
    if (s != "latency" && s != "throughput")
        throw std::runtime_error("--objective must be latency or throughput, not '" + s + "'");
    return s == "latency" ? Objective::Latency : Objective::Throughput;
}

inline CostOptions auto_cost_options(const Model& model, const AutoPlanOptions& opt) {
    CostOptions copt;
    copt.in_flight = opt.in_flight;
    copt.sequences = opt.in_flight;
    copt.context = opt.context > 0 ? std::min(opt.context, model.config().context_length) : 0;
    return copt;
}

/// Profiles `endpoints` (workers[i] becomes device id i + 1), solves, prints
/// what was measured and the plan (to stderr), and returns the plan; the
/// measured cluster goes to `profiled` when given (for replan_with()).
inline Plan auto_plan(const Model& model, const std::vector<WorkerEndpoint>& endpoints, LiveProfileOptions live,
                      const AutoPlanOptions& opt, Cluster* profiled = nullptr) {
    if (opt.quiet) live.log = nullptr;
    const auto lp = profile_live(model, endpoints, live);
    if (profiled) *profiled = lp.cluster;
    const auto& c = model.config();
    const CostModel m(model_shape(model), lp.cluster, auto_cost_options(model, opt));
    SolverOptions sopt;
    sopt.objective = opt.objective;
    const auto r = solve_placement(m, sopt);
    if (!opt.quiet) {
        print_live_profile(stderr, lp);
        print_plan_table(stderr,
                         {.model_name = model.file().name(), .architecture = c.architecture, .n_layers = c.n_layers,
                          .objective = opt.objective, .in_flight = opt.in_flight, .layers = false},
                         m, r);
        std::fputc('\n', stderr);
    }
    std::vector<DeviceId> ids;
    for (std::size_t i = 0; i < endpoints.size(); ++i) ids.push_back(static_cast<DeviceId>(i + 1));
    return to_plan(r.placement, ids);
}

/// A failover's re-plan for --plan auto: the solver over the surviving
/// devices' measured profiles (sub_cluster). A device that joined after the
/// profiling has the profile the pipeline measured when it came to stand by;
/// its links, never probed, are taken to be as slow as the slowest measured
/// link. A device with no profile at all: the survivors get an even split,
/// as without --plan auto.
inline std::function<Plan(const std::vector<DeviceId>&, const std::map<DeviceId, DeviceProfile>&)> replan_with(
    std::shared_ptr<const Model> model, Cluster cluster, AutoPlanOptions opt) {
    return [model = std::move(model), cluster = std::move(cluster), opt](const std::vector<DeviceId>& alive,
                                                                         const std::map<DeviceId, DeviceProfile>& joined) {
        for (const auto d : alive)
            if (static_cast<int>(d) > cluster.size() && !joined.count(d)) return Plan::even(model->config(), alive);
        const CostModel m(model_shape(*model), with_joined(cluster, alive, joined), auto_cost_options(*model, opt));
        SolverOptions sopt;
        sopt.objective = opt.objective;
        sopt.explain = false;
        return to_plan(solve_placement(m, sopt).placement, alive);
    };
}

}  // namespace tandem::cli
