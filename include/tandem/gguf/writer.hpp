// GGUF writer: metadata and tensors in, a GGUF v3 (or v2) file out.
//
// Layout written (the reader's, see reader.hpp): header, key/values in
// insertion order, tensor infos in insertion order, zero padding to the
// alignment, then each tensor's bytes followed by zero padding to the
// alignment (the last one too, as ggml and gguf-py write it, so ggml's loader
// finds a data section of the size it expects). Offsets are assigned in order.
//
// Tensor bytes come from one of three sources:
//   - a span the caller keeps alive until write() returns (no copy),
//   - an owned std::vector<std::byte> (moved in),
//   - a fill callback called at write time with the tensor's buffer, so a
//     multi-GB synthetic model never sits in memory whole: write(path) holds
//     one tensor at a time.
// Every input is validated when given (ConfigError): keys, value types and
// nesting, alignment, tensor names, shapes, block multiples and byte sizes.
// write(path) writes to "path.part" and renames it into place, so a failed or
// interrupted write never leaves a half file under the final name (IoError).
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "tandem/core/error.hpp"
#include "tandem/gguf/reader.hpp"
#include "tandem/gguf/types.hpp"
#include "tandem/gguf/value.hpp"

namespace tandem {

inline constexpr std::uint32_t kGgufMaxTensorName = 63;  // ggml's GGML_MAX_NAME (64) minus the terminator

class GgufWriter {
public:
    /// Fills a tensor's bytes (exactly its byte size) at write time.
    using FillFn = std::function<void(std::span<std::byte>)>;

    GgufWriter() = default;

    // ---- header ----
    /// GGUF version to write: 3 (default) or 2. Both have the same layout.
    void set_version(std::uint32_t version) {
        if (version != 2 && version != 3)
            throw ConfigError("GGUF version " + std::to_string(version) + " cannot be written (2 and 3 can)");
        version_ = version;
    }
    std::uint32_t version() const noexcept { return version_; }
    /// general.alignment if set, else 32.
    std::uint32_t alignment() const noexcept { return alignment_; }

    // ---- metadata ----
    /// Sets `key` to `value`: a new key goes last, an existing key keeps its place.
    void set(std::string key, GgufValue value) {
        if (key.empty()) throw ConfigError("GGUF metadata key is empty");
        validate_value(key, value, 0);
        std::uint32_t alignment = alignment_;
        if (key == "general.alignment") {
            if (value.type() != GgufValueType::UINT32)
                throw ConfigError(std::string("general.alignment must be a u32, not a ") + value_type_name(value.type()));
            alignment = std::get<std::uint32_t>(value.storage());
            if (alignment == 0 || (alignment & (alignment - 1)) != 0)
                throw ConfigError("general.alignment " + std::to_string(alignment) + " is not a power of two");
        }
        alignment_ = alignment;
        if (auto it = kv_index_.find(key); it != kv_index_.end()) {
            kv_[it->second].second = std::move(value);
            return;
        }
        kv_index_.emplace(key, kv_.size());
        kv_.emplace_back(std::move(key), std::move(value));
    }
    /// Removes `key`; returns whether it was there.
    bool remove(std::string_view key) {
        auto it = kv_index_.find(std::string(key));
        if (it == kv_index_.end()) return false;
        kv_.erase(kv_.begin() + static_cast<std::ptrdiff_t>(it->second));
        kv_index_.clear();
        for (std::size_t i = 0; i < kv_.size(); ++i) kv_index_.emplace(kv_[i].first, i);
        if (key == "general.alignment") alignment_ = kGgufDefaultAlignment;
        return true;
    }
    const GgufValue* find(std::string_view key) const {
        auto it = kv_index_.find(std::string(key));
        return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
    }
    const std::vector<std::pair<std::string, GgufValue>>& metadata() const noexcept { return kv_; }

