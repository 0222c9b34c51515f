// The wire format byte by byte: headers and payloads against hand-written
// bytes (little-endian whatever the host), big-endian payloads from another
// host decode the same, every truncation and every lying count is refused
// with ProtocolError, and activation encodings refuse what they cannot carry.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <sstream>

#include <tandem/transport/protocol.hpp>

using namespace tandem;
using namespace tandem::wire;

namespace {

std::vector<std::byte> bytes(std::initializer_list<int> v) {
    std::vector<std::byte> out;
    for (int x : v) out.push_back(static_cast<std::byte>(x));
    return out;
}

template <typename T>
std::vector<std::byte> encode_as(const T& value, cereal::PortableBinaryOutputArchive::Options opt) {
    std::ostringstream os(std::ios::binary);
    {
        cereal::PortableBinaryOutputArchive ar(os, opt);
        ar(const_cast<T&>(value));
    }
    const auto s = os.str();
    std::vector<std::byte> out(s.size());
    std::memcpy(out.data(), s.data(), s.size());
    return out;
}

// Encoding, decoding and encoding again gives the same bytes; every strict
// prefix and one trailing byte are refused with ProtocolError.
template <typename T>
void check_round_trip_and_truncation(const T& value) {
    const auto enc = encode(value);
    CHECK(encode(decode<T>(enc, "test")) == enc);
    for (std::size_t n = 0; n < enc.size(); ++n) {
        CAPTURE(n);
        CHECK_THROWS_AS(decode<T>(std::span(enc.data(), n), "test"), ProtocolError);
    }
    auto longer = enc;
    longer.push_back(std::byte{0});
    CHECK_THROWS_WITH_AS(decode<T>(longer, "test"), doctest::Contains("trailing bytes"), ProtocolError);
}

DataMsg sample_data() {
    Message m;
    m.kind = MessageKind::Activations;
    m.request = 0x1122334455667788ull;
    m.step = 3;
    m.first_block = 5;
    m.positions = {7, 8};
    m.tokens = {};
    m.tensors.push_back({"hidden", {2, 32}, std::vector<float>(64, 0.25f)});
    m.tensors.push_back({"bias", {2, 3}, {1, 2, 3, 4, 5, 6}});
    m.text = "extra";
    return to_wire(m, Encoding::F32);
}

Assign sample_assign() {
    Assign a;
    a.device_id = 2;
    a.block_begin = 3;
    a.block_end = 9;
    a.model_id = 0xfeedfacecafebeefull;
    a.metadata = {1, 2, 3, 4, 5};
    a.tensors.push_back({"blk.1.attn_q.weight", 8, {64, 64}, 0xabcdef, 4352});
    a.tensors.push_back({"blk.1.attn_norm.weight", 0, {64}, 0x12345, 256});
    a.peers.push_back({1, "10.0.0.1", 7000, 0, 3});
    a.peers.push_back({2, "phone.local", 7001, 3, 9});
    a.encoding = static_cast<std::uint8_t>(Encoding::Q8_0);
    a.max_in_flight = 4;
    a.max_batch = 2;
    return a;
}

}  // namespace

TEST_CASE("transport: a frame header is 16 little-endian bytes") {
    const auto h = encode_header({3, FrameType::Data, 0x0102030405060708ull});
    const auto want = bytes({'T', 'N', 'D', 'M', 0x03, 0x00, 0x0d, 0x00, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01});
    CHECK(std::vector<std::byte>(h.begin(), h.end()) == want);
    const auto back = decode_header(h, ~std::uint64_t{0}, "test");
    CHECK(back.version == 3);
    CHECK(back.type == FrameType::Data);
    CHECK(back.length == 0x0102030405060708ull);
}

