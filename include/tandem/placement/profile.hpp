// Device profiles and the links between devices: what the placement solver
// plans with.
//
// A DeviceProfile holds the memory a device gives to weights plus KV caches
// and the seconds one block of each kind takes per token on it, measured by
// running the real model's blocks (runtime/profiler.hpp), for decode (one
// token per step) and for prefill (per token of a 64-token step). A Cluster
// is a list of devices plus the link between every pair of nodes, the
// coordinator (node kCoordinator) included: latency in seconds, bandwidth in
// bytes per second, directed.
//
// Cluster file (JSON, hand-written or saved by `tandem plan`; all members
// not marked optional are required, unknown members are an error):
//
//   {
//     "devices": [
//       { "name": "pixel-8",                 // unique; not "coordinator"
//         "memory": "6 GiB",                 // or "memory_bytes": 6442450944 (K/M/G and
//                                            // KiB/MiB/GiB are 1024-based, KB/MB/GB 1000-based)
//         "threads": 8,                      // optional, informational
//         "speed": 0.5,                      // EITHER: times of the reference device (this
//                                            // machine, measured) divided by 0.5
//         "decode_ms":  {"embedding": 0.01, "attention": 1.2, "ffn": 2.5, "head": 3.1},
//                                            // OR: ms per token per block of each kind (n = 1)
//         "prefill_ms": {...},               // optional, ms per token in a 64-token step;
//                                            // defaults to decode_ms (pessimistic)
//         "model": "..." }                   // optional: model the times belong to
//     ],
//     "coordinator": "pixel-8",              // optional: the coordinator runs on this device
//                                            // (links to it are free, others copy its links)
//     "default_link": {"latency_ms": 5, "bandwidth_mbps": 100},  // optional
//     "links": [                             // optional; symmetric unless "one_way": true
//       {"from": "coordinator", "to": "pixel-8", "latency_ms": 2, "bandwidth_mbps": 200},
//       {"from": "pixel-8", "to": "galaxy-a14", "latency_ms": 8, "bandwidth_mbps": 50}
//     ]
//   }
//
// Mbit/s are 10^6 bits per second. Every pair of nodes needs a link (given,
// implied by "coordinator", or the default), else the file is rejected. A
// profile cache (runtime/profiler.hpp) stores device objects in this format.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/placement/json.hpp"
#include "tandem/placement/model_shape.hpp"

namespace tandem {

/// Seconds per token for one block of each kind.
struct KindTimes {
    std::array<double, kCostKinds> s{};

    double& operator[](CostKind k) noexcept { return s[static_cast<std::size_t>(k)]; }
    double operator[](CostKind k) const noexcept { return s[static_cast<std::size_t>(k)]; }
    bool operator==(const KindTimes&) const = default;
    KindTimes scaled(double factor) const {
        KindTimes t = *this;
        for (auto& x : t.s) x *= factor;
        return t;
    }
};

struct DeviceProfile {
    std::string name;
    std::uint64_t memory_bytes = 0;  // for weights plus KV caches
    unsigned threads = 0;            // the thread count the times were measured with (0: unknown)
    KindTimes decode;                // s per token per block, one token per step
    KindTimes prefill;               // s per token per block, in a 64-token step
    std::string model;               // identity of the model timed ("" : not tied to one)

    bool operator==(const DeviceProfile&) const = default;

    /// The same device `speed` times as fast (0.5: twice as slow).
    DeviceProfile with_speed(double speed) const {
        if (!(speed > 0) || !std::isfinite(speed)) throw ConfigError("speed factor must be positive");
        DeviceProfile p = *this;
        p.decode = decode.scaled(1.0 / speed);
        p.prefill = prefill.scaled(1.0 / speed);
        return p;
    }