    // ---- tensors ----
    /// Adds a tensor whose bytes the caller keeps alive until write() returns.
    /// `shape` is in ggml order (shape[0] is the row length). An lvalue
    /// std::vector<std::byte> binds here too: it is borrowed, not copied.
    void add_tensor(std::string name, GgmlType type, std::vector<std::uint64_t> shape,
                    std::span<const std::byte> data) {
        const auto n = check_tensor(name, type, shape);
        check_size(name, n, data.size());
        push(std::move(name), type, std::move(shape), n, data);
    }
    /// Adds a tensor that owns its bytes.
    void add_tensor(std::string name, GgmlType type, std::vector<std::uint64_t> shape,
                    std::vector<std::byte>&& data) {
        const auto n = check_tensor(name, type, shape);
        check_size(name, n, data.size());
        push(std::move(name), type, std::move(shape), n, std::move(data));
    }
    /// Adds a tensor whose bytes `fill` writes at write time.
    void add_tensor(std::string name, GgmlType type, std::vector<std::uint64_t> shape, FillFn fill) {
        if (!fill) throw ConfigError("tensor '" + name + "': empty fill function");
        const auto n = check_tensor(name, type, shape);
        push(std::move(name), type, std::move(shape), n, std::move(fill));
    }
    std::size_t tensor_count() const noexcept { return tensors_.size(); }

    // ---- layout ----
    /// Byte offset of the data section in the written file.
    std::uint64_t data_offset() const { return pad(header().size()); }
    /// Size of the written file in bytes.
    std::uint64_t file_size() const { return data_offset() + data_size(); }

    // ---- output ----
    /// The whole file in memory (fill callbacks write straight into it).
    std::vector<std::byte> write_to_memory() const {
        const auto head = header();
        std::vector<std::byte> out(static_cast<std::size_t>(pad(head.size()) + data_size()));  // zeroed: padding
        std::memcpy(out.data(), head.data(), head.size());
        std::size_t at = static_cast<std::size_t>(pad(head.size()));
        for (const auto& t : tensors_) {
            std::span<std::byte> dst(out.data() + at, static_cast<std::size_t>(t.n_bytes));
            produce(t, dst);
            at += static_cast<std::size_t>(pad(t.n_bytes));
        }
        return out;
    }

    /// Streams the file to `path`, one tensor in memory at a time at most.
    void write(const std::string& path) const {
        const auto head = header();  // built (and validated) before touching the disk
        const std::string part = path + ".part";
        File f(part);
        try {
            f.write(head.data(), head.size());
            f.zeros(pad(head.size()) - head.size());
            std::vector<std::byte> buffer;  // reused by fill callbacks
            for (const auto& t : tensors_) {
                if (const auto* s = std::get_if<std::span<const std::byte>>(&t.source)) {
                    f.write(s->data(), s->size());
                } else if (const auto* v = std::get_if<std::vector<std::byte>>(&t.source)) {
                    f.write(v->data(), v->size());
                } else {
                    buffer.assign(static_cast<std::size_t>(t.n_bytes), std::byte{0});
                    produce(t, buffer);
                    f.write(buffer.data(), buffer.size());
                }
                f.zeros(pad(t.n_bytes) - t.n_bytes);
            }
            f.close();
            if (std::rename(part.c_str(), path.c_str()) != 0)
                throw IoError(path + ": cannot rename " + part + " into place: " + std::strerror(errno));
        } catch (...) {
            f.discard();
            ::unlink(part.c_str());
            throw;
        }
    }

private:
    using Source = std::variant<std::span<const std::byte>, std::vector<std::byte>, FillFn>;
    struct Tensor {
        std::string name;
        GgmlType type;
        std::vector<std::uint64_t> shape;
        std::uint64_t n_bytes;
        Source source;
    };

