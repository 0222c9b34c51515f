// libFuzzer target for the GGUF reader: parse arbitrary bytes, then use
// everything the reader accepted the way tandem does (typed metadata access,
// dequantizing tensor rows, re-writing the file). Only tandem::Error may
// escape the library; any crash, sanitizer report, leak, or broken invariant
// (checked with __builtin_trap) is a finding. Run with tests/fuzz/run.sh.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <tandem/gguf/quant.hpp>
#include <tandem/gguf/reader.hpp>
#include <tandem/gguf/writer.hpp>

namespace {

void require(bool ok) {
    if (!ok) __builtin_trap();
}

template <typename T>
void try_as(const tandem::GgufValue& v) {
    try {
        (void)v.as<T>();
    } catch (const tandem::Error&) {
    }
}

void walk(const tandem::GgufValue& v) {
    try_as<std::string>(v);
    try_as<bool>(v);
    try_as<std::int8_t>(v);
    try_as<std::uint32_t>(v);
    try_as<std::int64_t>(v);
    try_as<std::uint64_t>(v);
    try_as<float>(v);
    try_as<double>(v);
    if (!v.is_array()) return;
    try_as<std::vector<std::string>>(v);
    try_as<std::vector<std::int32_t>>(v);
    try_as<std::vector<float>>(v);
    try_as<std::vector<std::vector<std::string>>>(v);
    for (const auto& item : v.array().items) {
        require(item.type() == v.array().element_type);
        walk(item);
    }
}

void use(const tandem::GgufFile& f) {
    require(f.data_offset() % f.alignment() == 0);
    for (const auto& [key, value] : f.metadata()) {
        require(f.find(key) != nullptr);
        walk(value);
    }
    std::uint64_t total = 0;
    for (const auto& t : f.tensors()) {
        require(f.find_tensor(t.name) == &t);
        require(t.data.data() >= f.bytes().data());
        require(t.data.data() + t.data.size() <= f.bytes().data() + f.bytes().size());
        require(t.n_bytes() == t.n_elements() / tandem::type_traits(t.type).block_size *
                                   tandem::type_traits(t.type).type_size);
        total += t.n_bytes();
        if (!tandem::can_dequantize(t.type) || t.rows() == 0 || t.cols() == 0) continue;
        std::vector<float> row(static_cast<std::size_t>(t.cols()));
        tandem::dequantize_row(t.type, t.data.data(), row.data(), static_cast<std::int64_t>(t.cols()));
    }
    // Whatever was read can be written again, and the copy reads back the same.
    // (Tensors may overlap in a hostile file: skip copies that would blow up.)
    if (total > 4 * f.file_size() + 4096) return;
    try {
        tandem::GgufWriter w;
        w.set_version(f.version());
        for (const auto& [key, value] : f.metadata()) w.set(key, value);
        for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape, t.data);
        const auto image = w.write_to_memory();
        const auto g = tandem::GgufFile::from_memory(image);
        require(g.metadata().size() == f.metadata().size());
        require(g.tensors().size() == f.tensors().size());
        for (std::size_t i = 0; i < g.tensors().size(); ++i) {
            const auto& a = g.tensors()[i];
            const auto& b = f.tensors()[i];
            require(a.name == b.name && a.type == b.type && a.shape == b.shape && a.n_bytes() == b.n_bytes());
            require(a.data.empty() || std::memcmp(a.data.data(), b.data.data(), a.data.size()) == 0);
        }
        tandem::GgufWriter w2;
        w2.set_version(g.version());
        for (const auto& [key, value] : g.metadata()) w2.set(key, value);
        for (const auto& t : g.tensors()) w2.add_tensor(t.name, t.type, t.shape, t.data);
        require(w2.write_to_memory() == image);  // bytes compare: NaN metadata included
    } catch (const tandem::ConfigError&) {
        // The writer is stricter than the reader (e.g. tensor names of 64+ bytes).
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const auto f = tandem::GgufFile::from_memory(
            std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), "fuzz-input");
        use(f);
    } catch (const tandem::Error&) {
        // Refusing bad input with a typed error is the expected outcome.
    }
    return 0;
}
