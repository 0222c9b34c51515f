// Read-only memory mapping of a whole file (POSIX mmap; works on Linux and Android).
//
// Model weights are used in place from the mapping: loading a model never copies
// tensor data. The mapping is private and read-only, so pages are shared with the
// page cache and count once however many processes map the same file.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tandem/core/error.hpp"

namespace tandem {

class MappedFile {
public:
    MappedFile() = default;

    /// Maps `path` read-only. Throws IoError naming the file and the OS reason.
    explicit MappedFile(std::string path) : path_(std::move(path)) {
        const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw IoError(path_ + ": cannot open: " + std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            const int err = errno;
            ::close(fd);
            throw IoError(path_ + ": cannot stat: " + std::strerror(err));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd);
            throw IoError(path_ + ": not a regular file");
        }
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const int err = errno;
                ::close(fd);
                throw IoError(path_ + ": cannot mmap: " + std::strerror(err));
            }
            data_ = static_cast<const std::byte*>(p);
        }
        ::close(fd);  // the mapping keeps the file alive
    }

    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    MappedFile(MappedFile&& o) noexcept { swap(o); }
    MappedFile& operator=(MappedFile&& o) noexcept {
        if (this != &o) {
            release();
            swap(o);
        }
        return *this;
    }
    ~MappedFile() { release(); }

    std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
    std::size_t size() const noexcept { return size_; }
    const std::string& path() const noexcept { return path_; }

    /// Asks the kernel to read the whole mapping ahead (best effort).
    void prefetch() const noexcept {
        if (data_ != nullptr) ::madvise(const_cast<std::byte*>(data_), size_, MADV_WILLNEED);
    }

private:
    void release() noexcept {
        if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
        data_ = nullptr;
        size_ = 0;
    }
    void swap(MappedFile& o) noexcept {
        std::swap(path_, o.path_);
        std::swap(data_, o.data_);
        std::swap(size_, o.size_);
    }

    std::string path_;
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace tandem
