// Cluster files and device profiles: the documented JSON format, its
// defaults (symmetric links, default link, coordinator host), round trips,
// and typed errors that point at the offending value.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include <tandem/placement/profile.hpp>

#include "support/paths.hpp"

using namespace tandem;

namespace {

DeviceProfile reference() {
    DeviceProfile p;
    p.name = "this-machine";
    p.memory_bytes = 1 << 30;
    p.decode[CostKind::Embedding] = 1e-6;
    p.decode[CostKind::Attention] = 2e-3;
    p.decode[CostKind::Ffn] = 4e-3;
    p.decode[CostKind::Head] = 8e-3;
    p.prefill = p.decode.scaled(0.25);
    p.model = "model-x";
    return p;
}

Cluster parse(const std::string& text, const DeviceProfile* ref = nullptr) {
    return cluster_from_json(Json::parse(text, "c.json"), "c.json", ref);
}

// The FormatError `text` raises; checks that it names the file.
FormatError parse_error(const std::string& text, const DeviceProfile* ref = nullptr) {
    try {
        (void)parse(text, ref);
    } catch (const FormatError& e) {
        CHECK(e.file() == "c.json");
        return e;
    }
    FAIL("no FormatError for: " << text);
    return FormatError("", 0, "");
}

bool says(const FormatError& e, const std::string& what) { return std::string(e.what()).find(what) != std::string::npos; }

}  // namespace

TEST_CASE("profile: a hand-written cluster file with times in ms") {
    const auto c = parse(R"({
      "devices": [
        {"name": "a", "memory": "1.5 GiB", "threads": 4,
         "decode_ms": {"embedding": 0.01, "attention": 1, "ffn": 2, "head": 3},
         "prefill_ms": {"embedding": 0.001, "attention": 0.1, "ffn": 0.2, "head": 0.3}},
        {"name": "b", "memory_bytes": 1000000,
         "decode_ms": {"embedding": 0.02, "attention": 2, "ffn": 4, "head": 6}}
      ],
      "default_link": {"latency_ms": 5, "bandwidth_mbps": 100},
      "links": [
        {"from": "a", "to": "b", "latency_ms": 2, "bandwidth_mbps": 800},
        {"from": "b", "to": "a", "latency_ms": 9, "bandwidth_mbps": 8, "one_way": true},
        {"from": "coordinator", "to": "a", "latency_ms": 0.5, "bandwidth_mbps": 1000}
      ]})");
    REQUIRE(c.size() == 2);
    const auto& a = c.device(0);
    CHECK(a.name == "a");
    CHECK(a.memory_bytes == 1610612736);  // 1.5 * 2^30
    CHECK(a.threads == 4);
    CHECK(a.decode[CostKind::Attention] == doctest::Approx(1e-3));
    CHECK(a.prefill[CostKind::Head] == doctest::Approx(0.3e-3));
    const auto& b = c.device(1);
    CHECK(b.memory_bytes == 1000000);
    CHECK(b.prefill == b.decode);  // prefill defaults to decode
    // a -> b as given; b -> a by its one-way entry, whatever the order in the file.
    CHECK(c.link(0, 1).latency_s == doctest::Approx(2e-3));
    CHECK(c.link(0, 1).bytes_per_s == doctest::Approx(800e6 / 8));
    CHECK(c.link(1, 0).latency_s == doctest::Approx(9e-3));
    CHECK(c.link(1, 0).bytes_per_s == doctest::Approx(1e6));
    // coordinator <-> a given (symmetric); coordinator <-> b from the default.
    CHECK(c.link(Cluster::kCoordinator, 0).latency_s == doctest::Approx(0.5e-3));
    CHECK(c.link(0, Cluster::kCoordinator).latency_s == doctest::Approx(0.5e-3));
    CHECK(c.link(1, Cluster::kCoordinator).latency_s == doctest::Approx(5e-3));
    // 1000 bytes over 100 Mbit/s (12.5 MB/s) plus 5 ms.
    CHECK(c.link(Cluster::kCoordinator, 1).transfer_s(1000) == doctest::Approx(5e-3 + 1000 / 12.5e6));
}

