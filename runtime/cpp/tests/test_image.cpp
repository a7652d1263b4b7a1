// Decoding: real photos, and every way an image file can be wrong (each a dnx::Error, never a crash).
#include "fixtures.hpp"

#include <dnx/runtime.hpp>

#include <functional>

namespace {

using dnx::Error;
using dnx::Image;

std::string photo(const char* name) { return std::string(DNX_SOURCE_ROOT) + "/dnx/assets/photos/" + name; }

Error::Code code_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "message must be one line: " << e.what();
        return e.code();
    }
    ADD_FAILURE() << "no dnx::Error thrown";
    return Error::Code::Backend;
}

TEST(Image, DecodesBundledJpeg) {
    const Image img = Image::from_file(photo("chelsea.jpg"));
    EXPECT_EQ(img.channels, 3);
    EXPECT_EQ(img.width, 385);
    EXPECT_EQ(img.height, 256);
    EXPECT_EQ(img.pixels.size(), 385u * 256u * 3u);
}

TEST(Image, MissingFileIsNotFound) {
    EXPECT_EQ(code_of([] { Image::from_file("/nonexistent/x.jpg"); }), Error::Code::NotFound);
}

TEST(Image, TruncatedJpegIsRefused) {
    auto bytes = dnx_test::read_bytes(photo("astronaut.jpg"));
    bytes.resize(bytes.size() / 2);
    EXPECT_EQ(code_of([&] { Image::decode(bytes.data(), bytes.size()); }), Error::Code::BadImage);
    bytes.resize(200);  // inside the headers
    EXPECT_EQ(code_of([&] { Image::decode(bytes.data(), bytes.size()); }), Error::Code::BadImage);
}

TEST(Image, TruncatedPngIsRefused) {
    DNX_REQUIRE_FIXTURES();
    auto bytes = dnx_test::read_bytes(dnx_test::fixture("images/rgb_37x23.png"));
    ASSERT_GT(bytes.size(), 100u);
    for (std::size_t keep : {bytes.size() - 20, std::size_t{40}, std::size_t{9}}) {
        std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep));
        EXPECT_EQ(code_of([&] { Image::decode(cut.data(), cut.size()); }), Error::Code::BadImage) << keep;
    }
}

TEST(Image, CorruptPngChecksumIsRefused) {
    DNX_REQUIRE_FIXTURES();
    auto bytes = dnx_test::read_bytes(dnx_test::fixture("images/rgb_37x23.png"));
    bytes[20] ^= 0xFF;  // inside IHDR: its CRC no longer matches
    EXPECT_EQ(code_of([&] { Image::decode(bytes.data(), bytes.size()); }), Error::Code::BadImage);
}

TEST(Image, NonImageDataIsRefused) {
    const std::string text = "this is not an image, just text that happens to be in a .jpg file";
    const auto* p = reinterpret_cast<const std::uint8_t*>(text.data());
    EXPECT_EQ(code_of([&] { Image::decode(p, text.size()); }), Error::Code::BadImage);
    EXPECT_EQ(code_of([&] { Image::decode(p, 0); }), Error::Code::BadImage);
    EXPECT_EQ(code_of([&] { Image::decode(nullptr, 10); }), Error::Code::BadImage);
    const std::uint8_t jpeg_magic_only[] = {0xFF, 0xD8, 0xFF, 0x00, 0x01};
    EXPECT_EQ(code_of([&] { Image::decode(jpeg_magic_only, sizeof jpeg_magic_only); }), Error::Code::BadImage);
}

TEST(Image, HugeJpegIsRefusedFromItsHeader) {
    // A real JPEG whose frame header claims 65500 x 65500 pixels: refused before decoding.
    auto bytes = dnx_test::read_bytes(photo("astronaut.jpg"));
    bool patched = false;
    for (std::size_t i = 0; i + 9 < bytes.size() && !patched; ++i) {
        if (bytes[i] == 0xFF && (bytes[i + 1] == 0xC0 || bytes[i + 1] == 0xC2)) {
            bytes[i + 5] = bytes[i + 7] = 0xFF;
            bytes[i + 6] = bytes[i + 8] = 0xDC;
            patched = true;
        }
    }
    ASSERT_TRUE(patched);
    EXPECT_EQ(code_of([&] { Image::decode(bytes.data(), bytes.size()); }), Error::Code::BadImage);
}

TEST(Image, PixelLimitIsConfigurable) {
    const auto bytes = dnx_test::read_bytes(photo("chelsea.jpg"));
    EXPECT_EQ(code_of([&] { Image::decode(bytes.data(), bytes.size(), 1000); }), Error::Code::BadImage);
}

TEST(Image, FromPixelsChecksChannelsAndSize) {
    const std::vector<std::uint8_t> px(4 * 4 * 5, 7);
    EXPECT_EQ(code_of([&] { Image::from_pixels(4, 4, 2, px.data()); }), Error::Code::BadImage);
    EXPECT_EQ(code_of([&] { Image::from_pixels(4, 4, 5, px.data()); }), Error::Code::BadImage);
    EXPECT_EQ(code_of([&] { Image::from_pixels(0, 4, 3, px.data()); }), Error::Code::BadImage);
    EXPECT_EQ(code_of([&] { Image::from_pixels(4, 4, 3, nullptr); }), Error::Code::BadImage);
    const Image rgba = Image::from_pixels(4, 4, 4, px.data());
    EXPECT_EQ(rgba.channels, 3);  // alpha dropped, as Pillow's convert("RGB") does
}

}  // namespace
