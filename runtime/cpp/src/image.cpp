// Image decoding with libjpeg-turbo and libpng, set up to produce the pixels Pillow produces:
// libjpeg's defaults (integer slow DCT, fancy upsampling) as Pillow uses them, DCT scaling as
// Pillow's Image.draft sets it, CMYK converted as Pillow converts it, PNG transforms that expand
// palettes and low bit depths but drop alpha instead of compositing it, and the EXIF orientation
// applied as PIL.ImageOps.exif_transpose does (dnx/data/preprocess.py is the reference).
#include "internal.hpp"

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <new>
#include <cstring>
#include <fstream>
#include <iterator>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

namespace dnx {
namespace {

[[noreturn]] void bad_image(const std::string& what) { throw Error(Error::Code::BadImage, what); }

[[noreturn]] void too_big(std::uint64_t width, std::uint64_t height, std::uint64_t max_pixels) {
    bad_image("image of " + std::to_string(width) + "x" + std::to_string(height) + " pixels exceeds the limit of " +
                  std::to_string(max_pixels) + " pixels; downscale it first or raise max_pixels");
}

// libjpeg reports errors through error_exit, which must not return: jump back to decode_jpeg's
// setjmp with the message. Only C objects live between the setjmp and the jump.
struct JpegErrors {
    jpeg_error_mgr mgr;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr cinfo) {
    auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, errors->message);
    std::longjmp(errors->jump, 1);
}

// A truncated JPEG is only a warning to libjpeg (it pads with grey); Pillow refuses it, and so do we.
// Other warnings (e.g. extraneous bytes) are ignored by Pillow and here.
void jpeg_warn(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_fail(cinfo);
}

// Pillow's Image.draft: the largest of 1/8, 1/4, 1/2, 1/1 whose output keeps both sides >= `side`
// (libjpeg rounds the scaled size up, as Pillow computes it).
unsigned draft_denominator(JDIMENSION width, JDIMENSION height, int side) {
    if (side <= 0) return 1;
    const JDIMENSION fit = std::min(width / static_cast<JDIMENSION>(side), height / static_cast<JDIMENSION>(side));
    for (unsigned s : {8u, 4u, 2u})
        if (fit >= s) return s;
    return 1;
}

// Pillow's CMYK -> RGB (Convert.c cmyk2rgb) on samples it reads with Adobe's inverted polarity
// ("CMYK;I", which JpegImagePlugin always assumes).
void cmyk_to_rgb(const std::uint8_t* cmyk, std::size_t pixels, std::uint8_t* rgb) {
    for (std::size_t i = 0; i < pixels; ++i) {
        const int nk = cmyk[i * 4 + 3];  // 255 - (255 - k)
        for (int c = 0; c < 3; ++c) {
            const int tmp = (255 - cmyk[i * 4 + c]) * nk + 128;
            const int v = nk - (((tmp >> 8) + tmp) >> 8);
            rgb[i * 3 + c] = static_cast<std::uint8_t>(std::clamp(v, 0, 255));
        }
    }
}

// Only C objects and the caller's `image`/`exif` (reached through references that are never
// reassigned) live between setjmp and a jump, so nothing is left half-destroyed or indeterminate.
void decode_jpeg(const std::uint8_t* data, std::size_t size, const DecodeOptions& options, Image& image,
                 std::vector<std::uint8_t>& exif) {
    jpeg_decompress_struct cinfo;
    JpegErrors errors;
    cinfo.err = jpeg_std_error(&errors.mgr);
    errors.mgr.error_exit = jpeg_fail;
    errors.mgr.emit_message = jpeg_warn;
    if (setjmp(errors.jump)) {
        jpeg_destroy_decompress(&cinfo);
        bad_image(std::string("corrupt or truncated JPEG: ") + errors.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
    if (options.exif_orientation) jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);  // at most 64 KiB
    jpeg_read_header(&cinfo, TRUE);
    const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    if (static_cast<std::uint64_t>(cinfo.image_width) * cinfo.image_height > options.max_pixels) {
        const JDIMENSION width = cinfo.image_width, height = cinfo.image_height;
        jpeg_destroy_decompress(&cinfo);
        too_big(width, height, options.max_pixels);  // throws before any pixel memory exists
    }
    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != nullptr; m = m->next) {
        if (m->data_length >= 6 && std::memcmp(m->data, "Exif\0\0", 6) == 0) {  // the first one, as Pillow
            exif.assign(m->data + 6, m->data + m->data_length);
            break;
        }
    }
    cinfo.scale_num = 1;
    cinfo.scale_denom = draft_denominator(cinfo.image_width, cinfo.image_height, options.min_short_side);
    jpeg_start_decompress(&cinfo);
    image.width = static_cast<int>(cinfo.output_width);
    image.height = static_cast<int>(cinfo.output_height);
    image.channels = cmyk ? 4 : cinfo.output_components;
    image.pixels.resize(static_cast<std::size_t>(image.width) * image.height * image.channels);
    const std::size_t stride = static_cast<std::size_t>(image.width) * image.channels;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = image.pixels.data() + cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
}

struct PngSource {
    const std::uint8_t* data;
    std::size_t size;
    std::size_t offset;
    char message[256];
};

void png_read_memory(png_structp png, png_bytep out, png_size_t length) {
    auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
    if (length > src->size - src->offset) png_error(png, "unexpected end of file (truncated PNG)");
    std::memcpy(out, src->data + src->offset, length);
    src->offset += length;
}

void png_fail(png_structp png, png_const_charp message) {
    auto* src = static_cast<PngSource*>(png_get_error_ptr(png));
    std::snprintf(src->message, sizeof src->message, "%s", message);
    png_longjmp(png, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}

// Same setjmp discipline as decode_jpeg; the row pointers live in the caller's `rows`.
void decode_png(const std::uint8_t* data, std::size_t size, std::uint64_t max_pixels, Image& image,
                std::vector<png_bytep>& rows, std::vector<std::uint8_t>& exif) {
    PngSource src{data, size, 0, {0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_fail, png_ignore_warning);
    png_infop info = png ? png_create_info_struct(png) : nullptr;
    if (!info) {
        png_destroy_read_struct(&png, nullptr, nullptr);
        throw std::bad_alloc();
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, nullptr);
        bad_image(std::string("corrupt or truncated PNG: ") + src.message);
    }
    png_set_read_fn(png, &src, png_read_memory);
    // every chunk with a bad CRC is an error (libpng only warns about ancillary ones by default):
    // dnx/data/preprocess.py refuses the same files
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_read_info(png, info);
    const png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    if (static_cast<std::uint64_t>(width) * height > max_pixels) {
        png_destroy_read_struct(&png, &info, nullptr);
        too_big(width, height, max_pixels);  // throws before any pixel memory exists
    }
    const int color = png_get_color_type(png, info);
    // Pillow keeps the most significant byte of 16-bit RGB(A) and grey+alpha samples, as strip_16
    // does; 16-bit grey opens as "I;16", which dnx scales to round(v / 257): scale_16's result.
    if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) == 16)
        png_set_scale_16(png);
    else
        png_set_strip_16(png);
    png_set_packing(png);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    image.width = static_cast<int>(width);
    image.height = static_cast<int>(height);
    image.channels = png_get_channels(png, info);
    image.pixels.resize(static_cast<std::size_t>(width) * height * image.channels);
    rows.resize(height);
    for (png_uint_32 y = 0; y < height; ++y)
        rows[y] = image.pixels.data() + static_cast<std::size_t>(y) * width * image.channels;
    png_read_image(png, rows.data());
    png_read_end(png, info);  // an eXIf chunk may follow the pixels
    png_uint_32 exif_size = 0;
    png_bytep exif_data = nullptr;
    if (png_get_eXIf_1(png, info, &exif_size, &exif_data) != 0 && exif_data != nullptr)
        exif.assign(exif_data, exif_data + exif_size);
    png_destroy_read_struct(&png, &info, nullptr);
}

}  // namespace

