// C++ preprocessing against dnx/data/preprocess.py (Pillow) on the same image files: the tensors
// must agree within one grey level (1/255 before normalisation) everywhere; the test also reports
// how many elements are bit-identical.
#include "fixtures.hpp"

#include <dnx/runtime.hpp>

#include <cmath>
#include <iostream>

#include "internal.hpp"

namespace {

dnx::Preprocess spec_of(const nlohmann::json& j) {
    // the same parser the runtime uses for manifests, fed a minimal manifest around the block
    const int c = j["in_channels"].get<int>(), s = j["image_size"].get<int>();
    nlohmann::json m = {{"schema", "dnx.manifest/1"}, {"precision", "fp32"},
                        {"input", {{"name", "input"}, {"shape", {"N", c, s, s}}}},
                        {"preprocess", j}, {"labels", {{"names", {"a"}}}}};
    return dnx::detail::parse_manifest(m.dump(), "test").preprocess;
}

TEST(Preprocess, MatchesPillowOnEveryImageAndSpec) {
    DNX_REQUIRE_FIXTURES();
    const auto& idx = dnx_test::index();
    std::size_t total = 0, identical = 0;
    double worst_levels = 0;  // in grey levels (x 255 / std undone)
    for (const auto& entry : idx["preprocessed"]) {
        const std::string path = idx["images"][entry["image"].get<std::size_t>()];
        const std::string spec_name = entry["spec"];
        const dnx::Preprocess spec = spec_of(idx["specs"][spec_name]);
        const std::vector<float> want = dnx_test::read_raw<float>(entry["file"]);
        const std::vector<float> got = dnx::preprocess(dnx::Image::from_file(path), spec);
        ASSERT_EQ(got.size(), want.size()) << path << " " << spec_name;
        const std::size_t plane = got.size() / spec.std.size();
        double levels = 0;
        for (std::size_t i = 0; i < got.size(); ++i) {
            identical += got[i] == want[i];
            levels = std::max(levels, std::fabs(double(got[i]) - want[i]) * spec.std[i / plane] * 255.0);
        }
        total += got.size();
        worst_levels = std::max(worst_levels, levels);
        EXPECT_LE(levels, 1.0 + 1e-3) << path << " with " << spec_name << ": off by " << levels << " grey levels";
    }
    std::cout << "[parity] preprocess: " << idx["preprocessed"].size() << " image/spec pairs, " << identical << "/"
              << total << " elements bit-identical, max diff " << worst_levels << " grey levels\n";
    ::testing::Test::RecordProperty("identical_fraction", std::to_string(double(identical) / double(total)));
}

TEST(Preprocess, ModelSizeImagesAreOnlyScaled) {
    DNX_REQUIRE_FIXTURES();
    const auto& fm = dnx_test::index()["fmnist"];
    const dnx::Preprocess spec = spec_of(dnx_test::index()["specs"]["fmnist"]);
    const auto images = dnx_test::read_raw<std::uint8_t>(fm["images"]);
    const auto want = dnx_test::read_raw<float>(fm["input"]);
    const std::size_t n = fm["count"], per = 28 * 28;
    for (std::size_t i = 0; i < n; i += 7) {
        const auto got = dnx::preprocess(dnx::Image::from_pixels(28, 28, 1, &images[i * per]), spec);
        ASSERT_TRUE(std::equal(got.begin(), got.end(), want.begin() + static_cast<std::ptrdiff_t>(i * per))) << i;
    }
}

TEST(Preprocess, RejectsBadSpecsAndImages) {
    dnx::Preprocess spec{28, 28, {0.5f}, {0.5f}, 1, dnx::Interpolation::Bilinear};
    dnx::Image two_channel;
    two_channel.width = two_channel.height = 4;
    two_channel.channels = 2;
    two_channel.pixels.assign(32, 0);
    EXPECT_THROW(dnx::preprocess(two_channel, spec), dnx::Error);
    dnx::Image lying = dnx::Image::from_pixels(4, 4, 1, two_channel.pixels.data());
    lying.width = 400;  // pixel buffer no longer matches the size
    EXPECT_THROW(dnx::preprocess(lying, spec), dnx::Error);
    spec.mean = {0.5f, 0.5f};
    EXPECT_THROW(dnx::preprocess(dnx::Image::from_pixels(4, 4, 1, two_channel.pixels.data()), spec), dnx::Error);
}

TEST(Preprocess, OnePixelAndLargeImages) {
    const dnx::Preprocess spec{224, 256, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, 3,
                               dnx::Interpolation::Bilinear};
    const std::uint8_t px[3] = {10, 200, 30};
    const auto one = dnx::preprocess(dnx::Image::from_pixels(1, 1, 3, px), spec);
    EXPECT_EQ(one.size(), 3u * 224 * 224);
    EXPECT_FLOAT_EQ(one[0], (10 / 255.0f - 0.485f) / 0.229f);  // a constant image stays constant
    std::vector<std::uint8_t> big(6000u * 4000u * 3u, 128);
    const auto large = dnx::preprocess(dnx::Image::from_pixels(6000, 4000, 3, big.data()), spec);
    EXPECT_FLOAT_EQ(large[12345], (128 / 255.0f - 0.485f) / 0.229f);
}

}  // namespace
