// The paper suite's results: what one arm (a placement) measured, the
// terminal table, and the gnuplot PNGs (tokens/s per configuration, and the
// per-device timeline of the slowdown experiment).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <tandem/placement/json.hpp>

#include "workers.hpp"

namespace tandem::paper {

inline double median(std::vector<double> v) {
    if (v.empty()) return std::nan("");
    std::sort(v.begin(), v.end());
    const auto n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// One placement run several times.
struct Arm {
    std::string name;                  // "ours", "even split", "memory-proportional", "single best device"
    std::string placement;             // "high-end-1[0:9] -> ..."
    std::string skipped;               // why it did not run (e.g. does not fit), else empty
    std::string same_as;               // an arm with the identical placement whose runs this reuses
    double predicted_tokens_per_s = 0; // the cost model's
    std::vector<double> tokens_per_s;  // one per repetition
    double median_tokens_per_s() const { return median(tokens_per_s); }
};

/// One row of the table: an experiment on a model and a device mix.
struct Row {
    int experiment = 1;  // 1: one request; 2: K in flight
    std::string model, mix;
    int in_flight = 1;
    int tokens = 0;  // generated per request
    std::vector<Arm> arms;  // arms[0] is ours
};

inline Json arm_json(const Arm& a) {
    Json o;
    o.set("name", a.name);
    o.set("placement", a.placement);
    if (!a.skipped.empty()) o.set("skipped", a.skipped);
    if (!a.same_as.empty()) o.set("same_placement_as", a.same_as);
    o.set("predicted_tokens_per_s", a.predicted_tokens_per_s);
    Json runs = Json::Array{};
    for (const double x : a.tokens_per_s) runs.push(x);
    o.set("tokens_per_s", std::move(runs));
    if (!a.tokens_per_s.empty()) o.set("median_tokens_per_s", a.median_tokens_per_s());
    return o;
}

inline Json row_json(const Row& r) {
    Json o;
    o.set("experiment", r.experiment);
    o.set("model", r.model);
    o.set("mix", r.mix);
    o.set("in_flight", r.in_flight);
    o.set("tokens_per_request", r.tokens);
    Json arms = Json::Array{};
    const double ours = r.arms.front().median_tokens_per_s();
    for (const auto& a : r.arms) {
        auto j = arm_json(a);
        if (&a != &r.arms.front() && !a.tokens_per_s.empty()) {
            j.set("ours_over_this", ours / a.median_tokens_per_s());
            j.set("predicted_ours_over_this", r.arms.front().predicted_tokens_per_s / a.predicted_tokens_per_s);
        }
        arms.push(std::move(j));
    }
    o.set("arms", std::move(arms));
    return o;
}

inline void print_table(const std::vector<Row>& rows) {
    std::printf("\n%-4s %-15s %-5s %3s %10s | %-22s | %-22s | %-22s\n", "exp", "model", "mix", "K", "ours tok/s",
                "even split", "memory-proportional", "single best device");
    std::printf("%-4s %-15s %-5s %3s %10s | %-22s | %-22s | %-22s\n", "", "", "", "", "(median)",
                "tok/s  ours/it (pred)", "tok/s  ours/it (pred)", "tok/s  ours/it (pred)");
    for (const auto& r : rows) {
        const auto& ours = r.arms.front();
        std::printf("%-4d %-15s %-5s %3d %10.2f", r.experiment, r.model.c_str(), r.mix.c_str(), r.in_flight,
                    ours.median_tokens_per_s());
        for (std::size_t i = 1; i < r.arms.size(); ++i) {
            const auto& a = r.arms[i];
            char cell[64];
            if (a.tokens_per_s.empty())
                std::snprintf(cell, sizeof cell, "%s", a.skipped.empty() ? "-" : "n/a (does not fit)");
            else
                std::snprintf(cell, sizeof cell, "%6.2f %5.2fx (%4.2fx)%s", a.median_tokens_per_s(),
                              ours.median_tokens_per_s() / a.median_tokens_per_s(),
                              ours.predicted_tokens_per_s / a.predicted_tokens_per_s, a.same_as.empty() ? "" : "=");
            std::printf(" | %-22s", cell);
        }
        std::printf("\n");
    }
    std::printf("(ours/it: measured ratio of medians; pred: the cost model's ratio; '=': same placement as an arm to its left, same runs)\n");
}

/// Writes `text` to `path` (throws on failure).
inline void write_file(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f || !(f << text)) throw std::runtime_error("cannot write " + path);
}

/// A clustered bar chart: tokens/s of each arm for each row.
inline bool plot_tokens(const std::vector<Row>& rows, const std::string& dir, std::string* log) {
    std::string dat = "config ours even memprop single\n";
    for (const auto& r : rows) {
        dat += "\"E" + std::to_string(r.experiment) + " " + r.model + " " + r.mix + (r.in_flight > 1 ? " K" + std::to_string(r.in_flight) : "") + "\"";
        for (const auto& a : r.arms) {
            char v[32];
            std::snprintf(v, sizeof v, " %.4f", a.tokens_per_s.empty() ? std::nan("") : a.median_tokens_per_s());
            dat += v;
        }
        dat += "\n";
    }
    write_file(dir + "/tokens_per_s.dat", dat);
    write_file(dir + "/tokens_per_s.gp",
               "set terminal pngcairo size 1400,700 font ',10'\n"
               "set output '" + dir + "/tokens_per_s.png'\n"
               "set title 'tandem paper suite: tokens/s per configuration (median; higher is better)'\n"
               "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
               "set boxwidth 0.9\nset logscale y\nset ylabel 'tokens/s (log scale)'\nset grid ytics\n"
               "set xtics rotate by -30 left\nset key top right\nset datafile missing 'nan'\n"
               "plot '" + dir + "/tokens_per_s.dat' using 2:xtic(1) title 'ours (optimized)', "
               "'' using 3 title 'even split', '' using 4 title 'memory-proportional', "
               "'' using 5 title 'single best device'\n");
    return run_command("gnuplot " + dir + "/tokens_per_s.gp", log) == 0;
}

/// Per-device utilization and the delivered tokens/s over time, one panel per arm.
struct TimelineSeries {
    std::string arm;                        // "balancer off"
    std::vector<std::string> devices;       // names, one per column
    std::vector<double> t;                  // s since the run started
    std::vector<std::vector<double>> busy;  // [sample][device]: busy fraction in the interval ending at t
    std::vector<double> tokens_per_s;       // [sample]: tokens sampled in that interval / its length
    double slowdown_at = 0;                 // s since the run started
};

inline bool plot_timeline(const std::vector<TimelineSeries>& series, const std::string& dir, std::string* log) {
    std::string gp = "set terminal pngcairo size 1200," + std::to_string(380 * std::max<std::size_t>(1, series.size())) +
                     " font ',10'\nset output '" + dir + "/timeline.png'\nset multiplot layout " +
                     std::to_string(series.size()) + ",1\nset grid\nset xlabel 'seconds since the run started'\n"
                     "set ylabel 'busy fraction'\nset yrange [0:1.05]\nset y2label 'tokens/s'\nset y2tics\n"
                     "set ytics nomirror\nset key outside right\nset datafile missing 'nan'\n";
    for (std::size_t s = 0; s < series.size(); ++s) {
        const auto& ts = series[s];
        const std::string dat = dir + "/timeline_" + std::to_string(s) + ".dat";
        std::string text = "t";
        for (const auto& d : ts.devices) text += " " + d;
        text += " tokens_per_s\n";
        for (std::size_t i = 0; i < ts.t.size(); ++i) {
            char v[32];
            std::snprintf(v, sizeof v, "%.3f", ts.t[i]);
            text += v;
            for (const double b : ts.busy[i]) {
                std::snprintf(v, sizeof v, " %.4f", b);
                text += v;
            }
            std::snprintf(v, sizeof v, " %.3f\n", ts.tokens_per_s[i]);
            text += v;
        }
        write_file(dat, text);
        char arrow[160];
        std::snprintf(arrow, sizeof arrow, "set arrow 1 from %.3f, graph 0 to %.3f, graph 1 nohead dashtype 2 lw 2\n",
                      ts.slowdown_at, ts.slowdown_at);
        gp += std::string("unset arrow\n") + arrow + "set title 'slowdown experiment, " + ts.arm +
              ": per-device busy fraction (left) and tokens/s (right); dashed: the slowdown'\nplot ";
        for (std::size_t d = 0; d < ts.devices.size(); ++d)
            gp += "'" + dat + "' using 1:" + std::to_string(d + 2) + " with lines lw 2 title '" + ts.devices[d] + "', ";
        gp += "'" + dat + "' using 1:" + std::to_string(ts.devices.size() + 2) +
              " axes x1y2 with linespoints lc rgb 'black' title 'tokens/s'\n";
    }
    gp += "unset multiplot\n";
    write_file(dir + "/timeline.gp", gp);
    return run_command("gnuplot " + dir + "/timeline.gp", log) == 0;
}

}  // namespace tandem::paper
