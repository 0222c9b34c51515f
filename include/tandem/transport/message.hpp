// What devices send each other: activations tagged with their request,
// positions and step; logits on the way back; and runtime control.
//
// A message is one work item: one sequence's step (a prompt chunk at prefill,
// one token at decode). Transports move messages; they do not look inside.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace tandem {

using DeviceId = std::uint32_t;
using RequestId = std::uint64_t;  // equal to the SeqId the segments key their caches by

enum class MessageKind : std::uint8_t {
    Activations = 1,  // hidden state (and extras) for the next blocks
    Logits = 2,       // the head's output, back to the coordinator
    Release = 3,      // the request ended: drop its state
    Control = 4,      // runtime control, the verb in `text`
    Error = 5,        // a device could not run a step; the reason in `text`
};

/// A row-major float tensor with a name ("hidden", "logits", or an extra).
struct Tensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::vector<float> data;

    std::int64_t n_elements() const noexcept {
        std::int64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
};

struct Message {
    MessageKind kind = MessageKind::Activations;
    DeviceId from = 0;
    RequestId request = 0;
    std::uint64_t step = 0;                // 0 = prefill, then one per decoded token
    std::int64_t first_block = 0;          // the first block that consumes this message
    std::vector<std::int32_t> positions;   // (n)
    std::vector<std::int32_t> tokens;      // (n) when the next block is the embedding
    std::vector<Tensor> tensors;
    std::string text;                      // Control verb or Error reason
    DeviceId lost_device = 0;              // Error: the device found unreachable (0: none; the step itself failed)
    // Not on the wire: when the receiving transport began reading this
    // message and when it had decoded it (the trace's "receive" span; zero
    // for transports that do not measure it).
    std::chrono::steady_clock::time_point receive_began{}, received{};

    const Tensor* find(const std::string& name) const {
        for (const auto& t : tensors)
            if (t.name == name) return &t;
        return nullptr;
    }

    /// Payload bytes (tensors, tokens, positions), for accounting.
    std::uint64_t payload_bytes() const noexcept {
        std::uint64_t b = (positions.size() + tokens.size()) * sizeof(std::int32_t);
        for (const auto& t : tensors) b += t.data.size() * sizeof(float);
        return b;
    }
};

}  // namespace tandem
