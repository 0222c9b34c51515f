// Starts `tandem worker` child processes on loopback for `tandem run
// --local-workers N`, learns their ports, and stops them at the end.
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
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tandem/runtime/remote_pipeline.hpp>

namespace tandem::cli {

class LocalWorkers {
public:
    /// Starts n workers: `self_exe worker --listen 127.0.0.1:0 --name local-i <extra...> <each[i]...>`.
    LocalWorkers(int n, const std::vector<std::string>& extra, const std::string& self_exe = "/proc/self/exe",
                 const std::vector<std::vector<std::string>>& each = {}) {
        for (int i = 0; i < n; ++i) {
            auto args = extra;
            if (static_cast<std::size_t>(i) < each.size())
                args.insert(args.end(), each[static_cast<std::size_t>(i)].begin(), each[static_cast<std::size_t>(i)].end());
            spawn(i, args, self_exe);
        }
    }
    LocalWorkers(const LocalWorkers&) = delete;
    LocalWorkers& operator=(const LocalWorkers&) = delete;
    ~LocalWorkers() { stop(); }

    const std::vector<WorkerEndpoint>& endpoints() const noexcept { return endpoints_; }
    const std::vector<pid_t>& pids() const noexcept { return pids_; }

    void stop() {
        for (auto pid : pids_)
            if (pid > 0) ::kill(pid, SIGTERM);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
        for (auto& pid : pids_) {
            while (pid > 0) {
                int status = 0;
                const auto r = ::waitpid(pid, &status, WNOHANG);
                if (r == pid || r < 0) {
                    pid = 0;
                    break;
                }
                if (std::chrono::steady_clock::now() > deadline) {
                    ::kill(pid, SIGKILL);
                    ::waitpid(pid, &status, 0);
                    pid = 0;
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
        }
    }

private:
    void spawn(int i, const std::vector<std::string>& extra, const std::string& exe) {
        int fds[2];
        if (::pipe(fds) != 0) throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
        std::vector<std::string> argv_s = {"tandem", "worker", "--listen", "127.0.0.1:0", "--name",
                                           "local-" + std::to_string(i + 1)};
        argv_s.insert(argv_s.end(), extra.begin(), extra.end());
        const pid_t pid = ::fork();
        if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the coordinator
            ::dup2(fds[1], STDOUT_FILENO);
            ::close(fds[0]);
            ::close(fds[1]);
            std::vector<char*> argv;
            for (auto& s : argv_s) argv.push_back(s.data());
            argv.push_back(nullptr);
            ::execv(exe.c_str(), argv.data());
            std::fprintf(stderr, "exec %s failed: %s\n", exe.c_str(), std::strerror(errno));
            ::_exit(127);
        }
        ::close(fds[1]);
        pids_.push_back(pid);
        // Read "... listening on HOST:PORT (...)" from the child's stdout.
        std::string out;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (out.find('\n') == std::string::npos) {
            pollfd p{fds[0], POLLIN, 0};
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
            if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
            char buf[256];
            const auto n = ::read(fds[0], buf, sizeof buf);
            if (n <= 0) break;
            out.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fds[0]);
        const auto at = out.find("listening on ");
        if (at == std::string::npos) throw std::runtime_error("local worker " + std::to_string(i + 1) + " did not start: " + out);
        const auto addr = out.substr(at + 13, out.find(' ', at + 13) - (at + 13));
        endpoints_.push_back(WorkerEndpoint::parse(addr));
    }

    std::vector<pid_t> pids_;
    std::vector<WorkerEndpoint> endpoints_;
};

}  // namespace tandem::cli
