// Test support for tandem's network tests with real processes and sockets:
// `tandem worker` child processes (logs captured to files), a command runner
// for `tandem run`, and RawLink, a client that speaks the wire format by hand
// so a test can send exactly the bytes a hostile peer would.
#pragma once

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>

#include <tandem/model/generator.hpp>
#include <tandem/runtime/remote_pipeline.hpp>
#include <tandem/transport/protocol.hpp>
#include <tandem/transport/tls.hpp>

#include "support/paths.hpp"
#include "transport/raw_link.hpp"

namespace tandem::nettest {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

inline std::string cli() { return TANDEM_CLI; }

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

/// The golden greedy text of stories260K (llama2.c's output, trailing newlines dropped).
inline std::string golden_text() {
    auto g = read_file(test::model_path("stories260K.greedy.txt"));
    while (!g.empty() && g.back() == '\n') g.pop_back();
    return g;
}

/// A fresh directory for one test (cache dirs, keys, logs).
inline std::string fresh_dir(const std::string& tag) {
    static int counter = 0;
    const auto d = test::scratch_dir("network") + "/" + tag + "-" + std::to_string(++counter);
    std::system(("rm -rf '" + d + "' && mkdir -p '" + d + "'").c_str());
    return d;
}

inline std::string make_key(const std::string& dir, const std::string& name = "cluster.key") {
    const auto path = dir + "/" + name;
    ClusterKey::generate().save(path);
    return path;
}

inline std::size_t count_files(const std::string& dir) {
    std::size_t n = 0;
    if (auto* d = ::opendir(dir.c_str())) {
        while (auto* e = ::readdir(d))
            if (e->d_name[0] != '.') ++n;
        ::closedir(d);
    }
    return n;
}

/// Resident memory of a process in KiB (VmRSS of /proc/PID/status), 0 if gone.
inline std::uint64_t rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
    return 0;
}

/// A child process with stdout and stderr going to files.
class Process {
public:
    Process(std::vector<std::string> argv, std::string out_path, std::string err_path)
        : out_(std::move(out_path)), err_(std::move(err_path)) {
        const pid_t pid = ::fork();
        if (pid < 0) throw std::runtime_error("fork failed");
        if (pid == 0) {
            const int o = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            const int e = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ::dup2(o, STDOUT_FILENO);
            ::dup2(e, STDERR_FILENO);
            ::close(o);
            ::close(e);
            std::vector<char*> args;
            for (auto& s : argv) args.push_back(s.data());
            args.push_back(nullptr);
            ::execv(args[0], args.data());
            ::_exit(127);
        }
        pid_ = pid;
    }
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGCONT);
            ::kill(pid_, SIGKILL);
            int st = 0;
            ::waitpid(pid_, &st, 0);
        }
    }

    pid_t pid() const noexcept { return pid_; }
    std::string out() const { return read_file(out_); }
    std::string err() const { return read_file(err_); }
    void signal(int sig) const {
        if (pid_ > 0) ::kill(pid_, sig);
    }

    /// Waits for the exit; returns the exit code (128 + signal when killed), or
    /// nullopt if it is still running after `timeout`.
    std::optional<int> wait(std::chrono::milliseconds timeout) {
        const auto end = clock::now() + timeout;
        while (pid_ > 0) {
            int st = 0;
            const auto r = ::waitpid(pid_, &st, WNOHANG);
            if (r == pid_) {
                pid_ = 0;
                code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                break;
            }
            if (clock::now() > end) return std::nullopt;
            std::this_thread::sleep_for(5ms);
        }
        return code_;
    }
    bool running() {
        return pid_ > 0 && !wait(0ms).has_value();
    }

    /// Waits until `what` appears in the captured stderr (or stdout); true if it did.
    bool wait_for_text(const std::string& what, std::chrono::milliseconds timeout, bool in_stdout = false) const {
        const auto end = clock::now() + timeout;
        for (;;) {
            if ((in_stdout ? out() : err()).find(what) != std::string::npos) return true;
            if (clock::now() > end) return false;
            std::this_thread::sleep_for(10ms);
        }
    }

private:
    pid_t pid_ = 0;
    int code_ = -1;
    std::string out_, err_;
};

/// Runs a command to completion (killed after `timeout`).
struct CommandResult {
    int code = -1;
    std::string out, err;
    double seconds = 0;
};
inline CommandResult run_command(const std::vector<std::string>& argv, const std::string& dir,
                                 std::chrono::milliseconds timeout = 60s) {
    static int n = 0;
    const auto base = dir + "/cmd" + std::to_string(++n);
    const auto t0 = clock::now();
    Process p(argv, base + ".out", base + ".err");
    auto code = p.wait(timeout);
    CommandResult r;
    r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    r.code = code ? *code : -1;
    r.out = p.out();
    r.err = p.err();
    return r;
}

/// Link timings that keep the tests fast: a silent peer is lost after 1.5 s.
struct FastLinks {
    int idle_ms = 1500;
    int heartbeat_ms = 250;
    int handshake_ms = 1000;
    int grace_ms = 400;
    std::string min_rate = "64K";

    std::vector<std::string> args() const {
        return {"--idle-timeout", std::to_string(idle_ms), "--heartbeat", std::to_string(heartbeat_ms),
                "--handshake-timeout", std::to_string(handshake_ms), "--frame-grace", std::to_string(grace_ms),
                "--min-rate", min_rate};
    }
    LinkOptions link() const {
        LinkOptions l;
        l.idle_timeout = std::chrono::milliseconds(idle_ms);
        l.handshake_timeout = std::chrono::milliseconds(handshake_ms);
        l.frame_grace = std::chrono::milliseconds(grace_ms);
        return l;
    }
};

