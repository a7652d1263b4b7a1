// EXIF orientation: a bounded reader of one TIFF tag, and the eight transposes that turn an image
// upright, as dnx/data/preprocess.py does with Pillow (Image.Exif + Image.transpose). A small
// parser instead of libexif: one tag of IFD0 is all that is needed, and every read is checked
// against the block's size, so a malformed block means "no orientation", never a failure.
#include "internal.hpp"

namespace dnx {
namespace detail {

int exif_orientation(const std::uint8_t* tiff, std::size_t size) {
    if (tiff == nullptr || size < 8) return 1;
    const bool little = tiff[0] == 'I' && tiff[1] == 'I';
    if (!little && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
    auto u16 = [&](std::size_t at) -> std::uint32_t {
        return little ? tiff[at] | tiff[at + 1] << 8 : tiff[at] << 8 | tiff[at + 1];
    };
    auto u32 = [&](std::size_t at) -> std::uint32_t { return little ? u16(at) | u16(at + 2) << 16 : u16(at) << 16 | u16(at + 2); };
    if (u16(2) != 42) return 1;
    const std::size_t ifd = u32(4);
    if (ifd > size || size - ifd < 2) return 1;
    const std::size_t entries = u16(ifd);
    for (std::size_t i = 0; i < entries; ++i) {
        const std::size_t at = ifd + 2 + i * 12;
        if (at > size || size - at < 12) return 1;
        if (u16(at) != 0x0112) continue;
        const std::uint32_t type = u16(at + 2), count = u32(at + 4);
        if (count != 1) return 1;  // Pillow reads a tuple then, which is no orientation
        if (type == 3) return static_cast<int>(u16(at + 8));  // SHORT
        if (type == 4) return static_cast<int>(u32(at + 8) > 8 ? 1 : u32(at + 8));  // LONG
        return 1;
    }
    return 1;
}

Image apply_orientation(Image in, int orientation) {
    if (orientation < 2 || orientation > 8) return in;
    const int w = in.width, h = in.height, c = in.channels;
    const bool swap = orientation >= 5;  // 5..8 exchange width and height
    Image out;
    out.width = swap ? h : w;
    out.height = swap ? w : h;
    out.channels = c;
    out.pixels.resize(in.pixels.size());
    for (int y = 0; y < out.height; ++y) {
        for (int x = 0; x < out.width; ++x) {
            int sx = x, sy = y;  // the source pixel of output (x, y)
            switch (orientation) {
                case 2: sx = w - 1 - x; break;                       // FLIP_LEFT_RIGHT
                case 3: sx = w - 1 - x; sy = h - 1 - y; break;       // ROTATE_180
                case 4: sy = h - 1 - y; break;                       // FLIP_TOP_BOTTOM
                case 5: sx = y; sy = x; break;                       // TRANSPOSE
                case 6: sx = y; sy = h - 1 - x; break;               // ROTATE_270 (90 clockwise)
                case 7: sx = w - 1 - y; sy = h - 1 - x; break;       // TRANSVERSE
                default: sx = w - 1 - y; sy = x; break;              // 8: ROTATE_90 (counter-clockwise)
            }
            const std::uint8_t* src = &in.pixels[(static_cast<std::size_t>(sy) * w + sx) * c];
            std::uint8_t* dst = &out.pixels[(static_cast<std::size_t>(y) * out.width + x) * c];
            for (int ch = 0; ch < c; ++ch) dst[ch] = src[ch];
        }
    }
    return out;
}

}  // namespace detail
}  // namespace dnx
