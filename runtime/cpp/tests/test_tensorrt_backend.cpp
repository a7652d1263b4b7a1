// src/tensorrt_backend.cpp compiled against the stand-ins in tensorrt_standin/ (NOT TensorRT, NOT
// CUDA): the backend's own control flow, which no machine here can run on real TensorRT. What each
// test would have caught is named in its comment (issue #25).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <dnx/runtime.hpp>

#include "engine.hpp"
#include "tensorrt_standin/cuda_runtime_api.h"
#include "tensorrt_standin/standin.hpp"

namespace {

namespace fs = std::filesystem;
using dnx::Error;
using nlohmann::json;

class TensorRtBackend : public ::testing::Test {
protected:
    void SetUp() override {
        standin::reset();
        static std::atomic<int> counter{0};
        dir_ = fs::temp_directory_path() / ("dnx-trt-standin-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    // An engine file with its sidecar as `dnx build` writes it (manifest.py), for the stand-in engine.
    std::string write_engine(const std::string& plan, bool version_compat, const std::string& recorded_bytes = "") {
        const std::string path = (dir_ / "m.engine").string();
        std::ofstream(path, std::ios::binary) << plan;
        const json source = {
            {"schema", "dnx.manifest/1"}, {"precision", "fp32"},
            {"input", {{"name", "input"}, {"shape", {"N", 3, 8, 8}}, {"dtype", "float32"}, {"layout", "NCHW"}}},
            {"preprocess", {{"image_size", 8}, {"resize_size", 8}, {"mean", {0.5, 0.5, 0.5}}, {"std", {0.5, 0.5, 0.5}},
                            {"in_channels", 3}, {"interpolation", "bilinear"}}},
            {"labels", {{"names", {"cat", "dog"}}}}};
        const json sidecar = {
            {"schema", "dnx.engine-manifest/1"}, {"tensorrt_version", "10.8.0.43"}, {"precision", "fp32"},
            {"gpu", {{"name", "Stand-in GPU"}, {"compute_capability", "8.9"}}}, {"hardware_compat", "none"},
            {"version_compat", version_compat}, {"batch_profile", {{"max_batch", 4}}},
            {"build_command", "dnx build m.onnx -o m.engine"},
            {"engine_sha256", dnx::detail::sha256_hex(recorded_bytes.empty() ? plan : recorded_bytes)},
            {"source_onnx", {{"path", "m.onnx"}, {"manifest", source}}}};
        std::ofstream(path + ".json") << sidecar.dump();
        return path;
    }

    std::unique_ptr<dnx::detail::Backend> load(const std::string& path, int device = 0) {
        dnx::Options options;
        options.cuda_device = device;
        options.allow_unverified = true;  // the hand-written manifest carries no parity certificate
        dnx::Manifest manifest;
        return dnx::detail::make_tensorrt_backend(path, options, manifest);
    }

    static std::vector<float> run(const dnx::detail::Backend& backend, std::size_t batch) {
        std::vector<float> in(batch * 3 * 8 * 8), out(batch * 2);
        for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 7) * 0.25f;
        backend.infer(in.data(), batch, out.data());
        return out;
    }

    fs::path dir_;
};

bool has(const std::vector<std::string>& events, const std::string& what) {
    return std::find(events.begin(), events.end(), what) != events.end();
}

// Row 2: a version-compatible plan needs IRuntime::setEngineHostCodeAllowed(true) (default false).
TEST_F(TensorRtBackend, VersionCompatiblePlanIsAllowedItsHostCode) {
    const auto backend = load(write_engine(standin::kVersionCompatPlan, true));
    EXPECT_TRUE(standin::host_code_allowed());
    const std::vector<float> out = run(*backend, 2);
    EXPECT_FLOAT_EQ(out[0], -out[1]);
    EXPECT_GT(out[0], 0.0f);
}

TEST_F(TensorRtBackend, OtherPlansAreNotGivenHostCode) {
    const auto backend = load(write_engine(standin::kPlan, false));
    EXPECT_FALSE(has(standin::events(), "setEngineHostCodeAllowed"));
    // and the stand-in does refuse host code that was not allowed, as TensorRT does
    standin::reset();
    try {
        load(write_engine(standin::kVersionCompatPlan, false));
        ADD_FAILURE() << "a plan with host code loaded without it being allowed";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Error::Code::BadArtifact);
        EXPECT_NE(std::string(e.what()).find("host code is not allowed"), std::string::npos) << e.what();
    }
}

// Row 1 end to end: a TensorRT 10 version-compatible engine loads under TensorRT 11.
TEST_F(TensorRtBackend, VersionCompatibleEngineOfTensorRt10LoadsOn11) {
    standin::config().lib_version = 110000;
    EXPECT_NO_THROW(load(write_engine(standin::kVersionCompatPlan, true)));
    standin::reset();
    standin::config().lib_version = 110000;
    EXPECT_THROW(load(write_engine(standin::kPlan, false)), Error);
}

// Row 5: the engine's bytes are compared with the manifest's engine_sha256 before deserializing.
TEST_F(TensorRtBackend, ReplacedEngineIsRefusedBeforeDeserializing) {
    const std::string path = write_engine(standin::kPlan, false, "the bytes dnx build wrote");
    try {
        load(path);
        ADD_FAILURE() << "an engine that is not the one its manifest describes loaded";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Error::Code::ManifestMismatch);
        const std::string what = e.what();
        EXPECT_NE(what.find("does not match its manifest (sha256 "), std::string::npos) << what;
        EXPECT_NE(what.find("dnx build m.onnx -o m.engine"), std::string::npos) << what;
    }
    EXPECT_FALSE(has(standin::events(), "deserialize"));
}

// Row 6: cudaSetDevice is per host thread; the backend restores the caller's device after loading,
// after each inference and after teardown, and releases everything on its own device.
TEST_F(TensorRtBackend, CallersDeviceIsRestoredAndTeardownRunsOnTheEnginesDevice) {
    const std::string path = write_engine(standin::kPlan, false);
    ASSERT_EQ(cudaSetDevice(1), cudaSuccess);
    auto backend = load(path, 0);
    EXPECT_EQ(standin::current_device(), 1);
    run(*backend, 3);
    EXPECT_EQ(standin::current_device(), 1);
    std::thread([&] {
        cudaSetDevice(1);
        run(*backend, 1);
        EXPECT_EQ(standin::current_device(), 1);
    }).join();
    backend.reset();
    EXPECT_EQ(standin::current_device(), 1);
    EXPECT_EQ(standin::wrong_device_releases(), 0u);
    // a load that fails after switching devices restores the caller's device too
    standin::config().cc_major = 9;
    EXPECT_THROW(load(path, 0), Error);
    EXPECT_EQ(standin::current_device(), 1);
}

// Row 7: after an error with the input copy queued, the lane's stream is synchronized before the
// lane goes back to the pool (the next caller would overwrite pinned memory still being read).
TEST_F(TensorRtBackend, LaneIsSynchronizedBeforeItReturnsToThePoolAfterAnError) {
    const auto backend = load(write_engine(standin::kPlan, false));
    const std::vector<float> expected = run(*backend, 2);
    standin::config().refuse_input_shape = true;
    std::vector<float> in(2 * 3 * 8 * 8, 1.0f), out(4);
    try {
        backend->infer(in.data(), 2, out.data());
        ADD_FAILURE() << "the refused shape did not fail";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Error::Code::Backend);
    }
    EXPECT_EQ(standin::pending_operations(), 0u);
    standin::config().refuse_input_shape = false;
    EXPECT_EQ(run(*backend, 2), expected);  // the lane still works
}

}  // namespace
