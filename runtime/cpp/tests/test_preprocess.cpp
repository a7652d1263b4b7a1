// C++ preprocessing against dnx/data/preprocess.py (Pillow) on the same image files, in both decode
// modes: fast must be bit-identical, exact within one grey level (1/255 before normalisation)
// everywhere; the test also reports how many elements are bit-identical.
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
    std::size_t total = 0, identical = 0, fast_pairs = 0, fast_identical_pairs = 0;
    double worst_levels = 0;  // in grey levels (x 255 / std undone)
    for (const auto& entry : idx["preprocessed"]) {
        const std::string path = idx["images"][entry["image"].get<std::size_t>()];
        const std::string spec_name = entry["spec"];
        const std::string decode = entry.value("decode", std::string("exact"));
        nlohmann::json block = idx["specs"][spec_name];
        block["decode"] = decode;
        const dnx::Preprocess spec = spec_of(block);
        dnx::DecodeOptions options;
        options.min_short_side = dnx::fast_decode_side(spec);
        const std::vector<float> want = dnx_test::read_raw<float>(entry["file"]);
        const std::vector<float> got = dnx::preprocess(dnx::Image::from_file(path, options), spec);
        ASSERT_EQ(got.size(), want.size()) << path << " " << spec_name << " " << decode;
        const std::size_t plane = got.size() / spec.std.size();
        double levels = 0;
        std::size_t same = 0;
        for (std::size_t i = 0; i < got.size(); ++i) {
            same += got[i] == want[i];
            levels = std::max(levels, std::fabs(double(got[i]) - want[i]) * spec.std[i / plane] * 255.0);
        }
        identical += same;
        total += got.size();
        worst_levels = std::max(worst_levels, levels);
        if (decode == "fast") {
            ++fast_pairs;
            fast_identical_pairs += same == got.size();
            // fast: libjpeg-turbo's DCT scaling on both sides, then Pillow's resize of the region the crop
            // keeps (its box, its pass order): the same tensor, bit for bit, for every image and spec
            EXPECT_EQ(same, got.size()) << path << " with " << spec_name << " (fast): off by " << levels << " grey levels";
        }
        EXPECT_LE(levels, 1.0 + 1e-3) << path << " with " << spec_name << " (" << decode << "): off by " << levels
                                      << " grey levels";
    }
    std::cout << "[parity] preprocess: " << idx["preprocessed"].size() << " image/spec/decode triples (" << fast_pairs
              << " fast, " << fast_identical_pairs << " of them bit-identical), " << identical << "/" << total
              << " elements bit-identical, max diff " << worst_levels << " grey levels\n";
    ::testing::Test::RecordProperty("identical_fraction", std::to_string(double(identical) / double(total)));
}

TEST(Preprocess, FastDecodeUsesPythonsMargin) {
    DNX_REQUIRE_FIXTURES();
    EXPECT_EQ(dnx_test::index()["fast_decode_margin"].get<int>(), dnx::kFastDecodeMargin);
    dnx::Preprocess spec{224, 256, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}, 3, dnx::Interpolation::Bilinear};
    EXPECT_EQ(dnx::fast_decode_side(spec), 0);
    spec.decode = dnx::Decode::Fast;
    EXPECT_EQ(dnx::fast_decode_side(spec), dnx::kFastDecodeMargin * 256);
}

// Truncated JPEG, bad-CRC PNG, a strip whose resized image is over the pixel limit: dnx.load refuses
// each (tests/data/test_decode.py), and so does C++, in both decode modes, with Error(BadImage).
TEST(Preprocess, RefusesWhatPythonRefuses) {
    DNX_REQUIRE_FIXTURES();
    const auto& idx = dnx_test::index();
    ASSERT_GE(idx["refused"].size(), 3u);
    for (const dnx::Decode decode : {dnx::Decode::Exact, dnx::Decode::Fast}) {
        dnx::Preprocess spec{224, 256, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}, 3, dnx::Interpolation::Bilinear, decode};
        dnx::DecodeOptions options;
        options.min_short_side = dnx::fast_decode_side(spec);
        for (const auto& path : idx["refused"]) {
            try {
                dnx::preprocess(dnx::Image::from_file(path.get<std::string>(), options), spec, 50000000);
                ADD_FAILURE() << path << " was accepted";
            } catch (const dnx::Error& e) {
                EXPECT_EQ(e.code(), dnx::Error::Code::BadImage) << path << ": " << e.what();
                EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
            }
        }
    }
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

// The EXIF reader on every prefix of a valid block, on both byte orders, and on noise: the tag or 1,
// never a read outside the block (the ASan build checks that), 6 only when the whole entry is there.
TEST(Preprocess, ExifReaderIsBoundedOnTruncatedAndMalformedBlocks) {
    const std::vector<std::uint8_t> little = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0,  // header, IFD0 at 8, 1 entry
                                              0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0};
    const std::vector<std::uint8_t> big = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1,
                                           0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0};
    for (const auto* block : {&little, &big}) {
        EXPECT_EQ(dnx::detail::exif_orientation(block->data(), block->size()), 6);
        for (std::size_t n = 0; n < 22; ++n) {
            const std::vector<std::uint8_t> prefix(block->begin(), block->begin() + static_cast<std::ptrdiff_t>(n));
            EXPECT_EQ(dnx::detail::exif_orientation(prefix.data(), prefix.size()), 1) << n;
        }
    }
    std::vector<std::uint8_t> noise(64);
    std::uint32_t state = 1;
    for (int round = 0; round < 2000; ++round) {
        for (auto& b : noise) b = static_cast<std::uint8_t>((state = state * 1664525u + 1013904223u) >> 24);
        noise[0] = noise[1] = round % 2 ? 'I' : 'M';
        const int o = dnx::detail::exif_orientation(noise.data(), static_cast<std::size_t>(round % 65));
        EXPECT_TRUE(o >= 1 && o <= 65535) << o;
    }
    dnx::Image img = dnx::Image::from_pixels(3, 2, 1, std::vector<std::uint8_t>{1, 2, 3, 4, 5, 6}.data());
    EXPECT_EQ(dnx::detail::apply_orientation(img, 6).pixels, (std::vector<std::uint8_t>{4, 1, 5, 2, 6, 3}));
    EXPECT_EQ(dnx::detail::apply_orientation(img, 8).pixels, (std::vector<std::uint8_t>{3, 6, 2, 5, 1, 4}));
    EXPECT_EQ(dnx::detail::apply_orientation(img, 9).pixels, img.pixels);  // out of range: unchanged
}
