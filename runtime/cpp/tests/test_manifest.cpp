// Manifests: the sidecar dnx writes, every way one can be wrong, and the TensorRT engine checks
// (pure functions, so they run here without TensorRT).
#include "fixtures.hpp"

#include <fstream>
#include <stdexcept>

#include <dnx/runtime.hpp>

#include "engine.hpp"

namespace {

using dnx::Error;
using nlohmann::json;

json good_manifest() {
    return {{"schema", "dnx.manifest/1"}, {"precision", "fp32"},
            {"input", {{"name", "input"}, {"shape", {"N", 3, 224, 224}}, {"dtype", "float32"}, {"layout", "NCHW"}}},
            {"preprocess", {{"image_size", 224}, {"resize_size", 256}, {"mean", {0.485, 0.456, 0.406}},
                            {"std", {0.229, 0.224, 0.225}}, {"in_channels", 3}, {"interpolation", "bicubic"}}},
            {"labels", {{"names", {"cat", "dog"}}}}};
}

void expect_refused(const json& j, const std::string& needle) {
    try {
        dnx::detail::parse_manifest(j.dump(), "m.json");
        ADD_FAILURE() << "accepted: " << j.dump();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Error::Code::BadArtifact);
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

TEST(Manifest, ReadsTheSidecarDnxWrites) {
    DNX_REQUIRE_FIXTURES();
    const std::string side = dnx_test::fixture("fp32.onnx.json");
    const dnx::Manifest m = dnx::detail::parse_manifest(dnx::detail::read_file(side), side);
    EXPECT_EQ(m.precision, "fp32");
    EXPECT_EQ(m.input_name, "input");
    EXPECT_EQ(m.input_shape, (std::vector<std::int64_t>{-1, 1, 28, 28}));
    EXPECT_EQ(m.preprocess.in_channels, 1);
    EXPECT_EQ(m.labels.size(), 10u);
    EXPECT_EQ(m.labels[9], "Ankle boot");
    EXPECT_EQ(m.sha256.size(), 64u);
}

TEST(Manifest, ParsesEveryField) {
    const dnx::Manifest m = dnx::detail::parse_manifest(good_manifest().dump(), "m.json");
    EXPECT_EQ(m.preprocess.interpolation, dnx::Interpolation::Bicubic);
    EXPECT_EQ(m.preprocess.resize_size, 256);
    EXPECT_FLOAT_EQ(m.preprocess.std[2], 0.225f);
}

TEST(Manifest, RefusesBrokenManifests) {
    expect_refused(json::parse("[1, 2]"), "not a dnx manifest");
    try {
        dnx::detail::parse_manifest("{\"schema\": \"dnx.manifest/1\", ", "m.json");
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos);
    }
    json j = good_manifest();
    j["schema"] = "other/1";
    expect_refused(j, "not a dnx manifest");
    j = good_manifest();
    j.erase("preprocess");
    expect_refused(j, "preprocess is missing");
    j = good_manifest();
    j["preprocess"]["mean"] = "zero";
    expect_refused(j, "preprocess.mean must be an array");
    j = good_manifest();
    j["preprocess"]["std"] = {0.2, 0.0, 0.2};
    expect_refused(j, "preprocess.std[1] must be > 0");
    j = good_manifest();
    j["input"]["shape"] = {"N", 1, 224, 224};
    expect_refused(j, "does not match the preprocess");
    j = good_manifest();
    j["input"]["layout"] = "NHWC";
    expect_refused(j, "NHWC");
    j = good_manifest();
    j["preprocess"]["interpolation"] = "lanczos";
    expect_refused(j, "lanczos");
    j = good_manifest();
    j["labels"]["names"] = json::array();
    expect_refused(j, "neither label names nor an output shape");
}

TEST(Manifest, UnnamedClassesAreNamedByIndex) {
    json j = good_manifest();
    j["labels"]["names"] = nullptr;
    j["output"] = {{"name", "logits"}, {"shape", {"N", 3}}};
    const dnx::Manifest m = dnx::detail::parse_manifest(j.dump(), "m.json");
    EXPECT_EQ(m.labels, (std::vector<std::string>{"0", "1", "2"}));
}

json engine_manifest() {
    return {{"schema", "dnx.engine-manifest/1"}, {"tensorrt_version", "10.8.0.43"}, {"precision", "int8"},
            {"gpu", {{"name", "NVIDIA L4"}, {"compute_capability", "8.9"}}}, {"hardware_compat", "none"},
            {"version_compat", false}, {"batch_profile", {{"max_batch", 32}}},
            {"build_command", "dnx build m.onnx --precision int8"}, {"engine_sha256", std::string(64, 'a')},
            {"source_onnx", {{"path", "m.onnx"}, {"manifest", good_manifest()}}}};
}

std::string refusal(const json& engine, const dnx::detail::EngineFacts& here) {
    try {
        dnx::detail::check_engine_compatible(dnx::detail::parse_engine_manifest(engine.dump(), "m.engine.json"), here,
                                             "m.engine");
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Error::Code::ManifestMismatch);
        return e.what();
    }
    return "";
}

