// A persistent pool of worker threads for data-parallel kernels.
//
// Workers are created once and parked between jobs: a job costs two atomic
// round trips, not thread creation. Every call runs `fn(thread_index,
// n_threads)` on all threads (the caller is thread 0) and returns when all are
// done, which is the shape matmuls want: each thread takes a fixed slice of the
// output rows. Workers spin for up to 200 us before sleeping on an atomic wait,
// since a forward pass issues jobs microseconds apart.
//
// Not re-entrant: one job at a time per pool (each Device owns its own pool).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tandem {

class ThreadPool {
public:
    /// n_threads = 0 means one per hardware thread.
    explicit ThreadPool(unsigned n_threads = 0) {
        if (n_threads == 0) n_threads = std::max(1u, std::thread::hardware_concurrency());
        n_threads_ = n_threads;
        workers_.reserve(n_threads - 1);
        for (unsigned i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
    }

    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    ~ThreadPool() {
        stop_.store(true, std::memory_order_release);
        generation_.fetch_add(1, std::memory_order_acq_rel);
        generation_.notify_all();
        for (auto& t : workers_) t.join();
    }

    unsigned size() const noexcept { return n_threads_; }

    /// Runs fn(thread_index, n_threads) on every thread and waits for all.
    /// The first exception thrown by any thread is rethrown here.
    void run(const std::function<void(unsigned, unsigned)>& fn) {
        if (n_threads_ == 1) {
            fn(0, 1);
            return;
        }
        job_ = &fn;
        error_ = nullptr;
        pending_.store(n_threads_ - 1, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_acq_rel);
        generation_.notify_all();
        invoke(0);
        // Wait for the workers: spin first (jobs are short), then sleep.
        Spinner spinner;
        while (pending_.load(std::memory_order_acquire) != 0) {
            if (!spinner.spin()) {
                const auto p = pending_.load(std::memory_order_acquire);
                if (p != 0) pending_.wait(p, std::memory_order_acquire);
            }
        }
        job_ = nullptr;
        if (error_) std::rethrow_exception(error_);
    }

    /// Splits [0, n) into contiguous chunks, one per thread, and runs
    /// fn(begin, end) on each non-empty chunk.
    template <typename F>
    void parallel_for(std::int64_t n, F&& fn) {
        if (n <= 0) return;
        run([&](unsigned t, unsigned nt) {
            const std::int64_t chunk = (n + nt - 1) / nt;
            const std::int64_t b = std::min<std::int64_t>(n, chunk * t);
            const std::int64_t e = std::min<std::int64_t>(n, b + chunk);
            if (b < e) fn(b, e);
        });
    }

private:
    /// Spins for up to kSpinTime, then tells the caller to sleep. Waking a
    /// sleeping thread costs tens of microseconds (more in a VM), so a pool
    /// that sleeps between the matmuls of one forward pass loses more than
    /// its work: measured on stories260K's 64-token prefill, the serial work
    /// between jobs outlasted a 16K-iteration spin and 2 threads ran at half
    /// the speed of one.
    struct Spinner {
        static constexpr auto kSpinTime = std::chrono::microseconds(200);
        std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
        unsigned n = 0;
        bool spin() noexcept {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            asm volatile("yield");
#endif
            if (++n % 64 != 0) return true;
            return std::chrono::steady_clock::now() - start < kSpinTime;
        }
    };

    void invoke(unsigned i) {
        try {
            (*job_)(i, n_threads_);
        } catch (...) {
            std::lock_guard lock(error_mutex_);
            if (!error_) error_ = std::current_exception();
        }
    }

    void worker_loop(unsigned i) {
        std::uint64_t seen = 0;
        for (;;) {
            // Wait for a new generation: spin, then sleep.
            std::uint64_t g = generation_.load(std::memory_order_acquire);
            Spinner spinner;
            while (g == seen) {
                if (!spinner.spin()) generation_.wait(seen, std::memory_order_acquire);
                g = generation_.load(std::memory_order_acquire);
            }
            seen = g;
            if (stop_.load(std::memory_order_acquire)) return;
            invoke(i);
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
        }
    }

    unsigned n_threads_ = 1;
    std::vector<std::thread> workers_;
    const std::function<void(unsigned, unsigned)>* job_ = nullptr;
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<unsigned> pending_{0};
    std::atomic<bool> stop_{false};
    std::mutex error_mutex_;
    std::exception_ptr error_;
};

}  // namespace tandem
