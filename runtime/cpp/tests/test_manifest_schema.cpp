// The C++ manifest parsers against the JSON Schema: tests/manifest_cases.py writes valid and invalid
// manifests, each judged by dnx/schemas/json/*.schema.json and Python's reader (make_fixtures.py runs
// it); the parser must accept exactly those marked cpp_accepts and name the bad field in its error.
#include "fixtures.hpp"

#include <dnx/runtime.hpp>

#include "engine.hpp"

namespace {

using dnx::Error;
using nlohmann::json;

json cases() {
    std::ifstream in(dnx_test::fixture("manifest_cases/index.json"));
    return in ? json::parse(in) : json();
}

TEST(ManifestSchema, ParserAcceptsExactlyTheValidCases) {
    const json index = cases();
    if (index.is_null()) GTEST_SKIP() << "no manifest_cases in " DNX_FIXTURES "; run tests/make_fixtures.py";
    ASSERT_GE(index.size(), 40u);
    int accepted = 0, refused = 0;
    for (const json& c : index) {
        const std::string file = dnx_test::fixture("manifest_cases/" + c["file"].get<std::string>());
        const std::string text = dnx::detail::read_file(file);
        const bool engine = c["kind"] == "engine";
        const std::string name = c["kind"].get<std::string>() + "/" + c["name"].get<std::string>();
        try {
            if (engine)
                dnx::detail::parse_engine_manifest(text, file);
            else
                dnx::detail::parse_manifest(text, file);
            EXPECT_TRUE(c["cpp_accepts"].get<bool>()) << name << " was accepted; the schema says " << c.dump();
            ++accepted;
        } catch (const Error& e) {
            const std::string what = e.what();
            EXPECT_FALSE(c["cpp_accepts"].get<bool>()) << name << " was refused: " << what;
            EXPECT_EQ(e.code(), Error::Code::BadArtifact) << name << ": " << what;
            EXPECT_EQ(what.find('\n'), std::string::npos) << name << ": " << what;
            if (c["field"].is_string()) {  // the field Python's reader names, named here too
                EXPECT_NE(what.find(c["field"].get<std::string>()), std::string::npos)
                    << name << ": expected the field " << c["field"] << " in: " << what;
            }
            ++refused;
        }
    }
    EXPECT_GE(accepted, 8);
    EXPECT_GE(refused, 30);
}

TEST(ManifestSchema, EngineSuffixesAreEnginePathsInAnyCase) {
    for (const char* path : {"m.engine", "m.plan", "m.trt", "dir/M.PLAN", "m.Engine"})
        EXPECT_TRUE(dnx::detail::is_engine_path(path)) << path;
    for (const char* path : {"m.onnx", "engine", "m.engine/x.onnx", "m.engine.json", "plan"})
        EXPECT_FALSE(dnx::detail::is_engine_path(path)) << path;
}

}  // namespace
