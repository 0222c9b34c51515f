// libFuzzer target for the quant formats: arbitrary bytes as floats through
// every reference quantizer and back, and as raw blocks of every type through
// every dequantizer. NaN, infinities, subnormals and garbage scales must give
// defined results: UBSan reports any undefined float -> integer conversion,
// shift or overflow. Run with tests/fuzz/run.sh (seeds: corpus/gguf/).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include <tandem/gguf/quant.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace tandem;
    // Floats: a whole number of 256-element super-blocks (every block size divides
    // 256), at most 4 of them: the K-quant scale searches are slow under ASan,
    // and more blocks of the same bytes find nothing new.
    const std::size_t n = std::min<std::size_t>(size / sizeof(float) / 256, 4) * 256;
    size = std::min<std::size_t>(size, 8192);
    std::vector<float> x(n), y(n);
    if (n > 0) std::memcpy(x.data(), data, n * sizeof(float));
    for (const auto& t : kGgmlTypes) {
        if (n > 0 && can_quantize(t.type)) {
            std::vector<std::byte> q(static_cast<std::size_t>(row_bytes(t.type, n)));
            quantize_row(t.type, x.data(), q.data(), static_cast<std::int64_t>(n));
            dequantize_row(t.type, q.data(), y.data(), static_cast<std::int64_t>(n));
        }
        // The same bytes read as blocks of this type.
        if (can_dequantize(t.type)) {
            const std::size_t blocks = size / t.type_size;
            std::vector<float> out(blocks * t.block_size);
            dequantize_row(t.type, data, out.data(), static_cast<std::int64_t>(out.size()));
        }
    }
    return 0;
}