    /// Throws ConfigError if a field is unusable.
    void validate() const {
        if (name.empty()) throw ConfigError("a device profile needs a name");
        if (name == "coordinator") throw ConfigError("'coordinator' is reserved for the coordinator node");
        for (const auto* t : {&decode, &prefill})
            for (const double x : t->s)
                if (!(x >= 0) || !std::isfinite(x))
                    throw ConfigError("device '" + name + "': block times must be finite and non-negative");
    }
};

/// A directed link: transfer time = latency + bytes / bandwidth.
struct Link {
    double latency_s = 0;
    double bytes_per_s = std::numeric_limits<double>::infinity();

    static Link local() noexcept { return {}; }
    static Link from_ms_mbps(double latency_ms, double bandwidth_mbps) {
        return {latency_ms / 1e3, bandwidth_mbps * 1e6 / 8};
    }
    double latency_ms() const noexcept { return latency_s * 1e3; }
    double mbps() const noexcept { return bytes_per_s * 8 / 1e6; }
    double transfer_s(std::uint64_t bytes) const noexcept {
        return latency_s + (std::isinf(bytes_per_s) ? 0.0 : static_cast<double>(bytes) / bytes_per_s);
    }
    bool operator==(const Link&) const = default;
};

class Cluster {
public:
    static constexpr int kCoordinator = -1;

    Cluster() = default;
    /// Devices with every link set to `all`.
    explicit Cluster(std::vector<DeviceProfile> devices, Link all = Link::local()) : devices_(std::move(devices)) {
        for (std::size_t i = 0; i < devices_.size(); ++i) {
            devices_[i].validate();
            for (std::size_t j = 0; j < i; ++j)
                if (devices_[j].name == devices_[i].name)
                    throw ConfigError("two devices are named '" + devices_[i].name + "'");
        }
        const auto n = devices_.size() + 1;
        links_.assign(n * n, all);
        for (std::size_t i = 0; i < n; ++i) links_[i * n + i] = Link::local();
    }

    int size() const noexcept { return static_cast<int>(devices_.size()); }
    const std::vector<DeviceProfile>& devices() const noexcept { return devices_; }
    const DeviceProfile& device(int i) const { return devices_.at(static_cast<std::size_t>(i)); }
    DeviceProfile& device(int i) { return devices_.at(static_cast<std::size_t>(i)); }

    /// Link from node `from` to node `to` (device indices, or kCoordinator).
    const Link& link(int from, int to) const { return links_[slot(from, to)]; }
    void set_link(int from, int to, Link l) { links_[slot(from, to)] = l; }
    void set_link_both(int a, int b, Link l) {
        set_link(a, b, l);
        set_link(b, a, l);
    }

    /// Links from measured values: (n+1) x (n+1) matrices indexed by node,
    /// node 0 the coordinator and node i + 1 device i; latency in seconds,
    /// bandwidth in bytes per second. The diagonal is ignored.
    void set_links(const std::vector<std::vector<double>>& latency_s,
                   const std::vector<std::vector<double>>& bytes_per_s) {
        const auto n = devices_.size() + 1;
        if (latency_s.size() != n || bytes_per_s.size() != n)
            throw ConfigError("link matrices must be " + std::to_string(n) + " x " + std::to_string(n));
        for (std::size_t i = 0; i < n; ++i) {
            if (latency_s[i].size() != n || bytes_per_s[i].size() != n)
                throw ConfigError("link matrices must be " + std::to_string(n) + " x " + std::to_string(n));
            for (std::size_t j = 0; j < n; ++j) {
                if (i == j) continue;
                const double lat = latency_s[i][j], bw = bytes_per_s[i][j];
                if (!(lat >= 0) || !std::isfinite(lat) || !(bw > 0))
                    throw ConfigError("link " + std::to_string(i) + " -> " + std::to_string(j) +
                                      ": latency must be finite and >= 0, bandwidth > 0");
                links_[i * n + j] = {lat, bw};
            }
        }
    }

    /// Index of the device named `name`; kCoordinator for "coordinator"; -2 if none.
    int index_of(std::string_view name) const noexcept {
        if (name == "coordinator") return kCoordinator;
        for (std::size_t i = 0; i < devices_.size(); ++i)
            if (devices_[i].name == name) return static_cast<int>(i);
        return -2;
    }
    std::string node_name(int i) const { return i == kCoordinator ? std::string("coordinator") : device(i).name; }

