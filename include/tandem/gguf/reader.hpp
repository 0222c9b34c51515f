// GGUF reader: versions 2 and 3, memory-mapped, tensor data used in place.
//
// File layout (all little-endian):
//   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv   x { string key | u32 value_type | value }
//   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to general.alignment (default 32)
//   tensor data; each tensor at data_offset + offset, offset a multiple of the alignment
// string = u64 length + bytes (no terminator); array = u32 element type + u64 count + items.
//
// Hostile files: every read is bounds-checked against the mapping and every
// count is checked against the bytes left before anything is allocated, so a
// truncated or lying file raises FormatError(file, offset, what) and the memory
// used stays proportional to the file's size.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/core/mapped_file.hpp"
#include "tandem/gguf/types.hpp"
#include "tandem/gguf/value.hpp"

namespace tandem {

inline constexpr std::uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian u32
inline constexpr std::uint32_t kGgufDefaultAlignment = 32;
inline constexpr std::uint32_t kGgufMaxDims = 4;
inline constexpr std::uint32_t kGgufMaxArrayDepth = 8;  // nesting limit for arrays of arrays

/// One tensor's description and its bytes inside the file.
struct GgufTensorInfo {
    std::string name;
    std::vector<std::uint64_t> shape;  // ggml order: shape[0] is the row length (contiguous)
    GgmlType type = GgmlType::F32;
    std::uint64_t offset = 0;          // relative to the data section
    std::span<const std::byte> data;   // in the mapping; never copied

    std::uint64_t n_elements() const noexcept {
        std::uint64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
    std::uint64_t n_bytes() const noexcept { return data.size(); }
    /// Product of every dimension but the first (1 for a 0- or 1-dim tensor).
    std::uint64_t rows() const noexcept {
        std::uint64_t n = 1;
        for (std::size_t i = 1; i < shape.size(); ++i) n *= shape[i];
        return n;
    }
    std::uint64_t cols() const noexcept { return shape.empty() ? 1 : shape[0]; }
};

class GgufFile {
public:
    /// Memory-maps and parses `path`. Throws IoError or FormatError.
    static GgufFile open(const std::string& path) {
        GgufFile f;
        f.file_ = std::make_shared<MappedFile>(path);
        f.name_ = path;
        f.bytes_ = f.file_->bytes();
        f.parse();
        return f;
    }

    /// Parses a GGUF image held in memory. The caller keeps `bytes` alive for
    /// the life of the returned object and of every tensor span taken from it.
    static GgufFile from_memory(std::span<const std::byte> bytes, std::string name = "<memory>") {
        GgufFile f;
        f.name_ = std::move(name);
        f.bytes_ = bytes;
        f.parse();
        return f;
    }

    /// Parses a GGUF image it takes ownership of (e.g. metadata received over
    /// the network).
    static GgufFile from_owned(std::vector<std::byte> bytes, std::string name = "<memory>") {
        auto owned = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
        GgufFile f = from_memory(std::span<const std::byte>(owned->data(), owned->size()), std::move(name));
        f.keep_.push_back(owned);
        return f;
    }

    /// Adds a tensor whose bytes live outside this image (a worker's cached
    /// weight file, say); `keep` keeps those bytes alive as long as this file.
    /// Throws ConfigError for a duplicate name or a size that does not match.
    void add_tensor(GgufTensorInfo t, std::shared_ptr<const void> keep) {
        const auto traits = find_type_traits(static_cast<std::uint32_t>(t.type));
        if (!traits) throw ConfigError("tensor '" + t.name + "' has an unknown type");
        if (t.shape.size() > kGgufMaxDims)
            throw ConfigError("tensor '" + t.name + "' has " + std::to_string(t.shape.size()) + " dimensions");
        // The parser's rule: partial products (zeros as ones) fit in 63 bits, so
        // a shape cannot wrap around to match the byte count by accident.
        std::uint64_t n = 1, extent = 1;
        for (auto d : t.shape) {
            if (d > static_cast<std::uint64_t>(INT64_MAX) || (d != 0 && extent > static_cast<std::uint64_t>(INT64_MAX) / d))
                throw ConfigError("tensor '" + t.name + "': shape overflows 63 bits");
            if (d != 0) extent *= d;
            n *= d;
        }
        if (extent / traits->block_size > UINT64_MAX / traits->type_size)
            throw ConfigError("tensor '" + t.name + "': byte size overflows 64 bits");
        if (t.shape.empty() || t.shape[0] % traits->block_size != 0 ||
            n / traits->block_size * traits->type_size != t.data.size())
            throw ConfigError("tensor '" + t.name + "': " + std::to_string(t.data.size()) +
                              " bytes do not match its shape and type");
        if (!tensor_index_.emplace(t.name, tensors_.size()).second)
            throw ConfigError("duplicate tensor '" + t.name + "'");
        tensors_.push_back(std::move(t));
        keep_.push_back(std::move(keep));
    }

