// An outside program that uses tandem: opens a GGUF model and prints what it
// holds. tests/consumer/check.cmake builds it against tandem three ways and
// compares the output with the file's own header.
#include <cstdio>
#include <string>

#include <tandem/gguf/reader.hpp>

// tandem::tandem carries its dependencies' usage requirements to consumers.
#ifndef ASIO_STANDALONE
#error "tandem::tandem did not propagate Asio::Asio (ASIO_STANDALONE)"
#endif

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
        return 2;
    }
    try {
        const auto model = tandem::GgufFile::open(argv[1]);
        std::printf("tensors: %zu\n", model.tensors().size());
        std::printf("architecture: %s\n", model.get<std::string>("general.architecture").c_str());
    } catch (const tandem::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
