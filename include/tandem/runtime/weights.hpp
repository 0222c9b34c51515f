// Weight distribution: what a worker needs to run its blocks, and the on-disk
// cache that lets a restarted worker skip what it already has.
//
// The coordinator describes each tensor of a worker's blocks by name, type,
// shape and content hash (XXH64 of its bytes). The worker keeps received
// tensors in `<cache>/<hash>.tensor` files and memory-maps them; a tensor whose
// file exists with the right size and hash is never sent again. Files are
// written under a temporary name and renamed when their hash checks out, so a
// crash mid-transfer never leaves a corrupt cache entry.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tandem/core/error.hpp"
#include "tandem/core/hash.hpp"
#include "tandem/core/mapped_file.hpp"
#include "tandem/gguf/reader.hpp"
#include "tandem/gguf/writer.hpp"
#include "tandem/model/model.hpp"
#include "tandem/transport/protocol.hpp"

namespace tandem {

/// The model's identity: XXH64 of the GGUF header, metadata and tensor table
/// (everything before the tensor data). Two files with the same identity hold
/// the same model layout; tensor contents are checked by their own hashes.
inline std::uint64_t model_identity(const GgufFile& f) {
    const auto n = std::min<std::uint64_t>(f.data_offset(), f.bytes().size());
    return xxh64(f.bytes().data(), static_cast<std::size_t>(n), 0);
}

/// Describes the tensors blocks [begin, end) of `model` read.
inline std::vector<wire::TensorDesc> describe_tensors(const Model& model, BlockRange blocks) {
    std::set<std::string> names;
    for (auto b = blocks.begin; b < blocks.end; ++b)
        for (auto& n : model.arch().block_tensors(b)) names.insert(n);
    std::vector<wire::TensorDesc> out;
    for (const auto& n : names) {
        const auto& t = model.file().tensor(n);
        wire::TensorDesc d;
        d.name = n;
        d.type = static_cast<std::uint32_t>(t.type);
        d.shape = t.shape;
        d.bytes = t.n_bytes();
        d.hash = xxh64(t.data.data(), t.data.size(), 0);
        out.push_back(std::move(d));
    }
    return out;
}

/// A tensor-less GGUF image with all of `file`'s metadata, plus what a worker
/// holding only some tensors cannot infer (whether the head is tied).
inline std::vector<std::uint8_t> metadata_image(const GgufFile& file, const ModelConfig& config) {
    GgufWriter w;
    for (const auto& [k, v] : file.metadata()) w.set(k, v);
    w.set("tandem.tied_output", GgufValue(config.tied_output));
    const auto bytes = w.write_to_memory();
    std::vector<std::uint8_t> out(bytes.size());
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
}

class WeightCache {
public:
    explicit WeightCache(std::string dir) : dir_(std::move(dir)) {
        if (dir_.empty()) throw ConfigError("the weight cache needs a directory");
        make_dirs(dir_);
    }

    const std::string& dir() const noexcept { return dir_; }

    std::string path(std::uint64_t hash) const { return dir_ + "/" + hex64(hash) + ".tensor"; }

    /// True when the cache holds this tensor, complete and intact.
    bool has(const wire::TensorDesc& d) {
        struct stat st {};
        if (::stat(path(d.hash).c_str(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) != d.bytes) return false;
        if (verified_.count(d.hash)) return true;
        // Hash the file once per process: a truncated or tampered entry is dropped.
        MappedFile m(path(d.hash));
        if (xxh64(m.bytes().data(), m.size(), 0) != d.hash) {
            ::unlink(path(d.hash).c_str());
            return false;
        }
        verified_.insert(d.hash);
        return true;
    }

    /// Writes one chunk of a tensor being received; returns true when the
    /// tensor is complete (then verified and in place).
    bool write_chunk(const wire::TensorChunk& c, const std::string& peer) {
        auto& p = partial_[c.hash];
        if (p.fd < 0) {
            if (c.total > (std::uint64_t{1} << 40)) throw ProtocolError(peer, "tensor of absurd size " + std::to_string(c.total));
            p.total = c.total;
            p.tmp = path(c.hash) + ".part" + std::to_string(::getpid());
            p.fd = ::open(p.tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
            if (p.fd < 0) throw IoError(p.tmp + ": " + std::strerror(errno));
            p.hasher.reset();
        }
        if (c.total != p.total || c.offset != p.received || c.data.size() > p.total - p.received) {
            drop_partial(c.hash);
            throw ProtocolError(peer, "tensor chunk out of order or past its end");
        }
        std::size_t done = 0;
        while (done < c.data.size()) {
            const auto n = ::write(p.fd, c.data.data() + done, c.data.size() - done);
            if (n < 0) {
                if (errno == EINTR) continue;
                const std::string err = p.tmp + ": " + std::strerror(errno);
                drop_partial(c.hash);
                throw IoError(err);
            }
            done += static_cast<std::size_t>(n);
        }
        p.hasher.update(c.data.data(), c.data.size());
        p.received += c.data.size();
        if (p.received < p.total) return false;
        ::close(p.fd);
        const auto got = p.hasher.digest();
        const auto tmp = p.tmp;
        partial_.erase(c.hash);
        if (got != c.hash) {
            ::unlink(tmp.c_str());
            throw ProtocolError(peer, "tensor " + hex64(c.hash) + " arrived with hash " + hex64(got));
        }
        if (::rename(tmp.c_str(), path(c.hash).c_str()) != 0) throw IoError(path(c.hash) + ": " + std::strerror(errno));
        verified_.insert(c.hash);
        return true;
    }

    std::shared_ptr<MappedFile> open(std::uint64_t hash) const { return std::make_shared<MappedFile>(path(hash)); }

    /// Forgets the tensors being received (a session ended mid-transfer):
    /// their temporary files are deleted, and the next sender starts at 0.
    void drop_partials() {
        while (!partial_.empty()) drop_partial(partial_.begin()->first);
    }

    ~WeightCache() { drop_partials(); }

private:
    void drop_partial(std::uint64_t hash) {
        const auto it = partial_.find(hash);
        if (it == partial_.end()) return;
        if (it->second.fd >= 0) {
            ::close(it->second.fd);
            ::unlink(it->second.tmp.c_str());
        }
        partial_.erase(it);
    }

    struct Partial {
        int fd = -1;
        std::string tmp;
        std::uint64_t total = 0;
        std::uint64_t received = 0;
        Xxh64 hasher;
    };

    static void make_dirs(const std::string& dir) {
        std::string cur;
        for (std::size_t i = 0; i <= dir.size(); ++i) {
            if (i == dir.size() || dir[i] == '/') {
                if (!cur.empty() && ::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
                    throw IoError(cur + ": cannot create directory: " + std::strerror(errno));
            }
            if (i < dir.size()) cur += dir[i];
        }
    }

    std::string dir_;
    std::map<std::uint64_t, Partial> partial_;
    std::set<std::uint64_t> verified_;
};

}  // namespace tandem
