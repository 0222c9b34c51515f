// Placement solve time at scale: Llama-3-70B's shape (80 layers, dim 8192,
// 64 heads / 8 KV heads, FFN 28672, vocabulary 128256, Q4_0 weights) on 8
// heterogeneous devices, at sub-layer granularity (162 blocks) and layer
// granularity (82 units), for both objectives. Baseline, in the same run: the
// even split (what most prototypes do) -- how long it takes to compute, and
// how much slower its plan is predicted to be than GLPK's.
//
//   bench-placement-bench [--instances N] [--runs R] [--flow] [--json FILE]
//
// --flow also times the general flow formulation (exact for any block sizes;
// seconds per solve at this size), which the compact one replaces here.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <tandem/placement/solver.hpp>

using namespace tandem;

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

ModelShape llama3_70b() {
    // Published hyper-parameters of Meta-Llama-3-70B; Q4_0 is 18 bytes per 32 weights.
    return ModelShape::llama("Llama-3-70B-Q4_0", 80, 8192, 64, 8, 28672, 128256, 8192, 18.0 / 32);
}

// Eight devices from phone to laptop: decode is memory-bound, so a block takes
// its weight bytes over the device's memory bandwidth (10-60 GB/s); memory
// 6-16 GiB each (the model needs ~40 GiB with its KV cache); Wi-Fi to
// Ethernet links, every pair different.
CostModel instance(std::uint64_t seed, Objective o) {
    const auto shape = llama3_70b();
    std::mt19937_64 rng(seed);
    auto uni = [&](double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); };
    std::vector<DeviceProfile> devs;
    for (int d = 0; d < 8; ++d) {
        DeviceProfile p;
        p.name = "dev" + std::to_string(d);
        const double bw = uni(10e9, 60e9);  // bytes/s
        for (std::size_t k = 0; k < kCostKinds; ++k) {
            std::uint64_t bytes = 0;
            for (const auto& b : shape.blocks)
                if (static_cast<std::size_t>(b.kind) == k) bytes = std::max(bytes, b.weight_bytes);
            p.decode.s[k] = static_cast<double>(bytes) / bw;
            p.prefill.s[k] = p.decode.s[k] / 8;
        }
        p.decode[CostKind::Embedding] = 2e-6;  // a row lookup, not the table
        p.memory_bytes = static_cast<std::uint64_t>(uni(6, 16) * (1ull << 30));
        devs.push_back(p);
    }
    Cluster c(devs);
    for (int a = Cluster::kCoordinator; a < 8; ++a)
        for (int b = Cluster::kCoordinator; b < 8; ++b)
            if (a != b) c.set_link(a, b, Link::from_ms_mbps(uni(1, 10), uni(50, 1000)));
    CostOptions opt;
    opt.context = 4096;
    opt.in_flight = o == Objective::Throughput ? 8 : 1;
    opt.sequences = opt.in_flight;
    return CostModel(shape, c, opt);
}

struct Row {
    std::string granularity, objective, formulation;
    std::int64_t units = 0;
    int columns = 0, rows = 0;
    double solve_median_s = 0, solve_max_s = 0, solve_cpu_s = 0;
    double even_compute_s = 0;
    double ours_ms = 0, even_ms = 0;  // predicted, median over instances
    int optimal = 0, instances = 0;
};

}  // namespace