TEST_CASE("transport: header decoding refuses bad magic, other versions, unknown types and lengths past the limit") {
    auto hdr = [](std::uint16_t version, std::uint16_t type, std::uint64_t len) {
        return encode_header({version, static_cast<FrameType>(type), len});
    };
    const std::uint64_t limit = 1 << 20;
    CHECK(decode_header(hdr(kProtocolVersion, 13, limit), limit, "p").length == limit);
    CHECK_THROWS_WITH_AS(decode_header(hdr(kProtocolVersion, 13, limit + 1), limit, "p"),
                         doctest::Contains("exceeds the limit"), ProtocolError);
    for (const std::uint64_t len : {~std::uint64_t{0}, std::uint64_t{1} << 63, std::uint64_t{1} << 32})
        CHECK_THROWS_AS(decode_header(hdr(kProtocolVersion, 13, len), limit, "p"), ProtocolError);
    CHECK_THROWS_WITH_AS(decode_header(hdr(0, 13, 0), limit, "p"), doctest::Contains("protocol version 0"), ProtocolError);
    CHECK_THROWS_WITH_AS(decode_header(hdr(1, 13, 0), limit, "p"), doctest::Contains("protocol version 1"), ProtocolError);
    CHECK_THROWS_WITH_AS(decode_header(hdr(2, 13, 0), limit, "p"), doctest::Contains("protocol version 2"), ProtocolError);
    CHECK_THROWS_WITH_AS(decode_header(hdr(4, 13, 0), limit, "p"), doctest::Contains("protocol version 4"), ProtocolError);
    for (const std::uint16_t t : {0, 20, 31, 38, 999, 65535})
        CHECK_THROWS_WITH_AS(decode_header(hdr(kProtocolVersion, t, 0), limit, "p"),
                             doctest::Contains("unknown frame type"), ProtocolError);
    auto bad = hdr(kProtocolVersion, 13, 0);
    bad[0] = std::byte{'G'};
    CHECK_THROWS_WITH_AS(decode_header(bad, limit, "p"), doctest::Contains("bad frame magic"), ProtocolError);
    // The peer's name is in the message, so a log line says who misbehaved.
    CHECK_THROWS_WITH_AS(decode_header(bad, limit, "10.1.2.3:7000"), doctest::Contains("10.1.2.3:7000"), ProtocolError);
}

TEST_CASE("transport: frame types 1..19 and 32..37 have names, others none") {
    for (std::uint16_t t = 0; t < 64; ++t) {
        CAPTURE(t);
        const bool known = (t >= 1 && t <= 19) || (t >= 32 && t <= 37);
        CHECK((frame_type_name(static_cast<FrameType>(t)) != nullptr) == known);
    }
}

TEST_CASE("transport: a payload is cereal portable binary: an endianness flag, then little-endian fields") {
    // Ping{nonce, sent_us}: flag 1 (little-endian), u64, u64.
    const auto enc = encode(Ping{0x0102030405060708ull, 5});
    CHECK(enc == bytes({0x01, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x05, 0, 0, 0, 0, 0, 0, 0}));
    // ErrorMsg{"hi"}: flag, u64 length, bytes.
    CHECK(encode(ErrorMsg{"hi"}) == bytes({0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 'h', 'i'}));
    // A big-endian host writes flag 0 and big-endian fields; we read the same values.
    const auto be = bytes({0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x05});
    const auto p = decode<Ping>(be, "big-endian peer");
    CHECK(p.nonce == 0x0102030405060708ull);
    CHECK(p.sent_us == 5);
}

TEST_CASE("transport: every payload type decodes the same from a big-endian encoder") {
    using Opt = cereal::PortableBinaryOutputArchive::Options;
    const auto data = sample_data();
    const auto be = decode<DataMsg>(encode_as(data, Opt::BigEndian()), "be");
    CHECK(encode(be) == encode(data));
    const auto a = sample_assign();
    CHECK(encode(decode<Assign>(encode_as(a, Opt::BigEndian()), "be")) == encode(a));
    Stats st;
    st.steps = 9;
    st.busy_seconds = 1.5;
    st.activation_bytes_out = 1ull << 40;
    st.queue_seconds = 0.125;
    st.block_seconds = {0.5, 0.0, 2.25};
    CHECK(encode(decode<Stats>(encode_as(st, Opt::BigEndian()), "be")) == encode(st));
    // Activation bytes are little-endian by definition (not swapped by cereal),
    // so the tensor decodes to the same floats.
    const auto m = from_wire(be, "be");
    CHECK(m.tensors.at(0).data == std::vector<float>(64, 0.25f));
    CHECK(m.tensors.at(1).data == std::vector<float>({1, 2, 3, 4, 5, 6}));
}