    bool operator==(const Cluster&) const = default;

private:
    std::size_t slot(int from, int to) const {
        const int n = size();
        if (from < kCoordinator || from >= n || to < kCoordinator || to >= n)
            throw ConfigError("no link between nodes " + std::to_string(from) + " and " + std::to_string(to));
        return static_cast<std::size_t>(from + 1) * static_cast<std::size_t>(n + 1) + static_cast<std::size_t>(to + 1);
    }

    std::vector<DeviceProfile> devices_;
    std::vector<Link> links_;  // (n+1) x (n+1), node 0 = coordinator
};

// ---- JSON ---------------------------------------------------------------------

namespace detail {

/// Checked access to user-written JSON: errors name the member's path and
/// carry the byte offset of the offending value.
class JsonFields {
public:
    JsonFields(const Json& obj, std::string path, const std::string& source,
               std::initializer_list<std::string_view> allowed)
        : obj_(obj), path_(std::move(path)), source_(source) {
        if (!obj.is_object()) fail(obj, std::string("expected an object, got ") + json_type_name(obj.type()));
        for (const auto& [k, v] : obj.as_object())
            if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
                std::string list;
                for (const auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
                fail(v, "unknown member \"" + k + "\" (expected: " + list + ")");
            }
    }

    [[noreturn]] void fail(const Json& at, const std::string& msg) const {
        throw FormatError(source_, at.offset(), (path_.empty() ? "" : path_ + ": ") + msg);
    }
    std::string path(std::string_view key) const { return path_.empty() ? std::string(key) : path_ + "." + std::string(key); }
    const std::string& source() const noexcept { return source_; }
    const Json& object() const noexcept { return obj_; }