/// A `tandem worker` child process on 127.0.0.1 with a free port.
class WorkerProcess {
public:
    /// `key` empty: --insecure. `extra` goes at the end of the command line.
    /// `port` 0: a free one.
    WorkerProcess(const std::string& dir, const std::string& name, const std::string& key,
                  std::vector<std::string> extra = {}, const std::string& cache_dir = "", std::uint16_t port = 0)
        : cache_(cache_dir.empty() ? dir + "/cache-" + name : cache_dir) {
        std::vector<std::string> argv = {cli(),    "worker", "--listen",  "127.0.0.1:" + std::to_string(port),
                                         "--name", name,     "--threads", "1",
                                         "--cache-dir", cache_};
        if (key.empty()) {
            argv.push_back("--insecure");
        } else {
            argv.push_back("--key");
            argv.push_back(key);
        }
        argv.insert(argv.end(), extra.begin(), extra.end());
        proc_ = std::make_unique<Process>(argv, dir + "/" + name + ".out", dir + "/" + name + ".err");
        if (!proc_->wait_for_text("listening on", 20s, true))
            throw std::runtime_error("worker " + name + " did not start: " + proc_->out() + proc_->err());
        const auto out = proc_->out();
        const auto at = out.find("listening on ") + 13;
        endpoint_ = WorkerEndpoint::parse(out.substr(at, out.find(' ', at) - at));
    }

    const WorkerEndpoint& endpoint() const noexcept { return endpoint_; }
    std::uint16_t port() const noexcept { return endpoint_.port; }
    pid_t pid() const { return proc_->pid(); }
    std::string log() const { return proc_->err(); }
    const std::string& cache_dir() const noexcept { return cache_; }
    Process& process() { return *proc_; }
    bool wait_log(const std::string& what, std::chrono::milliseconds timeout = 5s) const {
        return proc_->wait_for_text(what, timeout);
    }
    std::uint64_t rss_kib() const { return nettest::rss_kib(proc_->pid()); }
    void kill(int sig = SIGKILL) { proc_->signal(sig); }
    /// Stops it with SIGTERM (as a user would) and waits.
    std::optional<int> stop(std::chrono::milliseconds timeout = 5s) {
        proc_->signal(SIGTERM);
        return proc_->wait(timeout);
    }

private:
    std::string cache_;
    std::unique_ptr<Process> proc_;
    WorkerEndpoint endpoint_;
};

/// The tokens of the unsplit model (the single-device engine), greedy.
inline std::vector<std::int32_t> single_device_tokens(const std::shared_ptr<const Model>& model,
                                                      const std::vector<std::int32_t>& prompt, std::int32_t n) {
    ThreadPool pool(1);
    Generator g(model, pool);
    GenerateOptions opt;
    opt.max_tokens = n;
    return g.generate(prompt, opt);
}

/// Generates `n` greedy tokens from `prompt` over the given workers.
inline std::vector<std::int32_t> remote_tokens(RemotePipeline& p, const std::vector<std::int32_t>& prompt,
                                               std::int32_t n) {
    RequestSpec r;
    r.prompt = prompt;
    r.max_tokens = n;
    p.submit(std::move(r));
    const auto results = p.run();
    if (results.size() != 1 || !results[0].error.empty())
        throw std::runtime_error("remote generation failed: " + (results.empty() ? "" : results[0].error));
    return results[0].tokens;
}

/// Bytes of the distinct tensors `blocks` read: equal contents travel and are cached once.
inline std::uint64_t tensor_bytes(const Model& m, BlockRange blocks) {
    std::map<std::uint64_t, std::uint64_t> unique;
    for (const auto& d : describe_tensors(m, blocks)) unique[d.hash] = d.bytes;
    std::uint64_t n = 0;
    for (const auto& [h, b] : unique) n += b;
    return n;
}

inline std::size_t distinct_tensors(const Model& m, BlockRange blocks) {
    std::set<std::uint64_t> unique;
    for (const auto& d : describe_tensors(m, blocks)) unique.insert(d.hash);
    return unique.size();
}

inline RemoteOptions remote_options(TlsConfig* tls, const FastLinks& fl = {}) {
    RemoteOptions ro;
    ro.tls = tls;
    ro.link = fl.link();
    ro.heartbeat = std::chrono::milliseconds(fl.heartbeat_ms);
    return ro;
}

inline std::vector<WorkerEndpoint> endpoints(const std::vector<std::unique_ptr<WorkerProcess>>& ws) {
    std::vector<WorkerEndpoint> out;
    for (const auto& w : ws) out.push_back(w->endpoint());
    return out;
}

inline std::vector<DeviceId> device_ids(std::size_t n) {
    std::vector<DeviceId> ids;
    for (std::size_t i = 0; i < n; ++i) ids.push_back(static_cast<DeviceId>(i + 1));
    return ids;
}

/// A pipeline over `eps`, retrying while a worker still ends the previous
/// coordinator's session ("busy"), for up to 5 s.
inline std::unique_ptr<RemotePipeline> connect_when_free(std::shared_ptr<const Model> model,
                                                         const std::vector<WorkerEndpoint>& eps, const Plan& plan,
                                                         const RemoteOptions& ro) {
    const auto end = clock::now() + 5s;
    for (;;) {
        try {
            return std::make_unique<RemotePipeline>(model, eps, plan, ro);
        } catch (const ProtocolError& e) {
            if (std::string(e.what()).find("busy") == std::string::npos || clock::now() > end) throw;
            std::this_thread::sleep_for(50ms);
        }
    }
}

}  // namespace tandem::nettest
