// Preprocessing equal to dnx/data/preprocess.py, which uses Pillow. Every step reproduces what
// Pillow documents and does, so the C++ tensor matches Python's to the bit on the same pixels:
// - convert("L"): ITU-R 601-2 luma in 16-bit fixed point, rounded (Pillow's L24 weights);
// - resize: Pillow's convolution resampling. Each output pixel is a filter-weighted sum over the
//   input pixels under the filter's support, which is widened by the scale when downscaling (the
//   antialiasing). Weights are normalised per pixel, turned into 22-bit fixed point, and the two
//   passes each round to 8 bits, as Pillow's 8-bit path does, in Pillow 13's order (see resample);
// - decode "fast": only the source region the centre crop keeps is resized, straight to the crop
//   (Pillow's resize box, dnx.data.preprocess.crop_box), not for nearest;
// - nearest: Pillow's affine nearest-neighbour sampling at pixel centres, no filtering;
// - crop, then float32 x / 255, (x - mean) / std in float32 as numpy computes it.
#include "internal.hpp"

#include <algorithm>
#include <cmath>

namespace dnx {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // two spare bits: filter lobes can overshoot

double bilinear(double x) {
    x = std::fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubic(double x) {  // Keys' cubic convolution, a = -0.5
    constexpr double a = -0.5;
    x = std::fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

// For each output pixel: the first input pixel, how many follow, and their fixed-point weights.
struct Kernel {
    int taps = 0;  // weights per output pixel (row stride of `weights`)
    std::vector<int> first, count;
    std::vector<std::int32_t> weights;
};

// Pillow's precompute_coeffs for the source span [in0, in1) of an axis of in_size pixels (the
// resize box, which Pillow holds as floats): the span is subtracted in float, the centres are
// in0 + (o + 0.5) * scale in double, and the window is clipped to the whole axis, not the span.
Kernel make_kernel(int in_size, float in0, float in1, int out_size, Interpolation interpolation) {
    const bool cubic = interpolation == Interpolation::Bicubic;
    const float span = in1 - in0;
    const double scale = static_cast<double>(span) / out_size;
    const double filter_scale = std::max(scale, 1.0);
    const double support = (cubic ? 2.0 : 1.0) * filter_scale;
    Kernel k;
    k.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
    k.first.resize(out_size);
    k.count.resize(out_size);
    k.weights.assign(static_cast<std::size_t>(out_size) * k.taps, 0);
    std::vector<double> w(k.taps);
    const double inv_scale = 1.0 / filter_scale;  // multiplied, not divided: the same rounding as Pillow
    for (int o = 0; o < out_size; ++o) {
        const double center = in0 + (o + 0.5) * scale;
        // truncation toward zero after +0.5 is how the window edges are rounded
        const int lo = std::max(0, static_cast<int>(center - support + 0.5));
        const int hi = std::min(in_size, static_cast<int>(center + support + 0.5));
        double sum = 0.0;
        for (int i = lo; i < hi; ++i) {
            const double x = (i - center + 0.5) * inv_scale;
            w[i - lo] = cubic ? bicubic(x) : bilinear(x);
            sum += w[i - lo];
        }
        k.first[o] = lo;
        k.count[o] = hi - lo;
        for (int i = 0; i < hi - lo; ++i) {
            const double v = (sum != 0.0 ? w[i] / sum : w[i]) * (1 << kPrecisionBits);
            k.weights[static_cast<std::size_t>(o) * k.taps + i] = static_cast<std::int32_t>(v < 0 ? v - 0.5 : v + 0.5);
        }
    }
    return k;
}

std::uint8_t clip8(std::int32_t acc) {
    if (acc <= 0) return 0;
    return static_cast<std::uint8_t>(std::min(acc >> kPrecisionBits, 255));
}

// Integer sums are exact, so the loops below may run in any order and still give Pillow's bytes:
// each pass rounds to 8 bits exactly where Pillow's does.

// Horizontal pass over `rows` rows of `in` (C channels, in_width wide) into `out` (k.first.size() wide).
template <int C>
void horizontal_pass(const std::uint8_t* in, int in_width, int rows, const Kernel& k, std::uint8_t* out) {
    const int out_width = static_cast<int>(k.first.size());
    for (int y = 0; y < rows; ++y) {
        const std::uint8_t* line = in + static_cast<std::size_t>(y) * in_width * C;
        std::uint8_t* dst = out + static_cast<std::size_t>(y) * out_width * C;
        for (int x = 0; x < out_width; ++x) {
            const std::int32_t* w = &k.weights[static_cast<std::size_t>(x) * k.taps];
            const std::uint8_t* src = line + static_cast<std::size_t>(k.first[x]) * C;
            std::int32_t acc[C];
            for (int ch = 0; ch < C; ++ch) acc[ch] = 1 << (kPrecisionBits - 1);
            for (int t = 0; t < k.count[x]; ++t)
                for (int ch = 0; ch < C; ++ch) acc[ch] += src[t * C + ch] * w[t];
            for (int ch = 0; ch < C; ++ch) dst[x * C + ch] = clip8(acc[ch]);
        }
    }
}

// Vertical pass: output row y sums input rows k.first[y] - row_offset onwards, a whole row at a time.
void vertical_pass(const std::uint8_t* in, std::size_t row_bytes, int row_offset, const Kernel& k, std::uint8_t* out) {
    std::vector<std::int32_t> acc(row_bytes);
    for (std::size_t y = 0; y < k.first.size(); ++y) {
        std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
        const std::int32_t* w = &k.weights[y * static_cast<std::size_t>(k.taps)];
        for (int t = 0; t < k.count[y]; ++t) {
            const std::uint8_t* src = in + static_cast<std::size_t>(k.first[y] - row_offset + t) * row_bytes;
            const std::int32_t wt = w[t];
            for (std::size_t i = 0; i < row_bytes; ++i) acc[i] += src[i] * wt;
        }
        std::uint8_t* dst = out + y * row_bytes;
        for (std::size_t i = 0; i < row_bytes; ++i) dst[i] = clip8(acc[i]);
    }
}

void horizontal(const std::uint8_t* in, int in_width, int rows, int channels, const Kernel& k, std::uint8_t* out) {
    if (channels == 1)
        horizontal_pass<1>(in, in_width, rows, k, out);
    else
        horizontal_pass<3>(in, in_width, rows, k, out);
}

// Pillow's ImagingResample (Pillow 13) of the source region `box` (x0, y0, x1, y1 as floats) to
// width x height: a pass is skipped where its axis keeps its size and box; with both, the
// horizontal pass runs first on only the rows the vertical one reads, unless the height shrinks
// and the width shrinks by less than half as many pixels (then the vertical pass runs first).
Image resample(const Image& in, int width, int height, const float box[4], Interpolation interpolation) {
    const bool need_h = width != in.width || box[0] != 0.0f || box[2] != static_cast<float>(width);
    const bool need_v = height != in.height || box[1] != 0.0f || box[3] != static_cast<float>(height);
    const bool horizontal_first = !(height < in.height && 2 * (in.width - width) < in.height - height);
    const int c = in.channels;
    Image out;
    out.width = width;
    out.height = height;
    out.channels = c;
    out.pixels.resize(static_cast<std::size_t>(width) * height * c);
    if (!need_h && !need_v) {
        out.pixels = in.pixels;
        return out;
    }
    const Kernel kv = make_kernel(in.height, box[1], box[3], height, interpolation);
    const Kernel kh = make_kernel(in.width, box[0], box[2], width, interpolation);
    const std::size_t in_row = static_cast<std::size_t>(in.width) * c, out_row = static_cast<std::size_t>(width) * c;
    if (!need_v) {
        horizontal(in.pixels.data(), in.width, height, c, kh, out.pixels.data());
    } else if (!need_h) {
        vertical_pass(in.pixels.data(), in_row, 0, kv, out.pixels.data());
    } else if (horizontal_first) {
        const int first = kv.first.front(), last = kv.first.back() + kv.count.back();
        std::vector<std::uint8_t> tmp(static_cast<std::size_t>(last - first) * out_row);
        horizontal(in.pixels.data() + first * in_row, in.width, last - first, c, kh, tmp.data());
        vertical_pass(tmp.data(), out_row, first, kv, out.pixels.data());
    } else {
        std::vector<std::uint8_t> tmp(static_cast<std::size_t>(height) * in_row);
        vertical_pass(in.pixels.data(), in_row, 0, kv, tmp.data());
        horizontal(tmp.data(), in.width, height, c, kh, out.pixels.data());
    }
    return out;
}

// Pillow samples at pixel centres, stepping the source coordinate by repeated addition (not
// x * scale): the rounding of that sum decides which pixel a boundary sample takes, so it is kept.
std::vector<int> nearest_index(int in_size, int out_size) {
    const double step = static_cast<double>(in_size) / out_size;
    std::vector<int> index(out_size);
    double pos = step * 0.5;
    for (int o = 0; o < out_size; ++o, pos += step) index[o] = std::min(in_size - 1, static_cast<int>(pos));
    return index;
}

Image resize_nearest(const Image& in, int width, int height) {
    Image out;
    out.width = width;
    out.height = height;
    out.channels = in.channels;
    out.pixels.resize(static_cast<std::size_t>(width) * height * in.channels);
    const std::vector<int> xs = nearest_index(in.width, width), ys = nearest_index(in.height, height);
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x)
            for (int ch = 0; ch < in.channels; ++ch)
                out.pixels[(static_cast<std::size_t>(y) * width + x) * in.channels + ch] =
                    in.pixels[(static_cast<std::size_t>(ys[y]) * in.width + xs[x]) * in.channels + ch];
    return out;
}


Image to_channels(const Image& in, int channels) {
    Image out;
    out.width = in.width;
    out.height = in.height;
    out.channels = channels;
    const std::size_t n = static_cast<std::size_t>(in.width) * in.height;
    out.pixels.resize(n * channels);
    if (channels == 1) {
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint8_t* p = &in.pixels[i * 3];
            out.pixels[i] = static_cast<std::uint8_t>((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
        }
    } else {
        for (std::size_t i = 0; i < n; ++i) std::fill_n(&out.pixels[i * 3], 3, in.pixels[i]);
    }
    return out;
}

int floor_div2(int v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

}  // namespace

int fast_decode_side(const Preprocess& spec) {
    return spec.decode == Decode::Fast ? kFastDecodeMargin * spec.resize_size : 0;
}

namespace detail {

void preprocess_into(const Image& image, const Preprocess& spec, std::uint64_t max_pixels, float* out) {
    if (image.width <= 0 || image.height <= 0 ||
        image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * image.channels)
        throw Error(Error::Code::BadImage, "image is empty or its pixel buffer does not match its size");
    if (image.channels != 1 && image.channels != 3)
        throw Error(Error::Code::BadImage, "images have 1 (grey) or 3 (RGB) channels, got " +
                                               std::to_string(image.channels) + "; build it with Image::from_pixels");
    const int s = spec.image_size, r = spec.resize_size, c = spec.in_channels;
    if (s <= 0 || r <= 0 || (c != 1 && c != 3) || spec.mean.size() != static_cast<std::size_t>(c) ||
        spec.std.size() != static_cast<std::size_t>(c))
        throw Error(Error::Code::InvalidArgument, "preprocess spec needs positive sizes, 1 or 3 channels and one "
                                                  "mean/std per channel");
    // each step makes a new image only when it changes the pixels; `img` is the latest
    Image converted, resized;
    const Image* img = &image;
    if (image.channels != c) img = &(converted = to_channels(image, c));
    const int short_side = std::min(img->width, img->height);
    if (short_side != r) {
        // Python: max(r, round(w * r / min(w, h))); round() halves to even, as nearbyint does
        const double scale = static_cast<double>(r) / short_side;
        const double wd = std::max<double>(r, std::nearbyint(img->width * scale));
        const double hd = std::max<double>(r, std::nearbyint(img->height * scale));
        if (wd * hd > static_cast<double>(max_pixels))  // a double holds these sizes exactly enough
            throw Error(Error::Code::BadImage, "image of " + std::to_string(img->width) + "x" +
                                                   std::to_string(img->height) + " would be resized to " +
                                                   std::to_string(static_cast<long long>(wd)) + "x" +
                                                   std::to_string(static_cast<long long>(hd)) + " pixels, over the limit of " +
                                                   std::to_string(max_pixels) +
                                                   ": its aspect ratio is too extreme; crop it first");
        const int w = static_cast<int>(wd), h = static_cast<int>(hd);
        const int left = floor_div2(w - s), top = floor_div2(h - s);
        if (spec.interpolation == Interpolation::Nearest) {
            resized = resize_nearest(*img, w, h);
        } else if (spec.decode == Decode::Fast && left >= 0 && top >= 0) {
            // dnx.data.preprocess.crop_box: only the region the crop keeps, straight to s x s. Python
            // computes it in double (exact integer products, one correctly rounded division) and
            // Pillow reads it as floats, so the same casts here give the same box to the bit.
            const auto at = [](long long offset, int in_size, int out_size) {
                return static_cast<float>(static_cast<double>(offset * in_size) / out_size);
            };
            const float box[4] = {at(left, img->width, w), at(top, img->height, h), at(left + s, img->width, w),
                                  at(top + s, img->height, h)};
            resized = resample(*img, s, s, box, spec.interpolation);
        } else {
            const float box[4] = {0.0f, 0.0f, static_cast<float>(img->width), static_cast<float>(img->height)};
            resized = resample(*img, w, h, box, spec.interpolation);
        }
        img = &resized;
    }
    // Pillow's crop fills what lies outside the image with zeros (only when resize_size < image_size)
    const int left = floor_div2(img->width - s), top = floor_div2(img->height - s);
    for (int ch = 0; ch < c; ++ch) {
        const float mean = spec.mean[ch], stdev = spec.std[ch];
        for (int y = 0; y < s; ++y) {
            const int iy = top + y;
            for (int x = 0; x < s; ++x) {
                const int ix = left + x;
                const bool inside = iy >= 0 && iy < img->height && ix >= 0 && ix < img->width;
                const float v = inside ? img->pixels[(static_cast<std::size_t>(iy) * img->width + ix) * c + ch] : 0.0f;
                out[(static_cast<std::size_t>(ch) * s + y) * s + x] = (v / 255.0f - mean) / stdev;
            }
        }
    }
}

}  // namespace detail

std::vector<float> preprocess(const Image& image, const Preprocess& spec, std::uint64_t max_pixels) {
    std::vector<float> out(static_cast<std::size_t>(std::max(spec.in_channels, 0)) * std::max(spec.image_size, 0) *
                           std::max(spec.image_size, 0));
    detail::preprocess_into(image, spec, max_pixels, out.data());
    return out;
}

}  // namespace dnx