int main(int argc, char** argv) {
    int n_instances = 5, runs = 7;
    bool flow = false;
    std::string json_path;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--instances" && i + 1 < argc) n_instances = std::max(1, std::atoi(argv[++i]));
        else if (a == "--runs" && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
        else if (a == "--flow") flow = true;
        else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
        else {
            std::fprintf(stderr, "usage: bench-placement-bench [--instances N] [--runs R] [--flow] [--json FILE]\n");
            return 2;
        }
    }
    const auto shape = llama3_70b();
    std::printf("placement: %s (%lld blocks, %s of weights), 8 devices, %d instances x %d runs, median\n\n",
                shape.id.c_str(), static_cast<long long>(shape.n_blocks()), format_bytes(shape.total_weight_bytes()).c_str(),
                n_instances, runs);
    std::printf("%-10s %-11s %-8s %6s %11s %11s %10s %10s %12s %9s %11s %11s %7s\n", "cuts", "objective", "form", "units",
                "cols x rows", "GLPK solve", "worst", "cpu", "even split", "ratio", "ours ms/tok", "even ms/tok", "gain");

    std::vector<Row> table;
    for (const bool layers : {false, true})
        for (const auto o : {Objective::Latency, Objective::Throughput})
            for (const auto f : {milp::Formulation::Compact, milp::Formulation::Flow}) {
                if (f == milp::Formulation::Flow && !flow) continue;
                Row row;
                row.granularity = layers ? "layers" : "sub-layer";
                row.objective = objective_name(o);
                row.formulation = milp::formulation_name(f);
                row.units = layers ? shape.n_layers() + 2 : shape.n_blocks();
                std::vector<double> solves, cpus, evens, ours, even_ms;
                for (int inst = 0; inst < n_instances; ++inst) {
                    const auto m = instance(1000 + static_cast<std::uint64_t>(inst), o);
                    SolverOptions opt;
                    opt.objective = o;
                    opt.layer_granularity = layers;
                    opt.formulation = f;
                    opt.explain = false;
                    opt.time_limit_s = f == milp::Formulation::Flow ? 30 : 10;
                    const int r_runs = f == milp::Formulation::Flow ? 1 : runs;
                    std::vector<double> t_solve, t_cpu, t_even;
                    PlacementResult res;
                    Placement even;
                    for (int r = 0; r < r_runs; ++r) {
                        const auto c0 = std::clock();
                        auto t0 = std::chrono::steady_clock::now();
                        res = solve_placement(m, opt);
                        auto t1 = std::chrono::steady_clock::now();
                        t_cpu.push_back(static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
                        even = even_split(m);
                        const auto ev = m.evaluate(even);  // what choosing it costs: split + evaluate
                        auto t2 = std::chrono::steady_clock::now();
                        (void)ev;
                        t_solve.push_back(std::chrono::duration<double>(t1 - t0).count());
                        t_even.push_back(std::chrono::duration<double>(t2 - t1).count());
                    }
                    solves.push_back(median(t_solve));
                    cpus.push_back(median(t_cpu));
                    evens.push_back(median(t_even));
                    ours.push_back(res.value() * 1e3);
                    even_ms.push_back(m.evaluate(even).value(o) * 1e3);
                    row.optimal += res.optimal;
                    row.columns = res.milp_columns;
                    row.rows = res.milp_rows;
                }
                row.instances = n_instances;
                row.solve_median_s = median(solves);
                row.solve_max_s = *std::max_element(solves.begin(), solves.end());
                row.solve_cpu_s = median(cpus);
                row.even_compute_s = median(evens);
                row.ours_ms = median(ours);
                row.even_ms = median(even_ms);
                std::vector<double> gains;
                for (std::size_t i = 0; i < ours.size(); ++i) gains.push_back(even_ms[i] / ours[i]);
                std::printf("%-10s %-11s %-8s %6lld %5d x %-5d %9.1f ms %7.1f ms %7.1f ms %9.3f ms %8.0fx %11.1f %11.1f %6.2fx%s\n",
                            row.granularity.c_str(), row.objective.c_str(), row.formulation.c_str(),
                            static_cast<long long>(row.units), row.columns, row.rows, row.solve_median_s * 1e3,
                            row.solve_max_s * 1e3, row.solve_cpu_s * 1e3, row.even_compute_s * 1e3, row.solve_median_s / row.even_compute_s,
                            row.ours_ms, row.even_ms, median(gains),
                            row.optimal == n_instances ? "" : "  (not all proven optimal)");
                std::fflush(stdout);
                table.push_back(row);
            }
    std::printf("\nGLPK solve: median over instances of the median of runs (worst: the slowest instance; cpu:\n"
                "process CPU time, median, which other load on the machine does not inflate);\n"
                "even split: time to compute and evaluate it; ratio = GLPK / even split;\n"
                "gain = even split's predicted ms per token / GLPK's (median over instances).\n");
    bool under = true;
    for (const auto& r : table)
        if (r.formulation == "compact") under = under && r.solve_max_s < 1.0;
    std::printf("compact formulation under 1 s on every instance: %s\n", under ? "yes" : "NO");

    if (!json_path.empty()) {
        std::FILE* f = std::fopen(json_path.c_str(), "w");
        if (!f) {
            std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
            return 1;
        }
        std::fprintf(f, "[\n");
        for (std::size_t i = 0; i < table.size(); ++i) {
            const auto& r = table[i];
            std::fprintf(f,
                         "  {\"cuts\": \"%s\", \"objective\": \"%s\", \"formulation\": \"%s\", \"units\": %lld, "
                         "\"columns\": %d, \"rows\": %d, \"solve_median_s\": %.6g, \"solve_max_s\": %.6g, \"solve_cpu_s\": %.6g, "
                         "\"even_split_s\": %.6g, \"ours_ms_per_token\": %.6g, \"even_ms_per_token\": %.6g, "
                         "\"optimal\": %d, \"instances\": %d}%s\n",
                         r.granularity.c_str(), r.objective.c_str(), r.formulation.c_str(),
                         static_cast<long long>(r.units), r.columns, r.rows, r.solve_median_s, r.solve_max_s,
                         r.solve_cpu_s, r.even_compute_s, r.ours_ms, r.even_ms, r.optimal, r.instances, i + 1 < table.size() ? "," : "");
        }
        std::fprintf(f, "]\n");
        std::fclose(f);
    }
    return under ? 0 : 1;
}