Image Image::decode(const std::uint8_t* data, std::size_t size, const DecodeOptions& options) {
    static const std::uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (data == nullptr || size == 0) bad_image("image data is empty");
    Image image;
    std::vector<std::uint8_t> exif;
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) {
        decode_jpeg(data, size, options, image, exif);
    } else if (size >= 8 && std::memcmp(data, png_magic, 8) == 0) {
        std::vector<png_bytep> rows;
        decode_png(data, size, options.max_pixels, image, rows, exif);
    } else {
        bad_image("data is neither a JPEG nor a PNG image");
    }
    if (image.width == 0 || image.height == 0) bad_image("image has zero width or height");
    if (image.channels == 4) {  // CMYK
        std::vector<std::uint8_t> rgb(static_cast<std::size_t>(image.width) * image.height * 3);
        cmyk_to_rgb(image.pixels.data(), static_cast<std::size_t>(image.width) * image.height, rgb.data());
        image.pixels.swap(rgb);
        image.channels = 3;
    }
    if (options.exif_orientation && !exif.empty())
        return detail::apply_orientation(std::move(image), detail::exif_orientation(exif.data(), exif.size()));
    return image;
}

Image Image::decode(const std::uint8_t* data, std::size_t size, std::uint64_t max_pixels) {
    DecodeOptions options;
    options.max_pixels = max_pixels;
    return decode(data, size, options);
}

Image Image::from_file(const std::string& path, std::uint64_t max_pixels) {
    DecodeOptions options;
    options.max_pixels = max_pixels;
    return from_file(path, options);
}

Image Image::from_file(const std::string& path, const DecodeOptions& options) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(Error::Code::NotFound, "cannot open image " + path + ": no such readable file");
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
        return decode(bytes.data(), bytes.size(), options);
    } catch (const Error& e) {
        throw Error(e.code(), "cannot read image " + path + ": " + e.what());
    }
}

Image Image::from_pixels(int width, int height, int channels, const std::uint8_t* pixels) {
    if (width <= 0 || height <= 0) bad_image("image size must be positive, got " + std::to_string(width) + "x" +
                                             std::to_string(height));
    if (channels != 1 && channels != 3 && channels != 4)
        bad_image("images have 1 (grey), 3 (RGB) or 4 (RGBA) channels, got " + std::to_string(channels));
    if (pixels == nullptr) bad_image("pixel pointer is null");
    Image image;
    image.width = width;
    image.height = height;
    image.channels = channels == 4 ? 3 : channels;
    const std::size_t n = static_cast<std::size_t>(width) * height;
    if (channels == 4) {
        image.pixels.resize(n * 3);
        for (std::size_t i = 0; i < n; ++i) std::memcpy(&image.pixels[i * 3], &pixels[i * 4], 3);
    } else {
        image.pixels.assign(pixels, pixels + n * channels);
    }
    return image;
}

}  // namespace dnx
