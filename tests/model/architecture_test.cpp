// Architectures: a file whose general.architecture tandem does not run is
// refused with UnsupportedError naming it and listing the supported ones, even
// when its own hyper-parameter keys are present or absent. The files are real
// GGUF files: stories260K's metadata and tensors, relabelled.
#include <doctest/doctest.h>

#include <string>

#include <tandem/gguf/writer.hpp>
#include <tandem/model/model.hpp>

#include "support/paths.hpp"

using namespace tandem;

namespace {

// stories260K rewritten as architecture `arch`; with `rename_keys` the llama.*
// keys become <arch>.* (a well-formed foreign file), otherwise they stay.
std::string relabelled(const std::string& arch, bool rename_keys) {
    const auto in = GgufFile::open(test::stories260k());
    GgufWriter w;
    w.set_version(in.version());
    for (const auto& [key, value] : in.metadata()) {
        if (rename_keys && key.rfind("llama.", 0) == 0) w.set(arch + key.substr(5), value);
        else w.set(key, value);
    }
    w.set("general.architecture", arch);
    for (const auto& t : in.tensors()) w.add_tensor(t.name, t.type, t.shape, t.data);
    const auto path = test::scratch_dir("arch") + "/" + arch + (rename_keys ? "-renamed" : "-llama-keys") + ".gguf";
    w.write(path);
    return path;
}

std::string refusal(const std::string& path) {
    try {
        Model::open(path);
    } catch (const UnsupportedError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("model: an architecture tandem does not run is refused with the supported list") {
    for (const bool rename : {true, false}) {
        for (const std::string arch : {"bloom", "gpt2", "falcon"}) {
            CAPTURE(arch);
            CAPTURE(rename);
            const auto msg = refusal(relabelled(arch, rename));
            CHECK(msg.find("architecture '" + arch + "' is not supported") != std::string::npos);
            CHECK(msg.find("(supported: " + supported_architectures() + ")") != std::string::npos);
            CHECK(supported_architectures().find("llama") != std::string::npos);
        }
    }
    // The control: the same rewrite labelled llama loads and runs.
    const auto m = Model::open(relabelled("llama", true));
    CHECK(m->config().architecture == "llama");
    CHECK(m->config().n_layers == Model::open(test::stories260k())->config().n_layers);
}
