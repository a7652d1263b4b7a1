// libdnx_runtime: run a dnx artifact (ONNX of any precision, or a TensorRT engine) from C++ and get
// the same answers as Python's dnx.load().
//
// Contract (as in ONNX Runtime's C++ API):
// - Every failure a caller can cause or fix (missing/corrupt/foreign file, manifest that does not
//   match the graph, undecodable image, wrong channel count, batch too large) throws dnx::Error with
//   a one-line message saying what was wrong and what to do. Nothing here aborts or prints.
// - Classifier is move-only and owns everything it loaded; the destructor releases it.
// - Classifier's const methods are thread-safe: concurrent callers share one loaded model through a
//   pool of inference requests (OpenVINO) or execution contexts (TensorRT); a caller blocks while
//   every slot of the pool is busy.
// - Backend types (OpenVINO, TensorRT, CUDA) never appear in this header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(_WIN32)
#define DNX_API
#else
#define DNX_API __attribute__((visibility("default")))
#endif

namespace dnx {

// The one exception type. code() names the kind of failure for callers that branch on it.
class DNX_API Error : public std::runtime_error {
public:
    enum class Code { InvalidArgument, NotFound, BadArtifact, ManifestMismatch, Unverified, BadImage, Unsupported, Backend };
    Error(Code code, const std::string& message) : std::runtime_error(message), code_(code) {}
    Code code() const noexcept { return code_; }

private:
    Code code_;
};

// How encoded images are decoded (Python: dnx.data.preprocess.decode_image).
struct DNX_API DecodeOptions {
    // Images above this many pixels are refused from the header, before any pixel memory exists.
    std::uint64_t max_pixels = 178956970;  // Pillow's decompression-bomb limit (2x its warning)
    // > 0: a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8, libjpeg-turbo's scale_denom)
    // that keeps its short side >= this many pixels (a preprocess spec's "fast" decode, see
    // fast_decode_side). 0: every pixel is decoded. PNGs are always decoded in full.
    int min_short_side = 0;
    // Turn the image upright by its EXIF orientation tag (IFD0 tag 0x0112 of a JPEG's first Exif
    // APP1 segment or of a PNG's eXIf chunk), as a photo viewer shows it; false: pixels as stored.
    bool exif_orientation = true;
};

// A decoded 8-bit image, rows top to bottom, channels interleaved (HWC): 1 = grey, 3 = RGB.
struct DNX_API Image {
    int width = 0;
    int height = 0;
    int channels = 0;
    std::vector<std::uint8_t> pixels;

    // Decode a JPEG or PNG file / buffer (libjpeg-turbo, libpng). Palette, 1/2/4-bit grey and
    // alpha are reduced as Pillow's convert("RGB"/"L") does (alpha dropped, never composited);
    // CMYK JPEGs become RGB as Pillow converts them (Adobe polarity); 16-bit grey PNGs are scaled
    // to 8 bits as round(v / 257). Throws Error(BadImage) on truncated or corrupt data (a PNG
    // chunk with a bad CRC included), non-image data, and on images above max_pixels (checked
    // from the header, before any pixel memory is allocated). The EXIF orientation is applied.
    static Image from_file(const std::string& path, std::uint64_t max_pixels = kMaxPixels);
    static Image decode(const std::uint8_t* data, std::size_t size, std::uint64_t max_pixels = kMaxPixels);
    static Image from_file(const std::string& path, const DecodeOptions& options);
    static Image decode(const std::uint8_t* data, std::size_t size, const DecodeOptions& options);
    // Copy caller-owned pixels; channels 1, 3 or 4 (RGBA: alpha dropped, as Pillow does).
    static Image from_pixels(int width, int height, int channels, const std::uint8_t* pixels);

