// Emulated devices: N times slower by sleeping (not spinning), memory above the
// budget refused, slowdowns switched on at scheduled times.
#include <doctest/doctest.h>

#include <chrono>
#include <ctime>

#include <tandem/emulation/emulated_device.hpp>

using namespace tandem;

namespace {
// About `ms` of real CPU work.
void burn(double ms) {
    const auto t0 = std::chrono::steady_clock::now();
    volatile double x = 0;
    while (std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() < ms) x = x + 1.0;
}
double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }
}  // namespace

TEST_CASE("emulation: a 4x device takes 4x the time but no extra CPU") {
    EmulatedDevice d({.name = "phone", .slowdown = 4.0, .threads = 1});
    const double c0 = cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    const double reported = d.compute([](ThreadPool&) { burn(20); });
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = cpu_seconds() - c0;
    CHECK(wall >= 0.99 * reported);  // the sleep made up the difference (sleep may overshoot, never undershoot)
    CHECK(wall >= 0.075);           // 4 x 20 ms
    CHECK(cpu < 0.045);             // the other 60 ms were slept
    CHECK(d.speed() == doctest::Approx(0.25));
}

TEST_CASE("emulation: memory above the budget is refused") {
    EmulatedDevice d({.name = "small", .memory_bytes = 1000});
    d.reserve(900);
    CHECK_THROWS_AS(d.reserve(200), MemoryLimitError);
    try {
        d.reserve(200);
    } catch (const MemoryLimitError& e) {
        CHECK(e.requested() == 200);
        CHECK(e.available() == 100);
    }
}

TEST_CASE("emulation: scheduled slowdowns and presets") {
    const auto s = SlowdownSchedule::parse("0.05s:3x,10s:1x");
    CHECK(s.factor_at(0.0) == 1.0);
    CHECK(s.factor_at(0.06) == 3.0);
    CHECK(s.factor_at(11) == 1.0);
    CHECK_THROWS_AS(SlowdownSchedule::parse("soon:fast"), ConfigError);
    CHECK_THROWS_AS(SlowdownSchedule::parse("1s:0.5x"), ConfigError);

    auto p = EmulationProfile::preset("mid-range");
    p.schedule = SlowdownSchedule::parse("0.05s:2x");
    EmulatedDevice d(p);
    CHECK(d.current_extra() == 1.0);
    burn(60);
    CHECK(d.current_extra() == 2.0);
    CHECK(d.speed() == doctest::Approx(1.0 / (p.slowdown * 2.0)));
    CHECK_THROWS_AS(EmulationProfile::preset("pager"), ConfigError);
    CHECK(EmulationProfile::preset("low-end").slowdown > EmulationProfile::preset("high-end").slowdown);
}

TEST_CASE("emulation: a noisy device varies each step within its bounds, around its slowdown") {
    EmulatedDevice d({.name = "busy-phone", .slowdown = 3.0, .threads = 1, .noise = 0.5});
    double lo = 1e9, hi = 0, sum = 0;
    constexpr int n = 40;
    for (int i = 0; i < n; ++i) {
        // The reported time is factor x the real time: their ratio is the step's factor.
        double real = 0;
        const double reported = d.compute([&](ThreadPool&) {
            const auto t0 = std::chrono::steady_clock::now();
            burn(1);
            real = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        });
        const double f = reported / real;
        lo = std::min(lo, f);
        hi = std::max(hi, f);
        sum += f;
    }
    CHECK(lo >= 1.5 * 0.99);   // 3 x (1 - 0.5)
    CHECK(hi <= 4.5 * 1.05);   // 3 x (1 + 0.5), plus the clock's granularity
    CHECK(hi - lo > 0.5);      // it does vary
    CHECK(sum / n == doctest::Approx(3.0).epsilon(0.2));
    CHECK_THROWS_AS(EmulatedDevice({.name = "x", .noise = 1.5}), ConfigError);
}
