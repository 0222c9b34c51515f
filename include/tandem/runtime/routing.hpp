// Where messages go: the current plan, the coordinator, and which devices
// consume which extra tensors. Shared by every device loop of a pipeline and
// changed only at step boundaries (when the load balancer moves blocks).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tandem/runtime/plan.hpp"

namespace tandem {

class Routing {
public:
    Routing(Plan plan, DeviceId coordinator, std::int64_t n_blocks)
        : plan_(std::move(plan)), coordinator_(coordinator), n_blocks_(n_blocks) {
        plan_.validate(n_blocks_);
    }

    DeviceId coordinator() const noexcept { return coordinator_; }
    std::int64_t n_blocks() const noexcept { return n_blocks_; }

    Plan plan() const {
        std::lock_guard lock(mutex_);
        return plan_;
    }
    void set_plan(Plan p) {
        p.validate(n_blocks_);
        std::lock_guard lock(mutex_);
        plan_ = std::move(p);
    }

    /// The device that runs block b; the coordinator for b == n_blocks (logits).
    DeviceId device_of_block(std::int64_t b) const {
        if (b == n_blocks_) return coordinator_;
        std::lock_guard lock(mutex_);
        const auto i = plan_.stage_of_block(b);
        if (i < 0) throw ConfigError("no device runs block " + std::to_string(b));
        return plan_.stages[static_cast<std::size_t>(i)].device;
    }

    /// Devices (and their first blocks) that need extra tensor `name`.
    void set_consumers(const std::string& name, std::vector<DeviceId> devices) {
        std::lock_guard lock(mutex_);
        consumers_[name] = std::move(devices);
    }
    std::vector<DeviceId> consumers(const std::string& name) const {
        std::lock_guard lock(mutex_);
        const auto it = consumers_.find(name);
        return it == consumers_.end() ? std::vector<DeviceId>{} : it->second;
    }

private:
    mutable std::mutex mutex_;
    Plan plan_;
    DeviceId coordinator_;
    std::int64_t n_blocks_;
    std::map<std::string, std::vector<DeviceId>> consumers_;
};

}  // namespace tandem