    const std::string& name() const noexcept { return name_; }
    std::uint32_t version() const noexcept { return version_; }
    std::uint32_t alignment() const noexcept { return alignment_; }
    std::uint64_t data_offset() const noexcept { return data_offset_; }
    std::uint64_t file_size() const noexcept { return bytes_.size(); }
    std::span<const std::byte> bytes() const noexcept { return bytes_; }

    // ---- metadata ----
    /// Keys in file order with their values.
    const std::vector<std::pair<std::string, GgufValue>>& metadata() const noexcept { return kv_; }
    bool contains(std::string_view key) const { return kv_index_.count(std::string(key)) != 0; }
    const GgufValue* find(std::string_view key) const {
        auto it = kv_index_.find(std::string(key));
        return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
    }
    const GgufValue& at(std::string_view key) const {
        if (const auto* v = find(key)) return *v;
        throw KeyError(name_ + ": no metadata key '" + std::string(key) + "'");
    }
    /// Typed access: `file.get<std::uint32_t>("llama.block_count")`.
    template <typename T>
    T get(std::string_view key) const {
        try {
            return at(key).as<T>();
        } catch (const KeyError& e) {
            if (!contains(key)) throw;
            throw KeyError(name_ + ": metadata '" + std::string(key) + "': " + e.what());
        }
    }
    /// Typed access with a default for a missing key (a present key of the wrong type still throws).
    template <typename T>
    T get_or(std::string_view key, T fallback) const {
        return contains(key) ? get<T>(key) : fallback;
    }

    // ---- tensors ----
    const std::vector<GgufTensorInfo>& tensors() const noexcept { return tensors_; }
    const GgufTensorInfo* find_tensor(std::string_view name) const {
        auto it = tensor_index_.find(std::string(name));
        return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
    }
    const GgufTensorInfo& tensor(std::string_view name) const {
        if (const auto* t = find_tensor(name)) return *t;
        throw KeyError(name_ + ": no tensor '" + std::string(name) + "'");
    }

private:
    GgufFile() = default;

    // Largest count reserved up front; longer lists grow as their entries parse.
    static constexpr std::uint64_t kReserveCap = 1u << 16;

    // Bounds-checked little-endian cursor over the image.
    struct Cursor {
        const GgufFile& f;
        std::uint64_t pos = 0;

        [[noreturn]] void fail(const std::string& msg) const { throw FormatError(f.name_, pos, msg); }
        std::uint64_t left() const noexcept { return f.bytes_.size() - pos; }
        void need(std::uint64_t n, const char* what) const {
            if (n > left())
                fail(std::string("truncated: ") + what + " needs " + std::to_string(n) + " bytes, " +
                     std::to_string(left()) + " left");
        }
        template <typename T>
        T read(const char* what) {
            need(sizeof(T), what);
            T v;
            std::memcpy(&v, f.bytes_.data() + pos, sizeof(T));
            pos += sizeof(T);
            return v;
        }
        std::string read_string(const char* what) {
            const auto start = pos;
            const auto n = read<std::uint64_t>(what);
            if (n > left()) {
                pos = start;
                fail(std::string(what) + ": string length " + std::to_string(n) + " exceeds the " +
                     std::to_string(left() - 8) + " bytes left in the file");
            }
            std::string s(reinterpret_cast<const char*>(f.bytes_.data() + pos), static_cast<std::size_t>(n));
            pos += n;
            return s;
        }
    };

    static std::uint64_t min_encoded_size(GgufValueType t) {
        switch (t) {
            case GgufValueType::UINT8:
            case GgufValueType::INT8:
            case GgufValueType::BOOL: return 1;
            case GgufValueType::UINT16:
            case GgufValueType::INT16: return 2;
            case GgufValueType::UINT32:
            case GgufValueType::INT32:
            case GgufValueType::FLOAT32: return 4;
            case GgufValueType::UINT64:
            case GgufValueType::INT64:
            case GgufValueType::FLOAT64:
            case GgufValueType::STRING: return 8;  // the length prefix
            case GgufValueType::ARRAY: return 12;  // element type + count
        }
        return 1;
    }

    GgufValueType read_value_type(Cursor& c, const char* what) {
        const auto at = c.pos;
        const auto t = c.read<std::uint32_t>(what);
        if (t > static_cast<std::uint32_t>(GgufValueType::FLOAT64)) {
            c.pos = at;
            c.fail(std::string(what) + ": unknown value type " + std::to_string(t));
        }
        return static_cast<GgufValueType>(t);
    }

