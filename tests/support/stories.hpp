// stories260K opened once per test program and shared by its tests.
#pragma once

#include <memory>

#include <tandem/model/model.hpp>

#include "support/paths.hpp"

namespace tandem::test {

inline std::shared_ptr<const Model> stories() {
    static const auto m = Model::open(stories260k());
    return m;
}

}  // namespace tandem::test