TEST_CASE("profile: speed factors scale a measured reference; the coordinator can live on a device") {
    const auto ref = reference();
    const auto c = parse(R"({
      "devices": [
        {"name": "fast", "memory": "8GiB", "speed": 2},
        {"name": "slow", "memory": "512 MiB", "speed": 0.25}
      ],
      "coordinator": "fast",
      "links": [{"from": "fast", "to": "slow", "latency_ms": 4, "bandwidth_mbps": 50}]
    })",
                         &ref);
    CHECK(c.device(0).decode[CostKind::Ffn] == doctest::Approx(2e-3));   // 4 ms / 2
    CHECK(c.device(1).decode[CostKind::Ffn] == doctest::Approx(16e-3));  // 4 ms / 0.25
    CHECK(c.device(1).prefill[CostKind::Head] == doctest::Approx(8e-3));  // 2 ms / 0.25
    CHECK(c.device(1).memory_bytes == 512ull << 20);
    CHECK(c.device(0).model == "model-x");
    // Coordinator on "fast": free link to it, fast's links to the others.
    CHECK(c.link(Cluster::kCoordinator, 0) == Link::local());
    CHECK(c.link(0, Cluster::kCoordinator) == Link::local());
    CHECK(c.link(Cluster::kCoordinator, 1) == c.link(0, 1));
    CHECK(c.link(1, Cluster::kCoordinator) == c.link(1, 0));
    CHECK(cluster_file_needs_reference(std::string(TANDEM_SOURCE_DIR) + "/examples/profiles/phones.json"));
}

TEST_CASE("profile: cluster JSON round trip, and links from measured matrices") {
    const auto ref = reference();
    auto c = parse(R"({"devices": [{"name": "a", "memory": "1G", "speed": 1}, {"name": "b", "memory": "2G", "speed": 0.5}],
                       "default_link": {"latency_ms": 3, "bandwidth_mbps": 70}})",
                   &ref);
    // Measured values: node 0 the coordinator, node i + 1 device i.
    c.set_links({{0, 1e-3, 2e-3}, {1e-3, 0, 3e-3}, {2e-3, 4e-3, 0}},
                {{0, 1e8, 2e8}, {1e8, 0, 3e8}, {2e8, 4e8, 0}});
    CHECK(c.link(1, 0).latency_s == 4e-3);
    CHECK(c.link(0, 1).bytes_per_s == 3e8);
    CHECK(c.link(Cluster::kCoordinator, 1).latency_s == 2e-3);
    CHECK_THROWS_AS(c.set_links({{0}}, {{0}}), ConfigError);
    CHECK_THROWS_AS(c.set_links({{0, -1, 0}, {0, 0, 0}, {0, 0, 0}}, {{0, 1, 1}, {1, 0, 1}, {1, 1, 0}}), ConfigError);
    const auto text = cluster_to_json(c).dump();
    const auto back = parse(text);
    REQUIRE(back.size() == 2);
    for (int i = 0; i < 2; ++i) {
        CHECK(back.device(i).name == c.device(i).name);
        CHECK(back.device(i).memory_bytes == c.device(i).memory_bytes);
        for (std::size_t k = 0; k < kCostKinds; ++k) {
            CHECK(back.device(i).decode.s[k] == doctest::Approx(c.device(i).decode.s[k]).epsilon(1e-12));
            CHECK(back.device(i).prefill.s[k] == doctest::Approx(c.device(i).prefill.s[k]).epsilon(1e-12));
        }
    }
    for (int a = Cluster::kCoordinator; a < 2; ++a)
        for (int b = Cluster::kCoordinator; b < 2; ++b) {
            if (a == b) continue;
            CHECK(back.link(a, b).latency_s == doctest::Approx(c.link(a, b).latency_s).epsilon(1e-12));
            CHECK(back.link(a, b).bytes_per_s == doctest::Approx(c.link(a, b).bytes_per_s).epsilon(1e-12));
        }
}

TEST_CASE("profile: the sample phones cluster loads and names three or four phones") {
    const auto ref = reference();
    const auto path = std::string(TANDEM_SOURCE_DIR) + "/examples/profiles/phones.json";
    const auto c = load_cluster(path, &ref);
    CHECK(c.size() >= 3);
    CHECK(c.size() <= 4);
    for (int a = 0; a < c.size(); ++a)
        for (int b = 0; b < c.size(); ++b) {
            if (a == b) continue;
            // Wi-Fi-like: 50-200 Mbit/s, 2-10 ms.
            CHECK(c.link(a, b).mbps() >= 50 - 1e-9);
            CHECK(c.link(a, b).mbps() <= 200 + 1e-9);
            CHECK(c.link(a, b).latency_ms() >= 2 - 1e-9);
            CHECK(c.link(a, b).latency_ms() <= 10 + 1e-9);
        }
    CHECK_THROWS_AS(load_cluster(path), FormatError);  // speed factors need the reference
}

