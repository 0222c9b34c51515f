// The paper suite's devices: `tandem worker` child processes (one per
// emulated phone), started on loopback or each in its own network namespace,
// and the network emulation mode they run under.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tandem/runtime/remote_pipeline.hpp>

namespace tandem::paper {

/// How links are emulated.
///   netns   each node in its own namespace, tc tbf (+ netem) on its egress
///   shaped  token bucket + delay inside the transport (LinkShape), on loopback
///   none    plain loopback
enum class NetMode { Netns, Shaped, None };

inline const char* net_mode_name(NetMode m) {
    return m == NetMode::Netns ? "netns" : m == NetMode::Shaped ? "shaped" : "none";
}

/// Runs a command, returns its exit status and (merged) output.
inline int run_command(const std::string& cmd, std::string* output = nullptr) {
    std::FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return -1;
    char buf[512];
    std::string out;
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    const int st = ::pclose(p);
    if (output) *output = out;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/// The namespaces of netns.sh for as long as this object lives. The calling
/// process moves into the coordinator's namespace (setns: every socket it
/// opens afterwards lives there), so it must be made before any other thread.
class NetnsSetup {
public:
    NetnsSetup(const std::string& script, int n_workers, const std::string& bandwidth, const std::string& delay)
        : script_(script) {
        std::string out;
        if (run_command(script_ + " up " + std::to_string(n_workers) + " " + bandwidth + " " + delay, &out) != 0)
            throw std::runtime_error("netns.sh up failed: " + out);
        netem_ = out.find("netem: ok") != std::string::npos;
        const int fd = ::open("/var/run/netns/tandem-c", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
            if (fd >= 0) ::close(fd);
            run_command(script_ + " down");
            throw std::runtime_error("cannot enter namespace tandem-c: " + std::string(std::strerror(errno)));
        }
        ::close(fd);
    }
    ~NetnsSetup() { run_command(script_ + " down"); }
    NetnsSetup(const NetnsSetup&) = delete;
    NetnsSetup& operator=(const NetnsSetup&) = delete;

    /// Whether the kernel adds the delay (sch_netem); if not, the transport must.
    bool kernel_delay() const noexcept { return netem_; }
    static std::string coordinator_host() { return "10.231.0.1"; }
    static std::string worker_host(int i) { return "10.231.0." + std::to_string(i + 2); }  // i: 0-based
    static std::string worker_netns(int i) { return "tandem-w" + std::to_string(i + 1); }

private:
    std::string script_;
    bool netem_ = false;
};

/// `tandem worker` processes; stopped (SIGTERM, then SIGKILL) on destruction.
class WorkerProcesses {
public:
    WorkerProcesses() = default;
    WorkerProcesses(const WorkerProcesses&) = delete;
    WorkerProcesses& operator=(const WorkerProcesses&) = delete;
    ~WorkerProcesses() { stop(); }

    /// Starts `argv` (its stdout must print "listening on HOST:PORT"); its
    /// stderr goes to `log_path`.
    void spawn(const std::vector<std::string>& argv_s, const std::string& log_path) {
        int fds[2];
        if (::pipe(fds) != 0) throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
        const pid_t pid = ::fork();
        if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the suite
            ::dup2(fds[1], STDOUT_FILENO);
            ::close(fds[0]);
            ::close(fds[1]);
            const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (log >= 0) ::dup2(log, STDERR_FILENO);
            std::vector<char*> argv;
            for (auto& s : const_cast<std::vector<std::string>&>(argv_s)) argv.push_back(s.data());
            argv.push_back(nullptr);
            ::execvp(argv[0], argv.data());
            std::fprintf(stderr, "exec %s failed: %s\n", argv[0], std::strerror(errno));
            ::_exit(127);
        }
        ::close(fds[1]);
        pids_.push_back(pid);
        std::string out;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (out.find('\n') == std::string::npos) {
            pollfd p{fds[0], POLLIN, 0};
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
            if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
            char buf[256];
            const auto n = ::read(fds[0], buf, sizeof buf);
            if (n <= 0) break;
            out.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fds[0]);
        const auto at = out.find("listening on ");
        if (at == std::string::npos)
            throw std::runtime_error("worker did not start (see " + log_path + "): " + out);
        const auto addr = out.substr(at + 13, out.find(' ', at + 13) - (at + 13));
        endpoints_.push_back(WorkerEndpoint::parse(addr));
    }

    const std::vector<WorkerEndpoint>& endpoints() const noexcept { return endpoints_; }

    /// Sends `sig` to worker `i` (e.g. SIGKILL: a device that vanishes).
    void kill(std::size_t i, int sig) const {
        if (i < pids_.size() && pids_[i] > 0) ::kill(pids_[i], sig);
    }

    void stop() {
        for (const auto pid : pids_)
            if (pid > 0) ::kill(pid, SIGTERM);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
        for (auto& pid : pids_) {
            while (pid > 0) {
                int status = 0;
                const auto r = ::waitpid(pid, &status, WNOHANG);
                if (r == pid || r < 0) {
                    pid = 0;
                } else if (std::chrono::steady_clock::now() > deadline) {
                    ::kill(pid, SIGKILL);
                    ::waitpid(pid, &status, 0);
                    pid = 0;
                } else {
                    std::this_thread::sleep_for(std::chrono::milliseconds(10));
                }
            }
        }
        pids_.clear();
        endpoints_.clear();
    }

private:
    std::vector<pid_t> pids_;
    std::vector<WorkerEndpoint> endpoints_;
};

}  // namespace tandem::paper
