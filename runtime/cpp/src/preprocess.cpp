// Preprocessing equal to dnx/data/preprocess.py, which uses Pillow. Every step reproduces what
// Pillow documents and does, so the C++ tensor matches Python's to the bit on the same pixels:
// - convert("L"): ITU-R 601-2 luma in 16-bit fixed point, rounded (Pillow's L24 weights);
// - resize: Pillow's convolution resampling. Each output pixel is a filter-weighted sum over the
//   input pixels under the filter's support, which is widened by the scale when downscaling (the
//   antialiasing). Weights are normalised per pixel, turned into 22-bit fixed point, and the two
//   passes (horizontal, then vertical) each round to 8 bits, as Pillow's 8-bit path does;
// - nearest: Pillow's affine nearest-neighbour sampling at pixel centres, no filtering;
// - crop, then float32 x / 255, (x - mean) / std in float32 as numpy computes it.
#include "dnx/runtime.hpp"

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

Kernel make_kernel(int in_size, int out_size, Interpolation interpolation) {
    const bool cubic = interpolation == Interpolation::Bicubic;
    const double scale = static_cast<double>(in_size) / out_size;
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
        const double center = (o + 0.5) * scale;
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

// One pass along x (horizontal) or y (vertical) of an interleaved 8-bit image.
Image resample_pass(const Image& in, int out_size, bool horizontal, Interpolation interpolation) {
    const int in_size = horizontal ? in.width : in.height;
    const Kernel k = make_kernel(in_size, out_size, interpolation);
    Image out;
    out.width = horizontal ? out_size : in.width;
    out.height = horizontal ? in.height : out_size;
    out.channels = in.channels;
    out.pixels.resize(static_cast<std::size_t>(out.width) * out.height * out.channels);
    const int c = in.channels;
    const std::size_t in_stride = static_cast<std::size_t>(in.width) * c;
    const std::size_t out_stride = static_cast<std::size_t>(out.width) * c;
    // step between consecutive taps in the input buffer
    const std::size_t step = horizontal ? c : in_stride;
    for (int y = 0; y < out.height; ++y) {
        for (int x = 0; x < out.width; ++x) {
            const int o = horizontal ? x : y;
            const std::int32_t* w = &k.weights[static_cast<std::size_t>(o) * k.taps];
            const std::uint8_t* src = horizontal ? &in.pixels[y * in_stride + static_cast<std::size_t>(k.first[o]) * c]
                                                 : &in.pixels[k.first[o] * in_stride + static_cast<std::size_t>(x) * c];
            for (int ch = 0; ch < c; ++ch) {
                std::int32_t acc = 1 << (kPrecisionBits - 1);
                for (int t = 0; t < k.count[o]; ++t) acc += src[t * step + ch] * w[t];
                out.pixels[y * out_stride + static_cast<std::size_t>(x) * c + ch] = clip8(acc);
            }
        }
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

Image resize(const Image& in, int width, int height, Interpolation interpolation) {
    if (interpolation == Interpolation::Nearest) return resize_nearest(in, width, height);
    if (width == in.width && height == in.height) return in;
    if (width == in.width) return resample_pass(in, height, false, interpolation);
    Image tmp = resample_pass(in, width, true, interpolation);
    return height == in.height ? tmp : resample_pass(tmp, height, false, interpolation);
}

Image to_channels(const Image& in, int channels) {
    if (in.channels == channels) return in;
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

std::vector<float> preprocess(const Image& image, const Preprocess& spec, std::uint64_t max_pixels) {
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
    Image img = to_channels(image, c);
    const int short_side = std::min(img.width, img.height);
    if (short_side != r) {
        // Python: max(r, round(w * r / min(w, h))); round() halves to even, as nearbyint does
        const double scale = static_cast<double>(r) / short_side;
        const double wd = std::max<double>(r, std::nearbyint(img.width * scale));
        const double hd = std::max<double>(r, std::nearbyint(img.height * scale));
        if (wd * hd > static_cast<double>(max_pixels))  // a double holds these sizes exactly enough
            throw Error(Error::Code::BadImage, "image of " + std::to_string(img.width) + "x" +
                                                   std::to_string(img.height) + " would be resized to " +
                                                   std::to_string(static_cast<long long>(wd)) + "x" +
                                                   std::to_string(static_cast<long long>(hd)) + " pixels, over the limit of " +
                                                   std::to_string(max_pixels) +
                                                   ": its aspect ratio is too extreme; crop it first");
        const int w = static_cast<int>(wd), h = static_cast<int>(hd);
        img = resize(img, w, h, spec.interpolation);
    }
    // Pillow's crop fills what lies outside the image with zeros (only when resize_size < image_size)
    const int left = floor_div2(img.width - s), top = floor_div2(img.height - s);
    std::vector<float> out(static_cast<std::size_t>(c) * s * s);
    for (int ch = 0; ch < c; ++ch) {
        const float mean = spec.mean[ch], stdev = spec.std[ch];
        for (int y = 0; y < s; ++y) {
            const int iy = top + y;
            for (int x = 0; x < s; ++x) {
                const int ix = left + x;
                const bool inside = iy >= 0 && iy < img.height && ix >= 0 && ix < img.width;
                const float v = inside ? img.pixels[(static_cast<std::size_t>(iy) * img.width + ix) * c + ch] : 0.0f;
                out[(static_cast<std::size_t>(ch) * s + y) * s + x] = (v / 255.0f - mean) / stdev;
            }
        }
    }
    return out;
}

}  // namespace dnx
