// A small command-line parser for the tandem CLI: --name value, --name=value,
// boolean --flags, and positional arguments, with clear errors.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::cli {

class Args {
public:
    /// `flags` lists options that take no value.
    Args(int argc, char** argv, std::set<std::string> flags = {}) : flags_(std::move(flags)) {
        for (int i = 0; i < argc; ++i) {
            std::string a = argv[i];
            if (a.size() > 1 && a[0] == '-' && !(a.size() > 1 && (std::isdigit(static_cast<unsigned char>(a[1])) || a[1] == '.'))) {
                std::string name = a.substr(a.find_first_not_of('-'));
                std::string value;
                const auto eq = name.find('=');
                if (eq != std::string::npos) {
                    value = name.substr(eq + 1);
                    name = name.substr(0, eq);
                } else if (flags_.count(name)) {
                    value = "1";
                } else if (i + 1 < argc) {
                    value = argv[++i];
                } else {
                    throw std::runtime_error("option --" + name + " needs a value");
                }
                opts_[name] = value;
            } else {
                positional_.push_back(a);
            }
        }
    }

    bool has(const std::string& name) const { return opts_.count(name) != 0; }
    std::string str(const std::string& name, const std::string& fallback = "") const {
        used_.insert(name);
        const auto it = opts_.find(name);
        return it == opts_.end() ? fallback : it->second;
    }
    /// First present name among aliases (e.g. {"m", "model"}).
    std::string str(std::initializer_list<std::string> names, const std::string& fallback = "") const {
        for (const auto& n : names) used_.insert(n);
        for (const auto& n : names)
            if (has(n)) return opts_.at(n);
        return fallback;
    }
    template <typename T>
    T num(std::initializer_list<std::string> names, T fallback) const {
        const auto s = str(names, "");
        if (s.empty()) return fallback;
        try {
            std::size_t end = 0;
            T v;
            if constexpr (std::is_floating_point_v<T>) v = static_cast<T>(std::stod(s, &end));
            else v = static_cast<T>(std::stoll(s, &end));
            if (end != s.size()) throw std::invalid_argument(s);
            return v;
        } catch (const std::exception&) {
            throw std::runtime_error("option --" + *names.begin() + " expects a number, got '" + s + "'");
        }
    }
    bool flag(std::initializer_list<std::string> names) const {
        for (const auto& n : names) used_.insert(n);
        for (const auto& n : names)
            if (has(n)) return opts_.at(n) != "0" && opts_.at(n) != "false";
        return false;
    }
    const std::vector<std::string>& positional() const noexcept { return positional_; }

    /// Throws if an option was given that the command never asked about.
    void reject_unknown() const {
        for (const auto& [k, v] : opts_)
            if (!used_.count(k)) throw std::runtime_error("unknown option --" + k);
    }

private:
    std::set<std::string> flags_;
    std::map<std::string, std::string> opts_;
    std::vector<std::string> positional_;
    mutable std::set<std::string> used_;
};

/// "a,b,,c" -> {"a", "b", "c"}: a comma-separated list, empty items dropped.
inline std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::string cur;
    for (const char c : s) {
        if (c == ',') {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

/// Parses sizes like "512M", "2G", "1048576".
inline std::uint64_t parse_bytes(const std::string& s) {
    if (s.empty()) throw std::runtime_error("empty size");
    std::size_t end = 0;
    const double v = std::stod(s, &end);
    std::string unit = s.substr(end);
    double mul = 1;
    if (unit == "K" || unit == "k" || unit == "KiB" || unit == "KB") mul = 1024.0;
    else if (unit == "M" || unit == "m" || unit == "MiB" || unit == "MB") mul = 1024.0 * 1024;
    else if (unit == "G" || unit == "g" || unit == "GiB" || unit == "GB") mul = 1024.0 * 1024 * 1024;
    else if (!unit.empty() && unit != "B") throw std::runtime_error("unknown size unit '" + unit + "'");
    return static_cast<std::uint64_t>(v * mul);
}

}  // namespace tandem::cli
