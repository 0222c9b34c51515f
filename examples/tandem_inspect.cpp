// tandem-inspect FILE.gguf: prints a GGUF file's header, every metadata key with
// its type and value (long arrays abbreviated), and the tensor table, like
// llama.cpp's gguf-dump. A bad file gets a one-line error and exit code 1.
#include <cstdio>
#include <string>

#include <tandem/gguf/format.hpp>
#include <tandem/gguf/reader.hpp>

int main(int argc, char** argv) {
    if (argc != 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
        std::fprintf(stderr, "usage: tandem-inspect FILE.gguf\n");
        return argc == 2 ? 0 : 2;
    }
    try {
        const auto f = tandem::GgufFile::open(argv[1]);
        std::printf("%s: GGUF v%u, %llu bytes\n", argv[1], f.version(),
                    static_cast<unsigned long long>(f.file_size()));
        std::printf("  alignment %u, data offset %llu, %zu metadata keys, %zu tensors\n", f.alignment(),
                    static_cast<unsigned long long>(f.data_offset()), f.metadata().size(), f.tensors().size());

        std::printf("\nmetadata:\n");
        std::size_t i = 0;
        for (const auto& [key, value] : f.metadata())
            std::printf("  %4zu  %-8s  %s = %s\n", ++i, tandem::format_value_type(value).c_str(), key.c_str(),
                        tandem::format_value(value).c_str());

        std::printf("\ntensors:\n  %4s  %-32s  %-7s  %-22s  %12s  %12s\n", "#", "name", "type", "shape", "bytes",
                    "offset");
        i = 0;
        std::uint64_t total = 0;
        for (const auto& t : f.tensors()) {
            std::printf("  %4zu  %-32s  %-7s  %-22s  %12llu  %12llu\n", i++, t.name.c_str(),
                        std::string(tandem::type_name(t.type)).c_str(), tandem::format_shape(t.shape).c_str(),
                        static_cast<unsigned long long>(t.n_bytes()), static_cast<unsigned long long>(t.offset));
            total += t.n_bytes();
        }
        std::printf("  total tensor bytes: %llu\n", static_cast<unsigned long long>(total));
    } catch (const tandem::Error& e) {
        std::fprintf(stderr, "tandem-inspect: %s\n", e.what());
        return 1;
    }
    return 0;
}
