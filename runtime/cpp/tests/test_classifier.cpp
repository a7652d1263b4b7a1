// Classifier: loading and refusing artifacts, bad calls, and 8 threads sharing one instance.
#include "fixtures.hpp"

#include <dnx/runtime.hpp>

#include <cstdio>
#include <thread>

namespace {

using dnx::Classifier;
using dnx::Error;

Error::Code load_error(const std::string& path, std::string* message = nullptr) {
    try {
        Classifier::load(path);
    } catch (const Error& e) {
        if (message) *message = e.what();
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
        return e.code();
    }
    ADD_FAILURE() << path << " loaded";
    return Error::Code::Backend;
}

std::vector<dnx::Image> fmnist_images(std::size_t n) {
    const auto px = dnx_test::read_raw<std::uint8_t>(dnx_test::index()["fmnist"]["images"]);
    std::vector<dnx::Image> out;
    for (std::size_t i = 0; i < n; ++i) out.push_back(dnx::Image::from_pixels(28, 28, 1, &px[i * 784]));
    return out;
}

TEST(Classifier, LoadsFromSidecarAndFromOnnxMetadata) {
    DNX_REQUIRE_FIXTURES();
    const Classifier side = Classifier::load(dnx_test::fixture("fp32.onnx"));
    EXPECT_EQ(side.num_classes(), 10);
    EXPECT_EQ(side.max_batch(), 64u);
    EXPECT_EQ(side.backend_name(), "openvino-CPU");
    EXPECT_NE(side.manifest().path.find(".onnx.json"), std::string::npos);
    const Classifier embedded = Classifier::load(dnx_test::fixture("embedded.onnx"));
    EXPECT_EQ(embedded.manifest().path, dnx_test::fixture("embedded.onnx"));
    EXPECT_EQ(embedded.manifest().labels, side.manifest().labels);
    EXPECT_EQ(embedded.manifest().preprocess.mean, side.manifest().preprocess.mean);
}

TEST(Classifier, RefusesMissingForeignCorruptAndMismatchedArtifacts) {
    DNX_REQUIRE_FIXTURES();
    std::string msg;
    EXPECT_EQ(load_error("/nonexistent/model.onnx"), Error::Code::NotFound);
    EXPECT_EQ(load_error(dnx_test::fixture("foreign.onnx"), &msg), Error::Code::BadArtifact);
    EXPECT_NE(msg.find("no dnx manifest"), std::string::npos) << msg;
    dnx::Options bad_precision;
    bad_precision.inference_precision = "int3";
    EXPECT_THROW(Classifier::load(dnx_test::fixture("fp32.onnx"), bad_precision), Error);
    EXPECT_EQ(load_error(dnx_test::fixture("mismatch.onnx"), &msg), Error::Code::ManifestMismatch);
    EXPECT_NE(msg.find("5 labels"), std::string::npos) << msg;

    const std::string garbage = ::testing::TempDir() + "garbage.onnx";
    dnx_test::write_bytes(garbage, std::vector<std::uint8_t>(4096, 0xAB));
    EXPECT_EQ(load_error(garbage), Error::Code::BadArtifact);
    auto half = dnx_test::read_bytes(dnx_test::fixture("fp32.onnx"));
    half.resize(half.size() / 2);
    const std::string truncated = ::testing::TempDir() + "truncated.onnx";
    dnx_test::write_bytes(truncated, half);
    EXPECT_EQ(load_error(truncated), Error::Code::BadArtifact);
    const std::string engine = ::testing::TempDir() + "x.engine";
    dnx_test::write_bytes(engine, std::vector<std::uint8_t>(64, 1));
    const Error::Code engine_code = load_error(engine, &msg);
    EXPECT_TRUE(engine_code == Error::Code::Unsupported || engine_code == Error::Code::BadArtifact) << msg;
    std::remove(garbage.c_str());
    std::remove(truncated.c_str());
    std::remove(engine.c_str());
}

TEST(Classifier, RefusesUncertifiedUnlessAllowed) {
    DNX_REQUIRE_FIXTURES();
    // a copy of the FP32 artifact whose sidecar lost its certificate, then one whose check failed
    const std::string copy = ::testing::TempDir() + "uncertified.onnx";
    dnx_test::write_bytes(copy, dnx_test::read_bytes(dnx_test::fixture("fp32.onnx")));
    nlohmann::json side = nlohmann::json::parse(dnx_test::read_bytes(dnx_test::fixture("fp32.onnx.json")));
    ASSERT_EQ(side["certificate"]["verdict"], "passed");
    for (const char* verdict : {"", "failed"}) {
        nlohmann::json m = side;
        if (*verdict) m["certificate"]["verdict"] = verdict;
        else m.erase("certificate");
        const std::string text = m.dump();
        dnx_test::write_bytes(copy + ".json", std::vector<std::uint8_t>(text.begin(), text.end()));
        std::string msg;
        EXPECT_EQ(load_error(copy, &msg), Error::Code::Unverified) << verdict;
        EXPECT_NE(msg.find(*verdict ? "verification failed" : "no parity certificate"), std::string::npos) << msg;
        dnx::Options allow;
        allow.allow_unverified = true;
        EXPECT_EQ(Classifier::load(copy, allow).num_classes(), 10);
    }
    std::remove(copy.c_str());
    std::remove((copy + ".json").c_str());
}

TEST(Classifier, RefusesBadCalls) {
    DNX_REQUIRE_FIXTURES();
    const Classifier model = Classifier::load(dnx_test::fixture("fp32.onnx"));
    const auto images = fmnist_images(65);
    EXPECT_THROW(model.classify(images), Error);  // 65 > max_batch 64
    EXPECT_THROW(model.classify(images[0], 0), Error);
    EXPECT_THROW(model.classify(images[0], 11), Error);  // more than the 10 classes
    EXPECT_THROW(model.classify(nullptr, 1), Error);
    EXPECT_THROW(model.logits(nullptr, 1), Error);
    std::vector<float> input(784 * 65);
    EXPECT_THROW(model.logits(input.data(), 65), Error);
    EXPECT_THROW(model.logits(input.data(), 0), Error);
    dnx::Image two_channel;
    two_channel.width = two_channel.height = 28;
    two_channel.channels = 2;
    two_channel.pixels.assign(28 * 28 * 2, 0);
    EXPECT_THROW(model.classify(two_channel), Error);
    // the model still works after every refusal
    EXPECT_EQ(model.classify(images[0], 3).indices.size(), 3u);
}

TEST(Classifier, ClassifiesOddImagesAndReportsTimings) {
    DNX_REQUIRE_FIXTURES();
    const Classifier model = Classifier::load(dnx_test::fixture("fp32.onnx"));
    const std::uint8_t px[3] = {255, 0, 0};
    dnx::Timings t;
    const dnx::Prediction one = model.classify(dnx::Image::from_pixels(1, 1, 3, px), 10, &t);
    EXPECT_EQ(one.indices.size(), 10u);
    float sum = 0;
    for (float p : one.probabilities) sum += p;
    EXPECT_NEAR(sum, 1.0f, 1e-5f);
    EXPECT_GT(t.infer_ms, 0.0);
    EXPECT_GE(t.preprocess_ms, 0.0);
    std::vector<std::uint8_t> big(5000u * 3000u * 3u, 90);
    EXPECT_EQ(model.classify(dnx::Image::from_pixels(5000, 3000, 3, big.data()), 1).indices.size(), 1u);
    const auto batch = model.classify(fmnist_images(5), 2);
    ASSERT_EQ(batch.size(), 5u);
    EXPECT_EQ(batch[0].labels[0], model.manifest().labels[static_cast<std::size_t>(batch[0].indices[0])]);
}

TEST(Classifier, EightThreadsMatchSerialCalls) {
    DNX_REQUIRE_FIXTURES();
    dnx::Options options;
    options.num_requests = 4;
    const Classifier model = Classifier::load(dnx_test::fixture("fp32.onnx"), options);
    const auto images = fmnist_images(64);
    std::vector<dnx::Prediction> serial;
    for (const auto& img : images) serial.push_back(model.classify(img, 3));
    constexpr int kThreads = 8, kCalls = 500;
    std::vector<int> mismatches(kThreads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kCalls; ++i) {
                const std::size_t k = static_cast<std::size_t>(t * 7 + i) % images.size();
                const dnx::Prediction p = model.classify(images[k], 3);
                mismatches[static_cast<std::size_t>(t)] +=
                    p.indices != serial[k].indices || p.probabilities != serial[k].probabilities;
            }
        });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[static_cast<std::size_t>(t)], 0) << "thread " << t;
}