TEST_CASE("profile: malformed cluster files give typed errors that say what and where") {
    const auto ref = reference();
    const std::string dev = R"({"name": "a", "memory": "1G", "speed": 1})";
    SUBCASE("structure") {
        CHECK(says(parse_error("[]"), "expected an object"));
        CHECK(says(parse_error(R"({"devices": []})"), "non-empty array"));
        CHECK(says(parse_error(R"({"devices": [)" + dev + R"(], "extra": 1})", &ref), "unknown member \"extra\""));
        CHECK(says(parse_error(R"({"devices": [{"name": "a", "memroy": "1G", "speed": 1}]})", &ref),
                   "devices[0]: unknown member \"memroy\""));
    }
    SUBCASE("devices") {
        CHECK(says(parse_error(R"({"devices": [{"name": "a", "speed": 1}]})", &ref), "exactly one of \"memory\""));
        CHECK(says(parse_error(R"({"devices": [{"name": "a", "memory": "1 parsec", "speed": 1}]})", &ref),
                   "unknown unit"));
        CHECK(says(parse_error(R"({"devices": [{"name": "a", "memory_bytes": -5, "speed": 1}]})", &ref), "whole number"));
        CHECK(says(parse_error(R"({"devices": [{"name": "a", "memory": "1G", "speed": 0}]})", &ref), "positive"));
        CHECK(says(parse_error(R"({"devices": [)" + dev + "]}"), "needs a measured reference"));
        CHECK(says(parse_error(R"({"devices": [{"name": "a", "memory": "1G"}]})", &ref), "exactly one of \"speed\""));
        CHECK(says(parse_error(R"({"devices": [{"name": "a", "memory": "1G", "decode_ms": {"attention": 1}}]})"),
                   "missing member \"embedding\""));
        CHECK(says(parse_error(R"({"devices": [{"name": "a", "memory": "1G",
                   "decode_ms": {"embedding": 1, "attention": "fast", "ffn": 1, "head": 1}}]})"),
                   "attention: expected a number"));
        CHECK(says(parse_error(R"({"devices": [)" + dev + "," + dev + "]}", &ref), "a second device named \"a\""));
        CHECK(says(parse_error(R"({"devices": [{"name": "coordinator", "memory": "1G", "speed": 1}]})", &ref),
                   "not \"coordinator\""));
    }
    SUBCASE("links") {
        const std::string two = R"({"devices": [{"name": "a", "memory": "1G", "speed": 1},
                                               {"name": "b", "memory": "1G", "speed": 1}], )";
        CHECK(says(parse_error(two + R"("links": []})", &ref), "no link from coordinator to a"));
        CHECK(says(parse_error(two + R"("default_link": {"latency_ms": 1, "bandwidth_mbps": 1},
                   "links": [{"from": "a", "to": "zz", "latency_ms": 1, "bandwidth_mbps": 1}]})",
                               &ref),
                   "no device named \"zz\""));
        CHECK(says(parse_error(two + R"("default_link": {"latency_ms": 1, "bandwidth_mbps": 0}})", &ref),
                   "bandwidth_mbps: must be positive"));
        CHECK(says(parse_error(two + R"("default_link": {"latency_ms": -1, "bandwidth_mbps": 1}})", &ref),
                   "latency_ms: must not be negative"));
        CHECK(says(parse_error(two + R"("default_link": {"latency_ms": 1, "bandwidth_mbps": 1},
                   "links": [{"from": "a", "to": "a", "latency_ms": 1, "bandwidth_mbps": 1}]})",
                               &ref),
                   "two different nodes"));
    }
    SUBCASE("the error offset points into the file") {
        const std::string text = R"({"devices": [{"name": "a", "memory": "1G", "speed": "x"}]})";
        const auto e = parse_error(text, &ref);
        CHECK(e.offset() == text.find("\"x\""));
    }
}

TEST_CASE("profile: unreadable and oversized files") {
    CHECK_THROWS_AS(load_cluster("/nonexistent/cluster.json"), IoError);
    const auto dir = test::scratch_dir("profile");
    const auto path = dir + "/big.json";
    {
        std::ofstream out(path);
        out << std::string(2000, ' ');
    }
    CHECK_THROWS_AS(read_text_file(path, 1000), FormatError);
    CHECK_THROWS_AS(load_cluster(path), FormatError);  // only whitespace: no JSON value
}