    const Json* find(std::string_view key) const { return obj_.find(key); }
    const Json& need(std::string_view key) const {
        if (const auto* v = obj_.find(key)) return *v;
        fail(obj_, "missing member \"" + std::string(key) + "\"");
    }
    double number(const Json& v, std::string_view key) const {
        if (!v.is_number()) fail(v, std::string(key) + ": expected a number, got " + json_type_name(v.type()));
        return v.as_number();
    }
    double number(std::string_view key) const { return number(need(key), key); }
    double positive(std::string_view key) const {
        const auto& v = need(key);
        const double x = number(v, key);
        if (!(x > 0)) fail(v, std::string(key) + ": must be positive");
        return x;
    }
    double non_negative(std::string_view key) const {
        const auto& v = need(key);
        const double x = number(v, key);
        if (!(x >= 0)) fail(v, std::string(key) + ": must not be negative");
        return x;
    }
    std::uint64_t count(std::string_view key, double max = 9007199254740992.0) const {  // 2^53
        const auto& v = need(key);
        const double x = number(v, key);
        if (!(x >= 0) || x != std::floor(x) || x > max)
            fail(v, std::string(key) + ": expected a whole number no larger than " + std::to_string(static_cast<std::uint64_t>(max)));
        return static_cast<std::uint64_t>(x);
    }
    const std::string& string(std::string_view key) const {
        const auto& v = need(key);
        if (!v.is_string()) fail(v, std::string(key) + ": expected a string, got " + json_type_name(v.type()));
        return v.as_string();
    }
    bool boolean(std::string_view key, bool fallback) const {
        const auto* v = find(key);
        if (!v) return fallback;
        if (!v->is_bool()) fail(*v, std::string(key) + ": expected true or false");
        return v->as_bool();
    }

private:
    const Json& obj_;
    std::string path_;
    const std::string& source_;
};

/// "6 GiB", "512MiB", "2G", "1500 MB", "1048576" -> bytes.
inline std::uint64_t parse_memory_size(const JsonFields& f, const Json& v) {
    if (!v.is_string()) f.fail(v, "memory: expected a string like \"6 GiB\" (or use memory_bytes)");
    const std::string& s = v.as_string();
    double x = 0;
    const char* b = s.data();
    const char* e = s.data() + s.size();
    const auto r = json_detail::parse_double(b, e, x);
    if (r.ec != std::errc() || !(x > 0) || !std::isfinite(x)) f.fail(v, "memory: \"" + s + "\" is not a size");
    std::string unit(r.ptr, e);
    unit.erase(std::remove(unit.begin(), unit.end(), ' '), unit.end());
    double mul = 0;
    if (unit.empty() || unit == "B") mul = 1;
    else if (unit == "K" || unit == "KiB") mul = 1024.0;
    else if (unit == "M" || unit == "MiB") mul = 1024.0 * 1024;
    else if (unit == "G" || unit == "GiB") mul = 1024.0 * 1024 * 1024;
    else if (unit == "T" || unit == "TiB") mul = 1024.0 * 1024 * 1024 * 1024;
    else if (unit == "KB") mul = 1e3;
    else if (unit == "MB") mul = 1e6;
    else if (unit == "GB") mul = 1e9;
    else if (unit == "TB") mul = 1e12;
    else f.fail(v, "memory: unknown unit '" + unit + "' (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)");
    const double bytes = x * mul;
    if (bytes > 9.0e18) f.fail(v, "memory: \"" + s + "\" is too large");
    return static_cast<std::uint64_t>(bytes);
}

inline KindTimes parse_kind_times_ms(const JsonFields& parent, const Json& v, std::string_view key) {
    const JsonFields f(v, parent.path(key), parent.source(), {"embedding", "attention", "ffn", "head"});
    KindTimes t;
    for (std::size_t k = 0; k < kCostKinds; ++k) {
        const char* name = cost_kind_name(static_cast<CostKind>(k));
        const auto& x = f.need(name);
        const double ms = f.number(x, name);
        if (!(ms >= 0)) f.fail(x, std::string(name) + ": must not be negative");
        t.s[k] = ms / 1e3;
    }
    return t;
}

inline Json kind_times_ms_json(const KindTimes& t) {
    Json o;
    for (std::size_t k = 0; k < kCostKinds; ++k) o.set(cost_kind_name(static_cast<CostKind>(k)), t.s[k] * 1e3);
    return o;
}

}  // namespace detail

/// One device object (see the format at the top). `reference` provides the
/// times a "speed" factor scales; without it a speed factor is an error.
inline DeviceProfile device_profile_from_json(const Json& v, const std::string& source, const std::string& path = "",
                                              const DeviceProfile* reference = nullptr) {
    const detail::JsonFields f(v, path, source,
                               {"name", "memory", "memory_bytes", "threads", "speed", "decode_ms", "prefill_ms", "model"});
    DeviceProfile p;
    p.name = f.string("name");
    if (p.name.empty() || p.name == "coordinator") f.fail(f.need("name"), "name: must be non-empty and not \"coordinator\"");
    const auto* mem = f.find("memory");
    const auto* mem_bytes = f.find("memory_bytes");
    if ((mem != nullptr) == (mem_bytes != nullptr)) f.fail(v, "give exactly one of \"memory\" and \"memory_bytes\"");
    p.memory_bytes = mem ? detail::parse_memory_size(f, *mem) : f.count("memory_bytes");
    if (f.find("threads")) p.threads = static_cast<unsigned>(f.count("threads", 65536));
    if (f.find("model")) p.model = f.string("model");
    const auto* speed = f.find("speed");
    const auto* decode = f.find("decode_ms");
    if ((speed != nullptr) == (decode != nullptr)) f.fail(v, "give exactly one of \"speed\" and \"decode_ms\"");
    if (speed) {
        const double s = f.positive("speed");
        if (f.find("prefill_ms")) f.fail(*f.find("prefill_ms"), "prefill_ms: not allowed with \"speed\"");
        if (reference == nullptr)
            f.fail(*speed, "speed: a speed factor needs a measured reference profile (profile this machine first)");
        p.decode = reference->decode.scaled(1.0 / s);
        p.prefill = reference->prefill.scaled(1.0 / s);
        if (p.model.empty()) p.model = reference->model;
    } else {
        p.decode = detail::parse_kind_times_ms(f, *decode, "decode_ms");
        const auto* prefill = f.find("prefill_ms");
        p.prefill = prefill ? detail::parse_kind_times_ms(f, *prefill, "prefill_ms") : p.decode;
    }
    return p;
}

inline Json device_profile_to_json(const DeviceProfile& p) {
    Json o;
    o.set("name", p.name);
    o.set("memory_bytes", p.memory_bytes);
    if (p.threads) o.set("threads", p.threads);
    o.set("decode_ms", detail::kind_times_ms_json(p.decode));
    o.set("prefill_ms", detail::kind_times_ms_json(p.prefill));
    if (!p.model.empty()) o.set("model", p.model);
    return o;
}

inline Cluster cluster_from_json(const Json& root, const std::string& source,
                                 const DeviceProfile* reference = nullptr) {
    const detail::JsonFields f(root, "", source, {"devices", "coordinator", "default_link", "links"});
    const auto& devs = f.need("devices");
    if (!devs.is_array() || devs.as_array().empty()) f.fail(devs, "devices: expected a non-empty array");
    std::vector<DeviceProfile> profiles;
    for (std::size_t i = 0; i < devs.as_array().size(); ++i) {
        const auto& d = devs.as_array()[i];
        profiles.push_back(device_profile_from_json(d, source, "devices[" + std::to_string(i) + "]", reference));
        for (std::size_t j = 0; j < i; ++j)
            if (profiles[j].name == profiles[i].name)
                f.fail(d, "devices[" + std::to_string(i) + "]: a second device named \"" + profiles[i].name + "\"");
    }
    Cluster c(std::move(profiles));
    const int n = c.size();
    // Which directed links were given; the rest come from the coordinator's
    // host device or the default link.
    std::vector<char> given(static_cast<std::size_t>((n + 1) * (n + 1)), 0);
    auto mark = [&](int a, int b) { given[static_cast<std::size_t>((a + 1) * (n + 1) + (b + 1))] = 1; };
    auto is_given = [&](int a, int b) { return given[static_cast<std::size_t>((a + 1) * (n + 1) + (b + 1))] != 0; };
    auto read_link = [&](const detail::JsonFields& lf) {
        return Link::from_ms_mbps(lf.non_negative("latency_ms"), lf.positive("bandwidth_mbps"));
    };
    if (const auto* links = f.find("links")) {
        if (!links->is_array()) f.fail(*links, "links: expected an array");
        // Two passes: symmetric entries first, so that a one-way entry for the
        // reverse direction wins whatever the order in the file.
        for (const bool one_way_pass : {false, true}) {
            for (std::size_t i = 0; i < links->as_array().size(); ++i) {
                const auto& l = links->as_array()[i];
                const detail::JsonFields lf(l, "links[" + std::to_string(i) + "]", source,
                                            {"from", "to", "latency_ms", "bandwidth_mbps", "one_way"});
                const bool one_way = lf.boolean("one_way", false);
                if (one_way != one_way_pass) continue;
                const int a = c.index_of(lf.string("from")), b = c.index_of(lf.string("to"));
                if (a == -2) lf.fail(lf.need("from"), "from: no device named \"" + lf.string("from") + "\"");
                if (b == -2) lf.fail(lf.need("to"), "to: no device named \"" + lf.string("to") + "\"");
                if (a == b) lf.fail(l, "a link needs two different nodes");
                const Link link = read_link(lf);
                c.set_link(a, b, link);
                mark(a, b);
                if (!one_way) {
                    c.set_link(b, a, link);
                    mark(b, a);
                }
            }
        }
    }
    if (const auto* host = f.find("coordinator")) {
        if (!host->is_string()) f.fail(*host, "coordinator: expected a device name");
        const int h = c.index_of(host->as_string());
        if (h < 0) f.fail(*host, "coordinator: no device named \"" + host->as_string() + "\"");
        for (const auto& [a, b] : {std::pair{Cluster::kCoordinator, h}, std::pair{h, Cluster::kCoordinator}})
            if (!is_given(a, b)) {
                c.set_link(a, b, Link::local());
                mark(a, b);
            }
        for (int d = 0; d < n; ++d) {
            if (d == h) continue;
            if (!is_given(Cluster::kCoordinator, d) && is_given(h, d)) {
                c.set_link(Cluster::kCoordinator, d, c.link(h, d));
                mark(Cluster::kCoordinator, d);
            }
            if (!is_given(d, Cluster::kCoordinator) && is_given(d, h)) {
                c.set_link(d, Cluster::kCoordinator, c.link(d, h));
                mark(d, Cluster::kCoordinator);
            }
        }
    }
    const Json* def = f.find("default_link");
    Link default_link;
    if (def) {
        const detail::JsonFields lf(*def, "default_link", source, {"latency_ms", "bandwidth_mbps"});
        default_link = read_link(lf);
    }
    for (int a = Cluster::kCoordinator; a < n; ++a)
        for (int b = Cluster::kCoordinator; b < n; ++b) {
            if (a == b || is_given(a, b)) continue;
            if (!def)
                f.fail(root, "no link from " + c.node_name(a) + " to " + c.node_name(b) +
                                 " (list it in \"links\" or give a \"default_link\")");
            c.set_link(a, b, default_link);
        }
    return c;
}

/// Writes every device with its times and every directed link explicitly.
inline Json cluster_to_json(const Cluster& c) {
    Json root;
    Json devs = Json::Array{};
    for (const auto& d : c.devices()) devs.push(device_profile_to_json(d));
    root.set("devices", std::move(devs));
    Json links = Json::Array{};
    for (int a = Cluster::kCoordinator; a < c.size(); ++a)
        for (int b = Cluster::kCoordinator; b < c.size(); ++b) {
            if (a == b) continue;
            const auto& l = c.link(a, b);
            Json o;
            o.set("from", c.node_name(a));
            o.set("to", c.node_name(b));
            o.set("latency_ms", l.latency_ms());
            // JSON has no infinity: a local link is written as 10^9 Mbit/s.
            o.set("bandwidth_mbps", std::isinf(l.bytes_per_s) ? 1e9 : l.mbps());
            o.set("one_way", true);
            links.push(std::move(o));
        }
    root.set("links", std::move(links));
    return root;
}

/// Reads a whole text file of at most `max_bytes` (IoError if unreadable,
/// FormatError if larger).
inline std::string read_text_file(const std::string& path, std::uint64_t max_bytes = 16u << 20) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError(path + ": cannot open");
    in.seekg(0, std::ios::end);
    const auto size = static_cast<std::uint64_t>(std::max<std::streamoff>(0, in.tellg()));
    if (size > max_bytes) throw FormatError(path, 0, "file of " + std::to_string(size) + " bytes is too large");
    in.seekg(0);
    std::string text(static_cast<std::size_t>(size), '\0');
    in.read(text.data(), static_cast<std::streamsize>(size));
    if (!in) throw IoError(path + ": read failed");
    return text;
}

inline Cluster load_cluster(const std::string& path, const DeviceProfile* reference = nullptr) {
    return cluster_from_json(Json::parse(read_text_file(path), path), path, reference);
}

/// Whether any device of the file at `path` is given by a speed factor (and
/// so needs a reference profile to load).
inline bool cluster_file_needs_reference(const std::string& path) {
    const auto root = Json::parse(read_text_file(path), path);
    const auto* devs = root.find("devices");
    if (!devs || !devs->is_array()) return false;
    for (const auto& d : devs->as_array())
        if (d.find("speed")) return true;
    return false;
}

}  // namespace tandem
