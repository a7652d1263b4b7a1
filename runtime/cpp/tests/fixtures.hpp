// Access to the files tests/make_fixtures.py writes (Python's side of every parity test).
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace dnx_test {

inline std::string fixture(const std::string& name) { return std::string(DNX_FIXTURES) + "/" + name; }

// index.json, or null when the fixtures were not generated (tests then skip, visibly).
inline const nlohmann::json& index() {
    static const nlohmann::json j = [] {
        std::ifstream in(fixture("index.json"));
        return in ? nlohmann::json::parse(in) : nlohmann::json();
    }();
    return j;
}

#define DNX_REQUIRE_FIXTURES()                                                                               \
    do {                                                                                                    \
        if (dnx_test::index().is_null())                                                                    \
            GTEST_SKIP() << "no fixtures in " DNX_FIXTURES "; run tests/make_fixtures.py (build_and_test.sh does)"; \
    } while (0)

template <typename T>
std::vector<T> read_raw(const std::string& name) {
    std::ifstream in(fixture(name), std::ios::binary | std::ios::ate);
    if (!in) throw std::runtime_error("missing fixture " + name);
    const auto bytes = static_cast<std::size_t>(in.tellg());
    std::vector<T> v(bytes / sizeof(T));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
    return v;
}

inline std::vector<std::uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace dnx_test