    GgufValue read_value(Cursor& c, GgufValueType t, std::uint32_t depth) {
        switch (t) {
            case GgufValueType::UINT8: return c.read<std::uint8_t>("u8");
            case GgufValueType::INT8: return c.read<std::int8_t>("i8");
            case GgufValueType::UINT16: return c.read<std::uint16_t>("u16");
            case GgufValueType::INT16: return c.read<std::int16_t>("i16");
            case GgufValueType::UINT32: return c.read<std::uint32_t>("u32");
            case GgufValueType::INT32: return c.read<std::int32_t>("i32");
            case GgufValueType::FLOAT32: return c.read<float>("f32");
            case GgufValueType::UINT64: return c.read<std::uint64_t>("u64");
            case GgufValueType::INT64: return c.read<std::int64_t>("i64");
            case GgufValueType::FLOAT64: return c.read<double>("f64");
            case GgufValueType::BOOL: {
                const auto at = c.pos;
                const auto b = c.read<std::uint8_t>("bool");
                if (b > 1) {
                    c.pos = at;
                    c.fail("bool value " + std::to_string(b) + " is neither 0 nor 1");
                }
                return b != 0;
            }
            case GgufValueType::STRING: return c.read_string("string value");
            case GgufValueType::ARRAY: {
                if (depth >= kGgufMaxArrayDepth)
                    c.fail("arrays nested deeper than " + std::to_string(kGgufMaxArrayDepth));
                const auto elem = read_value_type(c, "array element type");
                const auto at = c.pos;
                const auto n = c.read<std::uint64_t>("array length");
                // Every element takes at least min_encoded_size bytes: a count the
                // rest of the file cannot hold is a lie, refused before allocating.
                if (n > c.left() / min_encoded_size(elem)) {
                    c.pos = at;
                    c.fail("array of " + std::to_string(n) + " " + value_type_name(elem) +
                           " cannot fit in the " + std::to_string(c.left()) + " bytes left");
                }
                auto arr = std::make_shared<GgufArray>();
                arr->element_type = elem;
                arr->items.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n, kReserveCap)));
                for (std::uint64_t i = 0; i < n; ++i) arr->items.push_back(read_value(c, elem, depth + 1));
                return GgufValue(std::shared_ptr<const GgufArray>(std::move(arr)));
            }
        }
        c.fail("unreachable value type");
    }

    void parse() {
        Cursor c{*this};
        const auto magic = c.read<std::uint32_t>("magic");
        if (magic != kGgufMagic) {
            c.pos = 0;
            c.fail("bad magic: not a GGUF file");
        }
        version_ = c.read<std::uint32_t>("version");
        if (version_ != 2 && version_ != 3) {
            c.pos = 4;
            if (version_ == 0x02000000u || version_ == 0x03000000u)
                c.fail("big-endian GGUF files are not supported (this host reads little-endian ones)");
            c.fail("GGUF version " + std::to_string(version_) + " is not supported (2 and 3 are)");
        }
        auto at = c.pos;
        const auto n_tensors = c.read<std::uint64_t>("tensor count");
        // A tensor info takes at least 8 (name) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
        if (n_tensors > c.left() / 24) {
            c.pos = at;
            c.fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the file");
        }
        at = c.pos;
        const auto n_kv = c.read<std::uint64_t>("metadata count");
        // A key/value takes at least 8 (key) + 4 (type) + 1 (smallest value) bytes.
        if (n_kv > c.left() / 13) {
            c.pos = at;
            c.fail("metadata count " + std::to_string(n_kv) + " cannot fit in the file");
        }

        // Counts were checked against the bytes left, but each entry costs more in
        // memory than on disk: grow with what actually parses instead of trusting them.
        kv_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n_kv, kReserveCap)));
        std::vector<std::uint64_t> value_offsets;
        for (std::uint64_t i = 0; i < n_kv; ++i) {
            const auto key_at = c.pos;
            auto key = c.read_string("metadata key");
            const auto type = read_value_type(c, "metadata value type");
            value_offsets.push_back(c.pos);
            auto value = read_value(c, type, 0);
            if (!kv_index_.emplace(key, kv_.size()).second) {
                c.pos = key_at;
                c.fail("duplicate metadata key '" + key + "'");
            }
            kv_.emplace_back(std::move(key), std::move(value));
        }

        alignment_ = kGgufDefaultAlignment;
        if (auto it = kv_index_.find("general.alignment"); it != kv_index_.end()) {
            const auto& a = kv_[it->second].second;
            const auto at_value = value_offsets[it->second];
            if (a.type() != GgufValueType::UINT32)
                throw FormatError(name_, at_value,
                                  std::string("general.alignment must be a u32, not a ") + value_type_name(a.type()));
            alignment_ = std::get<std::uint32_t>(a.storage());
            if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0)
                throw FormatError(name_, at_value, "general.alignment " + std::to_string(alignment_) +
                                                       " is not a power of two");
        }

        struct Pending {
            std::uint64_t offset_field;  // where the tensor's data offset is stored
        };
        std::vector<Pending> pending;
        tensors_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n_tensors, kReserveCap)));
        for (std::uint64_t i = 0; i < n_tensors; ++i) {
            const auto info_at = c.pos;
            GgufTensorInfo t;
            t.name = c.read_string("tensor name");
            const auto dims_at = c.pos;
            const auto n_dims = c.read<std::uint32_t>("tensor n_dims");
            if (n_dims > kGgufMaxDims) {
                c.pos = dims_at;
                c.fail("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (at most " +
                       std::to_string(kGgufMaxDims) + ")");
            }
            // Every partial product of the dimensions must fit in 63 bits, zeros
            // counted as ones: then rows(), cols() and any row's byte size are safe
            // to compute even for an empty tensor.
            std::uint64_t extent = 1;
            for (std::uint32_t d = 0; d < n_dims; ++d) {
                const auto dim_at = c.pos;
                const auto ne = c.read<std::uint64_t>("tensor dimension");
                if (ne > static_cast<std::uint64_t>(INT64_MAX) ||
                    (ne != 0 && extent > static_cast<std::uint64_t>(INT64_MAX) / ne)) {
                    c.pos = dim_at;
                    c.fail("tensor '" + t.name + "': shape overflows 63 bits");
                }
                if (ne != 0) extent *= ne;
                t.shape.push_back(ne);
            }
            const auto type_at = c.pos;
            const auto type_id = c.read<std::uint32_t>("tensor type");
            const auto traits = find_type_traits(type_id);
            if (!traits) {
                c.pos = type_at;
                c.fail("tensor '" + t.name + "' has unknown ggml type id " + std::to_string(type_id));
            }
            t.type = traits->type;
            const std::uint64_t row_length = t.shape.empty() ? 1 : t.shape[0];  // 0 dims: one element
            if (row_length % traits->block_size != 0) {
                c.pos = type_at;
                c.fail("tensor '" + t.name + "': row length " + std::to_string(row_length) +
                       " is not a multiple of the " + std::string(traits->name) + " block size " +
                       std::to_string(traits->block_size));
            }
            if (extent / traits->block_size > UINT64_MAX / traits->type_size) {
                c.pos = dims_at;
                c.fail("tensor '" + t.name + "': byte size overflows 64 bits");
            }
            const auto off_at = c.pos;
            t.offset = c.read<std::uint64_t>("tensor offset");
            if (t.offset % alignment_ != 0) {
                c.pos = off_at;
                c.fail("tensor '" + t.name + "': data offset " + std::to_string(t.offset) +
                       " is not a multiple of the alignment " + std::to_string(alignment_));
            }
            if (!tensor_index_.emplace(t.name, tensors_.size()).second) {
                c.pos = info_at;
                c.fail("duplicate tensor name '" + t.name + "'");
            }
            tensors_.push_back(std::move(t));
            pending.push_back({off_at});
        }

        // The data section starts at the next multiple of the alignment.
        data_offset_ = (c.pos + alignment_ - 1) / alignment_ * alignment_;
        const std::uint64_t size = bytes_.size();
        if (!tensors_.empty() && data_offset_ > size)
            throw FormatError(name_, c.pos, "truncated: the tensor data section is missing");
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            auto& t = tensors_[i];
            const auto& traits = type_traits(t.type);
            const std::uint64_t n = t.n_elements();
            const std::uint64_t nbytes = n / traits.block_size * traits.type_size;  // checked above
            const std::uint64_t avail = size >= data_offset_ ? size - data_offset_ : 0;
            if (t.offset > avail || nbytes > avail - t.offset)
                throw FormatError(name_, pending[i].offset_field,
                                  "tensor '" + t.name + "': data [" + std::to_string(data_offset_ + t.offset) +
                                      ", +" + std::to_string(nbytes) + ") lies outside the file of " +
                                      std::to_string(size) + " bytes");
            t.data = bytes_.subspan(static_cast<std::size_t>(data_offset_ + t.offset), static_cast<std::size_t>(nbytes));
        }
    }

    std::vector<std::shared_ptr<const void>> keep_;  // owners of bytes outside the mapping
    std::shared_ptr<MappedFile> file_;  // null for from_memory
    std::string name_;
    std::span<const std::byte> bytes_;
    std::uint32_t version_ = 0;
    std::uint32_t alignment_ = kGgufDefaultAlignment;
    std::uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::unordered_map<std::string, std::size_t> kv_index_;
    std::vector<GgufTensorInfo> tensors_;
    std::unordered_map<std::string, std::size_t> tensor_index_;
};

}  // namespace tandem