TEST(EngineManifest, ReadsProfileAndSourceManifest) {
    const auto e = dnx::detail::parse_engine_manifest(engine_manifest().dump(), "m.engine.json");
    EXPECT_EQ(e.max_batch, 32);
    EXPECT_EQ(e.manifest.precision, "int8");
    EXPECT_EQ(e.manifest.artifact, "tensorrt-engine");
    EXPECT_EQ(e.manifest.labels.size(), 2u);
    json no_source = engine_manifest();
    no_source.erase("source_onnx");
    EXPECT_THROW(dnx::detail::parse_engine_manifest(no_source.dump(), "x"), Error);
    json no_gpu = engine_manifest();
    no_gpu.erase("gpu");
    EXPECT_THROW(dnx::detail::parse_engine_manifest(no_gpu.dump(), "x"), Error);
    EXPECT_THROW(dnx::detail::parse_engine_manifest(good_manifest().dump(), "x"), Error);  // an ONNX manifest
}

TEST(EngineManifest, RefusalsNameBothSidesAndTheRebuildCommand) {
    const json e = engine_manifest();
    EXPECT_EQ(refusal(e, {"10.8.0", "8.9", "NVIDIA RTX 4090"}), "");  // same sm_89: runs (Python warns)
    const std::string other_version = refusal(e, {"10.9.0", "8.9", "NVIDIA L4"});
    EXPECT_NE(other_version.find("m.engine was built with TensorRT 10.8.0.43 on sm_89 (NVIDIA L4); this machine "
                                 "has TensorRT 10.9.0 on sm_89"), std::string::npos) << other_version;
    EXPECT_NE(other_version.find("dnx build m.onnx --precision int8"), std::string::npos) << other_version;
}

TEST(EngineManifest, DigestIsSha256AndAMismatchIsRefused) {
    EXPECT_EQ(dnx::detail::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(dnx::detail::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    auto e = dnx::detail::parse_engine_manifest(engine_manifest().dump(), "m.engine.json");
    e.manifest.sha256 = dnx::detail::sha256_hex("abc");
    EXPECT_NO_THROW(dnx::detail::check_engine_digest(e, dnx::detail::sha256_hex("abc"), "m.engine"));
    try {
        dnx::detail::check_engine_digest(e, dnx::detail::sha256_hex("abd"), "m.engine");
        ADD_FAILURE() << "a replaced engine passed";
    } catch (const Error& ex) {
        EXPECT_EQ(ex.code(), Error::Code::ManifestMismatch);
        EXPECT_EQ(std::string(ex.what()), "m.engine does not match its manifest (sha256 a52d159f262b vs ba7816bf8f01): "
                                          "the engine was replaced without its sidecar; rebuild it on this machine "
                                          "with `dnx build m.onnx --precision int8`");
    }
    e.manifest.sha256.clear();  // an older sidecar without engine_sha256: nothing to compare, as Python
    EXPECT_NO_THROW(dnx::detail::check_engine_digest(e, "00", "m.engine"));
}

// The rule as one table that the Python test (tests/runtime/test_tensorrt_manifest.py) reads too.
json compat_table() {
    std::ifstream in(DNX_SOURCE_ROOT "/tests/runtime/engine_compat_cases.json");
    if (!in) throw std::runtime_error("cannot read tests/runtime/engine_compat_cases.json");
    return json::parse(in);
}

TEST(EngineManifest, CompatibilityRulesAreTheSharedTable) {
    const json table = compat_table();
    std::vector<std::pair<int, int>> across;
    for (const auto& pair : table["across_majors"]) across.emplace_back(pair[0].get<int>(), pair[1].get<int>());
    EXPECT_EQ(dnx::detail::version_compat_across_majors(), across);
    ASSERT_GE(table["cases"].size(), 10u);
    for (const json& c : table["cases"]) {
        json e = engine_manifest();
        e["tensorrt_version"] = c["built"];
        e["gpu"] = {{"name", "GPU A"}, {"compute_capability", c["cc"]}};
        e["version_compat"] = c.value("version_compat", false);
        e["hardware_compat"] = c.value("hardware_compat", std::string("none"));
        const std::string got = refusal(e, {c["here"].get<std::string>(), c["here_cc"].get<std::string>(), "GPU A"});
        if (c.value("runs", false))
            EXPECT_EQ(got, "") << c.dump();
        else
            EXPECT_NE(got.find(c["refused"].get<std::string>()), std::string::npos) << c.dump() << "\n" << got;
    }
}

}  // namespace