TEST_CASE("transport: every payload type round-trips, and every truncation is refused") {
    check_round_trip_and_truncation(Hello{kProtocolVersion, 2, 0x1234, 3, "phone"});
    check_round_trip_and_truncation(HelloAck{true, "", "worker", 1 << 30, 4});
    check_round_trip_and_truncation(HelloAck{false, "busy: serving another coordinator", "w", 0, 0});
    check_round_trip_and_truncation(sample_assign());
    check_round_trip_and_truncation(NeedTensors{{1, 2, 0xffffffffffffffffull}});
    check_round_trip_and_truncation(TensorChunk{7, 4096, 8192, {1, 2, 3, 4}});
    check_round_trip_and_truncation(Ready{100, 60, 40});
    check_round_trip_and_truncation(Ping{1, 2});
    Stats st;
    st.tokens = 77;
    st.send_seconds = 0.25;
    st.queue_seconds = 0.75;
    st.block_seconds = {0.0, 1.5, 3.0, 0.0};
    check_round_trip_and_truncation(st);
    check_round_trip_and_truncation(ErrorMsg{"no"});
    check_round_trip_and_truncation(sample_data());
}

TEST_CASE("transport: lying counts are refused before anything is allocated") {
    // DataMsg: flag, kind u8, from u32, request u64, step u64, first_block i64, then positions' count.
    auto enc = encode(sample_data());
    const std::size_t at = 1 + 1 + 4 + 8 + 8 + 8;
    for (const std::uint64_t lie : {std::uint64_t{1} << 62, std::uint64_t{1} << 40, std::uint64_t{1000}}) {
        auto bad = enc;
        std::memcpy(&bad[at], &lie, 8);  // little-endian host (this test's encoder wrote flag 1)
        CHECK_THROWS_WITH_AS(decode<DataMsg>(bad, "p"), doctest::Contains("payload claims"), ProtocolError);
    }
    // A list of tensors claiming 2^40 entries.
    Assign a = sample_assign();
    auto ea = encode(a);
    // Assign: flag, device u32, begin i64, end i64, model u64, metadata (u64 count + 5 bytes), then the tensor count.
    const std::size_t tat = 1 + 4 + 8 + 8 + 8 + 8 + 5;
    const std::uint64_t lie = std::uint64_t{1} << 40;
    std::memcpy(&ea[tat], &lie, 8);
    CHECK_THROWS_WITH_AS(decode<Assign>(ea, "p"), doctest::Contains("payload claims"), ProtocolError);
    // A count just within what the bytes could hold still fails cleanly when the elements run out.
    const std::uint64_t plausible = 3;
    std::memcpy(&ea[tat], &plausible, 8);
    CHECK_THROWS_AS(decode<Assign>(ea, "p"), ProtocolError);
}

TEST_CASE("transport: a boolean byte other than 0 or 1 is refused") {
    auto enc = encode(HelloAck{true, "", "w", 0, 0});
    REQUIRE(enc[1] == std::byte{1});
    enc[1] = std::byte{2};
    CHECK_THROWS_WITH_AS(decode<HelloAck>(enc, "p"), doctest::Contains("boolean"), ProtocolError);
}

TEST_CASE("transport: activation bytes are little-endian: F32, F16 and Q8_0 blocks") {
    const std::vector<float> one = {1.0f, -2.0f};
    CHECK(encode_floats(one, Encoding::F32) == std::vector<std::uint8_t>({0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0}));
    CHECK(encode_floats(one, Encoding::F16) == std::vector<std::uint8_t>({0x00, 0x3c, 0x00, 0xc0}));

    // One Q8_0 block of 0, 1, ..., 31: d = 31/127 as F16 (little-endian), q = round(x / d).
    std::vector<float> x(32);
    for (int i = 0; i < 32; ++i) x[static_cast<std::size_t>(i)] = static_cast<float>(i);
    const auto q = encode_floats(x, Encoding::Q8_0);
    REQUIRE(q.size() == 34);
    const std::uint16_t d16 = fp32_to_fp16(31.0f / 127.0f);
    CHECK(q[0] == (d16 & 0xff));
    CHECK(q[1] == (d16 >> 8));
    for (int i = 0; i < 32; ++i)
        CHECK(static_cast<int>(static_cast<std::int8_t>(q[2 + static_cast<std::size_t>(i)])) ==
              static_cast<int>(std::lround(static_cast<float>(i) * 127.0f / 31.0f)));
    WireTensor w{"hidden", {1, 32}, static_cast<std::uint8_t>(Encoding::Q8_0), q};
    const auto back = from_wire(w, "p");
    const float d = fp16_to_fp32(d16);
    for (int i = 0; i < 32; ++i) CHECK(std::fabs(back.data[static_cast<std::size_t>(i)] - static_cast<float>(i)) <= d / 2 + 1e-3f);
}