    // POSIX file with full writes and errno in every message.
    class File {
    public:
        explicit File(std::string path) : path_(std::move(path)) {
            fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd_ < 0) throw IoError(path_ + ": cannot create: " + std::strerror(errno));
        }
        File(const File&) = delete;
        File& operator=(const File&) = delete;
        ~File() { discard(); }
        void write(const void* data, std::size_t n) {
            const auto* p = static_cast<const char*>(data);
            while (n > 0) {
                const ::ssize_t k = ::write(fd_, p, std::min<std::size_t>(n, std::size_t{1} << 30));
                if (k < 0 && errno == EINTR) continue;
                if (k <= 0) throw IoError(path_ + ": write failed: " + std::strerror(k < 0 ? errno : EIO));
                p += k;
                n -= static_cast<std::size_t>(k);
            }
        }
        void zeros(std::uint64_t n) {
            static constexpr char kZeros[256] = {};
            while (n > 0) {
                const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(n, sizeof kZeros));
                write(kZeros, k);
                n -= k;
            }
        }
        void close() {
            const int fd = std::exchange(fd_, -1);
            if (::close(fd) != 0) throw IoError(path_ + ": close failed: " + std::strerror(errno));
        }
        /// Drops an unfinished file (no-op after a successful close and rename).
        void discard() noexcept {
            if (fd_ >= 0) {
                ::close(fd_);
                fd_ = -1;
                ::unlink(path_.c_str());
            }
        }

