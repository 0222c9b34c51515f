// Weights move once: a worker process restarted with the same --cache-dir
// reports 0 bytes received (its cache is keyed by content hash), a damaged
// cache entry is detected and only that tensor is sent again, and a worker
// with its own copy of the model (--model) maps it instead of receiving any.
#include <doctest/doctest.h>

#include "network/support.hpp"

using namespace tandem;
using namespace tandem::nettest;


TEST_CASE("network: a restarted worker reuses its weight cache and receives 0 bytes" * doctest::timeout(120)) {
    const auto dir = fresh_dir("cache");
    const auto key = make_key(dir);
    TlsConfig tls(ClusterKey::load(key));
    const auto full = Model::open(test::stories260k());
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    const auto plan = Plan::even(model->config(), device_ids(2));
    const auto want = single_device_tokens(full, {1}, 32);
    const auto w2_bytes = tensor_bytes(*full, plan.stages[1].blocks);

    auto w1 = std::make_unique<WorkerProcess>(dir, "w1", key, FastLinks{}.args());
    auto w2 = std::make_unique<WorkerProcess>(dir, "w2", key, FastLinks{}.args());
    const auto cache2 = w2->cache_dir();
    {
        RemotePipeline p(model, {w1->endpoint(), w2->endpoint()}, plan, remote_options(&tls));
        CHECK(p.ready().at(2).bytes_received == w2_bytes);  // a fresh cache: everything streamed
        CHECK(p.ready().at(2).bytes_from_cache == 0);
        CHECK(remote_tokens(p, {1}, 32) == want);
    }
    CHECK(count_files(cache2) == distinct_tensors(*full, plan.stages[1].blocks));

    // Kill worker 2 outright and start it again on the same cache (a new port).
    w2->kill(SIGKILL);
    w2->process().wait(5s);
    w2 = std::make_unique<WorkerProcess>(dir, "w2-again", key, FastLinks{}.args(), cache2);
    {
        RemotePipeline p(model, {w1->endpoint(), w2->endpoint()}, plan, remote_options(&tls));
        CHECK(p.ready().at(2).bytes_received == 0);
        CHECK(p.ready().at(2).bytes_from_cache == w2_bytes);
        CHECK(p.stats(2).weight_bytes_received == 0);
        CHECK(remote_tokens(p, {1}, 32) == want);
    }
    CHECK(w2->log().find("0 received") != std::string::npos);

    // Damage one cached tensor (same size, one byte flipped): the worker's hash
    // check drops it and exactly that tensor is sent again.
    const auto descs = describe_tensors(*full, plan.stages[1].blocks);
    const auto& victim = *std::max_element(descs.begin(), descs.end(),
                                           [](const auto& a, const auto& b) { return a.bytes < b.bytes; });
    {
        char hex[17];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(victim.hash));
        const auto path = cache2 + "/" + hex + ".tensor";
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        REQUIRE(f.good());
        f.seekg(static_cast<std::streamoff>(victim.bytes / 2));
        char c = 0;
        f.read(&c, 1);
        c = static_cast<char>(c ^ 0x5a);
        f.seekp(static_cast<std::streamoff>(victim.bytes / 2));
        f.write(&c, 1);
    }
    w2->kill(SIGKILL);
    w2->process().wait(5s);
    w2 = std::make_unique<WorkerProcess>(dir, "w2-third", key, FastLinks{}.args(), cache2);
    {
        RemotePipeline p(model, {w1->endpoint(), w2->endpoint()}, plan, remote_options(&tls));
        CHECK(p.ready().at(2).bytes_received == victim.bytes);
        CHECK(p.ready().at(2).bytes_from_cache == w2_bytes - victim.bytes);
        CHECK(remote_tokens(p, {1}, 32) == want);
    }
}

TEST_CASE("network: a worker with the model file maps it instead of receiving weights" * doctest::timeout(120)) {
    const auto dir = fresh_dir("local-model");
    const auto key = make_key(dir);
    TlsConfig tls(ClusterKey::load(key));
    const auto full = Model::open(test::stories260k());
    const auto model = Model::from_file(GgufFile::open(test::stories260k()), BlockRange{0, 0});
    const auto plan = Plan::even(model->config(), device_ids(2));

    auto args = FastLinks{}.args();
    args.insert(args.end(), {"--model", test::stories260k()});
    WorkerProcess w1(dir, "w1", key, args);
    // A worker whose file is another model (a vocabulary-only GGUF) receives the weights.
    auto args2 = FastLinks{}.args();
    args2.insert(args2.end(), {"--model", test::model_path("vocab/ggml-vocab-llama-spm.gguf")});
    WorkerProcess w2(dir, "w2", key, args2);

    RemotePipeline p(model, {w1.endpoint(), w2.endpoint()}, plan, remote_options(&tls));
    const auto& r1 = p.ready().at(1);
    CHECK(r1.bytes_received == 0);
    CHECK(r1.weight_bytes > 0);
    CHECK(r1.bytes_from_cache == r1.weight_bytes);
    CHECK(count_files(w1.cache_dir()) == 0);  // mapped, not copied
    const auto& r2 = p.ready().at(2);
    CHECK(r2.bytes_received == tensor_bytes(*full, plan.stages[1].blocks));
    CHECK(w2.log().find("does not match") != std::string::npos);
    CHECK(remote_tokens(p, {1}, 32) == single_device_tokens(full, {1}, 32));
}