TEST(Classifier, MovedFromKeepsWorkingInTheNewOwner) {
    DNX_REQUIRE_FIXTURES();
    Classifier a = Classifier::load(dnx_test::fixture("fp32.onnx"));
    Classifier b = std::move(a);
    EXPECT_EQ(b.classify(fmnist_images(1)[0], 1).indices.size(), 1u);
}

}  // namespace

// The decode the manifest names (new exports: "fast"), overridden by Options::decode; EXIF by default.
TEST(Classifier, DecodesAsTheManifestAndOptionsSay) {
    DNX_REQUIRE_FIXTURES();
    std::string big, rotated;
    for (const auto& p : dnx_test::index()["images"]) {
        const std::string path = p;
        if (path.find("photo_12mp_4000x3000.jpg") != std::string::npos) big = path;
        if (path.find("exif_6_1150x1060.jpg") != std::string::npos) rotated = path;
    }
    ASSERT_FALSE(big.empty());
    ASSERT_FALSE(rotated.empty());
    const Classifier manifest_decode = Classifier::load(dnx_test::fixture("fp32.onnx"));
    EXPECT_EQ(manifest_decode.manifest().preprocess.decode, dnx::Decode::Fast);
    // 28-pixel model, margin 2: the short side must stay >= 56, so 1/8 of 3000 (375) is the scale
    EXPECT_EQ(manifest_decode.read_image(big).width, 500);
    dnx::Options exact;
    exact.decode = "exact";
    exact.exif_orientation = false;
    const Classifier full = Classifier::load(dnx_test::fixture("fp32.onnx"), exact);
    EXPECT_EQ(full.manifest().preprocess.decode, dnx::Decode::Exact);
    EXPECT_EQ(full.read_image(big).width, 4000);
    EXPECT_EQ(full.read_image(rotated).width, 1150);           // stored sideways
    EXPECT_EQ(manifest_decode.read_image(rotated).width, 133);  // upright (1060 / 8), at 1/8
    dnx::Options bad;
    bad.decode = "turbo";
    try {
        Classifier::load(dnx_test::fixture("fp32.onnx"), bad);
        ADD_FAILURE() << "decode \"turbo\" accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Error::Code::InvalidArgument);
    }
}