    static constexpr std::uint64_t kMaxPixels = 178956970;  // Pillow's decompression-bomb limit (2x its warning)
};

enum class Interpolation { Nearest, Bilinear, Bicubic };

// "exact": decode every pixel; "fast": JPEGs decoded at the DCT scale the model needs (see DecodeOptions).
enum class Decode { Exact, Fast };

// The "fast" decode keeps a JPEG's short side >= kFastDecodeMargin x resize_size (Python:
// dnx.data.preprocess.FAST_DECODE_MARGIN, the same number).
constexpr int kFastDecodeMargin = 2;

// The manifest's "preprocess" block: resize the shorter side to resize_size (Pillow's antialiased
// resampling), center-crop image_size, scale to [0, 1], (x - mean) / std per channel, NCHW float32.
struct DNX_API Preprocess {
    int image_size = 0;
    int resize_size = 0;
    std::vector<float> mean;
    std::vector<float> std;
    int in_channels = 0;
    Interpolation interpolation = Interpolation::Bilinear;
    Decode decode = Decode::Exact;  // a manifest without "decode" predates the mode: exact
};

// DecodeOptions::min_short_side for a spec: kFastDecodeMargin x resize_size when its decode is
// Fast, else 0.
DNX_API int fast_decode_side(const Preprocess& spec);

// One image -> in_channels x image_size x image_size floats, equal to dnx/data/preprocess.py.
// The resized intermediate is bounded by max_pixels too: an image whose aspect ratio would make it
// larger (a 1x20000 strip resized to 256x5120000) throws Error(BadImage) before allocating it.
DNX_API std::vector<float> preprocess(const Image& image, const Preprocess& spec,
                                      std::uint64_t max_pixels = Image::kMaxPixels);

// What Classifier::load read from the artifact's manifest (sidecar PATH.json or ONNX metadata).
struct DNX_API Manifest {
    std::string path;            // where it was read from (the sidecar, or the artifact's metadata)
    std::string artifact;        // "onnx" or "tensorrt-engine"
    std::string precision;       // fp32, fp16, int8, best, ...
    std::string input_name;
    std::vector<std::int64_t> input_shape;  // -1 for a dynamic dimension ("N")
    std::string output_name;
    Preprocess preprocess;
    std::vector<std::string> labels;  // class names; "0".."K-1" when the manifest has none (as Python)
    std::string sha256;          // of the artifact, when the sidecar records it
    // The parity certificate dnx records (dnx/schemas/certificate.py): "passed", "failed", or "" when absent.
    std::string certificate_verdict;
    std::string certificate_summary;
};

struct DNX_API Options {
    // OpenVINO device for ONNX artifacts.
    std::string device = "CPU";
    // Concurrent inferences (the pool size); 0 = what the backend recommends for the device.
    int num_requests = 0;
    // Threads per inference for OpenVINO's CPU plugin; 0 = its default.
    int num_threads = 0;
    // Largest batch accepted by classify()/logits() for graphs with a dynamic batch (an engine's
    // profile and a static batch override it).
    int max_batch = 64;
    // OpenVINO's CPU plugin runs FP32 graphs in BF16 on CPUs that have it (AVX-512 BF16, AMX) unless
    // told otherwise; "f32" (the default, as Python's dnx.load) runs the artifact as written and keeps
    // Python parity (1e-4); "bf16" is Python's precision="bf16" (only where the CPU has it); "" leaves
    // the plugin's default (bf16 or f32 depending on the CPU).
    std::string inference_precision = "f32";
    // CUDA device for TensorRT engines.
    int cuda_device = 0;
    // JPEG decode of Classifier::read_image/decode_image: "" = the manifest's, "exact" or "fast".
    std::string decode;
    // Turn photos upright by their EXIF orientation (Classifier::read_image/decode_image).
    bool exif_orientation = true;
    // Largest image (pixels) read_image/decode_image decode, and largest resized intermediate.
    std::uint64_t max_pixels = 178956970;
    // Load an artifact whose parity certificate is missing or failed (Python: allow_unverified).
    // The certificate's verdict is checked; its content sha256 is not (that needs the ONNX
    // protobuf serializer), so a graph edited after verification is not detected here.
    bool allow_unverified = false;
};

struct DNX_API Timings {
    double preprocess_ms = 0;
    double infer_ms = 0;
    double postprocess_ms = 0;
};

struct DNX_API Prediction {
    std::vector<int> indices;          // best first
    std::vector<std::string> labels;   // labels[i] names indices[i]
    std::vector<float> probabilities;  // softmax of the logits
};

class DNX_API Classifier {
public:
    // Read an artifact and its manifest, check that they agree (input name/shape/layout, number of
    // labels; for engines the TensorRT version and GPU, before deserializing), refuse it when its
    // parity certificate is missing or failed (Error::Code::Unverified, unless
    // options.allow_unverified), and prepare the backend.
    static Classifier load(const std::string& path, const Options& options = {});

    Classifier(Classifier&&) noexcept;
    Classifier& operator=(Classifier&&) noexcept;
    Classifier(const Classifier&) = delete;
    Classifier& operator=(const Classifier&) = delete;
    ~Classifier();

    // Top-k classes of one image / of `count` images run as one batch. timings, when given, gets
    // the stages of this call (summed over the batch).
    Prediction classify(const Image& image, int top_k = 5, Timings* timings = nullptr) const;
    std::vector<Prediction> classify(const Image* images, std::size_t count, int top_k = 5,
                                     Timings* timings = nullptr) const;
    std::vector<Prediction> classify(const std::vector<Image>& images, int top_k = 5,
                                     Timings* timings = nullptr) const;

    // Decode an image file / buffer as this model's manifest (and Options::decode,
    // exif_orientation, max_pixels) say: the fast decode scales JPEGs down while decoding.
    Image read_image(const std::string& path) const;
    Image decode_image(const std::uint8_t* data, std::size_t size) const;

    // Raw logits, batch x num_classes(), of already preprocessed NCHW float32 input.
    std::vector<float> logits(const float* nchw, std::size_t batch) const;

    const Manifest& manifest() const;
    int num_classes() const;
    std::size_t max_batch() const;
    std::string backend_name() const;

private:
    struct Impl;
    explicit Classifier(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace dnx
