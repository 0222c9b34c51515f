// A placement: which device runs which contiguous blocks, in pipeline order.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/model/config.hpp"
#include "tandem/transport/message.hpp"

namespace tandem {

struct Stage {
    DeviceId device = 0;
    BlockRange blocks;
    bool operator==(const Stage&) const = default;
};

struct Plan {
    std::vector<Stage> stages;  // in pipeline order; their ranges tile [0, n_blocks)

    bool operator==(const Plan&) const = default;

    /// Throws ConfigError unless the stages tile [0, n_blocks) in order.
    void validate(std::int64_t n_blocks) const {
        if (stages.empty()) throw ConfigError("a plan needs at least one stage");
        std::int64_t next = 0;
        for (const auto& s : stages) {
            if (s.blocks.begin != next || s.blocks.end <= s.blocks.begin)
                throw ConfigError("plan " + describe() + " does not tile the model's " + std::to_string(n_blocks) +
                                  " blocks in order");
            next = s.blocks.end;
        }
        if (next != n_blocks)
            throw ConfigError("plan " + describe() + " covers " + std::to_string(next) + " of " +
                              std::to_string(n_blocks) + " blocks");
    }

    /// The stage whose range holds block b (b == n_blocks: none, returns -1).
    std::int64_t stage_of_block(std::int64_t b) const noexcept {
        for (std::size_t i = 0; i < stages.size(); ++i)
            if (stages[i].blocks.contains(b)) return static_cast<std::int64_t>(i);
        return -1;
    }

    const Stage* stage_of_device(DeviceId d) const noexcept {
        for (const auto& s : stages)
            if (s.device == d) return &s;
        return nullptr;
    }

    std::string describe() const {
        std::ostringstream o;
        for (std::size_t i = 0; i < stages.size(); ++i)
            o << (i ? "," : "") << "d" << stages[i].device << "=" << to_string(stages[i].blocks);
        return o.str();
    }

    /// Splits the model into `n` stages of (nearly) equal numbers of layers;
    /// the embedding goes with the first stage and the head with the last.
    static Plan even(const ModelConfig& c, const std::vector<DeviceId>& devices) {
        const auto n = static_cast<std::int64_t>(devices.size());
        if (n == 0) throw ConfigError("an even split needs at least one device");
        if (n > c.n_layers) throw ConfigError("cannot split " + std::to_string(c.n_layers) + " layers over " +
                                              std::to_string(n) + " devices");
        Plan p;
        std::int64_t layer = 0;
        for (std::int64_t i = 0; i < n; ++i) {
            const std::int64_t count = c.n_layers / n + (i < c.n_layers % n ? 1 : 0);
            const std::int64_t first = i == 0 ? 0 : 1 + layer, last = i == n - 1 ? c.n_layers + 2 : 1 + layer + count;
            p.stages.push_back({devices[static_cast<std::size_t>(i)], BlockRange::layers(c, first, last)});
            layer += count;
        }
        return p;
    }

    /// Parses "0:3,3:5": layer ranges (the first stage also gets the embedding,
    /// the last the head), or "b0:7,b7:12": raw block ranges (sub-layer cuts).
    static Plan parse(const std::string& spec, const ModelConfig& c, const std::vector<DeviceId>& devices) {
        Plan p;
        std::stringstream ss(spec);
        std::string part;
        std::size_t i = 0;
        std::vector<std::string> parts;
        while (std::getline(ss, part, ',')) parts.push_back(part);
        if (parts.size() != devices.size())
            throw ConfigError("split '" + spec + "' has " + std::to_string(parts.size()) + " ranges for " +
                              std::to_string(devices.size()) + " devices");
        for (const auto& s : parts) {
            const bool raw = !s.empty() && s[0] == 'b';
            const auto colon = s.find(':');
            if (colon == std::string::npos) throw ConfigError("split range '" + s + "' is not FIRST:END");
            std::int64_t a = 0, b = 0;
            try {
                a = std::stoll(s.substr(raw ? 1 : 0, colon - (raw ? 1 : 0)));
                b = std::stoll(s.substr(colon + 1 + ((raw && s.size() > colon + 1 && s[colon + 1] == 'b') ? 1 : 0)));
            } catch (const std::exception&) {
                throw ConfigError("split range '" + s + "' is not FIRST:END");
            }
            BlockRange r;
            if (raw) {
                r = {a, b};
            } else {
                if (a < 0 || b > c.n_layers || a >= b)
                    throw ConfigError("layer range '" + s + "' outside [0, " + std::to_string(c.n_layers) + "]");
                r = {a == 0 ? 0 : 1 + 2 * a, b == c.n_layers ? c.n_blocks() : 1 + 2 * b};
            }
            p.stages.push_back({devices[i++], r});
        }
        p.validate(c.n_blocks());
        return p;
    }
};

}  // namespace tandem