    private:
        std::string path_;
        int fd_ = -1;
    };

    std::uint64_t pad(std::uint64_t n) const noexcept { return (n + alignment_ - 1) / alignment_ * alignment_; }
    std::uint64_t data_size() const noexcept {
        std::uint64_t size = 0;
        for (const auto& t : tensors_) size += pad(t.n_bytes);
        return size;
    }

    static void validate_value(const std::string& key, const GgufValue& v, std::uint32_t depth) {
        if (!v.is_array()) return;
        // The reader refuses deeper nesting; refuse to write what cannot be read.
        if (depth >= kGgufMaxArrayDepth)
            throw ConfigError("metadata '" + key + "': arrays nested deeper than " + std::to_string(kGgufMaxArrayDepth));
        if (!std::get<std::shared_ptr<const GgufArray>>(v.storage()))
            throw ConfigError("metadata '" + key + "': null array");
        const GgufArray& a = v.array();
        if (static_cast<std::uint32_t>(a.element_type) > static_cast<std::uint32_t>(GgufValueType::FLOAT64))
            throw ConfigError("metadata '" + key + "': bad array element type");
        for (const auto& item : a.items) {
            if (item.type() != a.element_type)
                throw ConfigError("metadata '" + key + "': array of " + value_type_name(a.element_type) +
                                  " holds a " + value_type_name(item.type()));
            validate_value(key, item, depth + 1);
        }
    }

    // Checks name, type and shape; returns the tensor's byte size.
    std::uint64_t check_tensor(const std::string& name, GgmlType type, const std::vector<std::uint64_t>& shape) const {
        if (name.empty()) throw ConfigError("tensor name is empty");
        if (name.size() > kGgufMaxTensorName)
            throw ConfigError("tensor '" + name + "': name longer than " + std::to_string(kGgufMaxTensorName) + " bytes");
        if (tensor_index_.count(name) != 0) throw ConfigError("duplicate tensor name '" + name + "'");
        const auto traits = find_type_traits(static_cast<std::uint32_t>(type));
        if (!traits)
            throw ConfigError("tensor '" + name + "': unknown ggml type id " +
                              std::to_string(static_cast<std::uint32_t>(type)));
        if (shape.size() > kGgufMaxDims)
            throw ConfigError("tensor '" + name + "': " + std::to_string(shape.size()) + " dimensions (at most " +
                              std::to_string(kGgufMaxDims) + ")");
        // Same rule as the reader: partial products, zeros as ones, fit in 63 bits.
        std::uint64_t extent = 1, n = 1;
        for (auto d : shape) {
            if (d > static_cast<std::uint64_t>(INT64_MAX) || (d != 0 && extent > static_cast<std::uint64_t>(INT64_MAX) / d))
                throw ConfigError("tensor '" + name + "': shape overflows 63 bits");
            if (d != 0) extent *= d;
            n *= d;
        }
        const std::uint64_t row = shape.empty() ? 1 : shape[0];
        if (row % traits->block_size != 0)
            throw ConfigError("tensor '" + name + "': row length " + std::to_string(row) + " is not a multiple of the " +
                              std::string(traits->name) + " block size " + std::to_string(traits->block_size));
        if (extent / traits->block_size > UINT64_MAX / traits->type_size)
            throw ConfigError("tensor '" + name + "': byte size overflows 64 bits");
        return n / traits->block_size * traits->type_size;
    }

    static void check_size(const std::string& name, std::uint64_t want, std::uint64_t got) {
        if (want != got)
            throw ConfigError("tensor '" + name + "': " + std::to_string(got) + " bytes given, shape and type need " +
                              std::to_string(want));
    }

    void push(std::string name, GgmlType type, std::vector<std::uint64_t> shape, std::uint64_t n_bytes, Source source) {
        tensor_index_.emplace(name, tensors_.size());
        tensors_.push_back(Tensor{std::move(name), type, std::move(shape), n_bytes, std::move(source)});
    }

    static void produce(const Tensor& t, std::span<std::byte> dst) {
        if (const auto* s = std::get_if<std::span<const std::byte>>(&t.source)) {
            if (!s->empty()) std::memcpy(dst.data(), s->data(), s->size());
        } else if (const auto* v = std::get_if<std::vector<std::byte>>(&t.source)) {
            if (!v->empty()) std::memcpy(dst.data(), v->data(), v->size());
        } else {
            std::get<FillFn>(t.source)(dst);
        }
    }

    // ---- serialisation of everything before the data section ----
    struct Out {
        std::vector<std::byte> b;
        template <typename T>
        void put(T v) {
            const auto at = b.size();
            b.resize(at + sizeof(T));
            std::memcpy(b.data() + at, &v, sizeof(T));
        }
        void str(std::string_view s) {
            put<std::uint64_t>(s.size());
            const auto at = b.size();
            b.resize(at + s.size());
            if (!s.empty()) std::memcpy(b.data() + at, s.data(), s.size());
        }
    };

    static void put_value(Out& o, const GgufValue& v) {
        std::visit(
            [&](const auto& x) {
                using X = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<X, std::string>) {
                    o.str(x);
                } else if constexpr (std::is_same_v<X, bool>) {
                    o.put<std::uint8_t>(x ? 1 : 0);
                } else if constexpr (std::is_same_v<X, std::shared_ptr<const GgufArray>>) {
                    o.put<std::uint32_t>(static_cast<std::uint32_t>(x->element_type));
                    o.put<std::uint64_t>(x->items.size());
                    for (const auto& item : x->items) put_value(o, item);
                } else {
                    o.put<X>(x);
                }
            },
            v.storage());
    }

    std::vector<std::byte> header() const {
        Out o;
        o.put<std::uint32_t>(kGgufMagic);
        o.put<std::uint32_t>(version_);
        o.put<std::uint64_t>(tensors_.size());
        o.put<std::uint64_t>(kv_.size());
        for (const auto& [key, value] : kv_) {
            o.str(key);
            o.put<std::uint32_t>(static_cast<std::uint32_t>(value.type()));
            put_value(o, value);
        }
        std::uint64_t offset = 0;
        for (const auto& t : tensors_) {
            o.str(t.name);
            o.put<std::uint32_t>(static_cast<std::uint32_t>(t.shape.size()));
            for (auto d : t.shape) o.put<std::uint64_t>(d);
            o.put<std::uint32_t>(static_cast<std::uint32_t>(t.type));
            o.put<std::uint64_t>(offset);
            offset += pad(t.n_bytes);
        }
        return std::move(o.b);
    }

    std::uint32_t version_ = 3;
    std::uint32_t alignment_ = kGgufDefaultAlignment;
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::unordered_map<std::string, std::size_t> kv_index_;
    std::vector<Tensor> tensors_;
    std::unordered_map<std::string, std::size_t> tensor_index_;
};

}  // namespace tandem