TEST_CASE("transport: to_wire picks an encoding each tensor can carry") {
    Tensor h{"hidden", {1, 64}, std::vector<float>(64, 0.5f)};
    CHECK(to_wire(h, Encoding::Q8_0).encoding == static_cast<std::uint8_t>(Encoding::Q8_0));
    Tensor odd{"hidden", {1, 48}, std::vector<float>(48, 0.5f)};  // rows not whole Q8_0 blocks
    CHECK(to_wire(odd, Encoding::Q8_0).encoding == static_cast<std::uint8_t>(Encoding::F16));
    Tensor logits{"logits", {1, 64}, std::vector<float>(64, 0.5f)};  // sampling reads them: exact
    CHECK(to_wire(logits, Encoding::F16).encoding == static_cast<std::uint8_t>(Encoding::F32));
    Tensor big{"hidden", {1, 32}, std::vector<float>(32, 70000.0f)};  // past F16's range
    const auto wb = to_wire(big, Encoding::F16);
    CHECK(wb.encoding == static_cast<std::uint8_t>(Encoding::F32));
    CHECK(from_wire(wb, "p").data == big.data);
    Tensor huge{"hidden", {1, 32}, std::vector<float>(32, 1e10f)};  // a Q8_0 scale past F16's range
    CHECK(to_wire(huge, Encoding::Q8_0).encoding == static_cast<std::uint8_t>(Encoding::F32));
    Tensor bad{"hidden", {1, 2}, {1.0f, std::numeric_limits<float>::quiet_NaN()}};
    CHECK_THROWS_WITH_AS(to_wire(bad, Encoding::F32), doctest::Contains("NaN"), ProtocolError);
    bad.data[1] = std::numeric_limits<float>::infinity();
    CHECK_THROWS_AS(to_wire(bad, Encoding::F16), ProtocolError);
}

TEST_CASE("transport: from_wire refuses NaN, infinity, absurd shapes, wrong sizes and unknown encodings") {
    auto w = to_wire(Tensor{"hidden", {1, 32}, std::vector<float>(32, 1.0f)}, Encoding::F32);
    CHECK(from_wire(w, "p").data.size() == 32);
    auto nan = w;
    const float n = std::nanf("");
    std::memcpy(nan.bytes.data() + 8, &n, 4);
    CHECK_THROWS_WITH_AS(from_wire(nan, "p"), doctest::Contains("NaN or infinity"), ProtocolError);
    auto q = to_wire(Tensor{"hidden", {1, 32}, std::vector<float>(32, 1.0f)}, Encoding::Q8_0);
    q.bytes[0] = 0x00;
    q.bytes[1] = 0x7e;  // the block's scale is an F16 NaN
    CHECK_THROWS_WITH_AS(from_wire(q, "p"), doctest::Contains("NaN or infinity"), ProtocolError);
    auto shape = w;
    shape.shape = {1, 33};
    CHECK_THROWS_WITH_AS(from_wire(shape, "p"), doctest::Contains("its shape needs"), ProtocolError);
    shape.shape = {-1, 32};
    CHECK_THROWS_WITH_AS(from_wire(shape, "p"), doctest::Contains("absurd shape"), ProtocolError);
    shape.shape = {std::int64_t{1} << 32, std::int64_t{1} << 32};
    CHECK_THROWS_WITH_AS(from_wire(shape, "p"), doctest::Contains("absurd shape"), ProtocolError);
    shape.shape = {1, 31};
    shape.encoding = static_cast<std::uint8_t>(Encoding::Q8_0);
    CHECK_THROWS_WITH_AS(from_wire(shape, "p"), doctest::Contains("not whole blocks"), ProtocolError);
    auto enc = w;
    enc.encoding = 9;
    CHECK_THROWS_WITH_AS(from_wire(enc, "p"), doctest::Contains("unknown encoding"), ProtocolError);
    DataMsg d = sample_data();
    for (const std::uint8_t kind : {0, 6, 255}) {
        d.kind = kind;
        CHECK_THROWS_WITH_AS(from_wire(d, "p"), doctest::Contains("unknown message kind"), ProtocolError);
    }
}
