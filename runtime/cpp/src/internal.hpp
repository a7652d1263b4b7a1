// Library-internal pieces shared by the sources: manifest parsing and the backend interface.
// Nothing here is installed; backend types stay out of the public header.
#pragma once

#include "dnx/runtime.hpp"

#include <memory>
#include <string>

namespace dnx {
namespace detail {

// Parse and check a dnx ONNX manifest (schema dnx.manifest/1, dnx/schemas/json/manifest.schema.json).
// `where` names its source in errors; `field_prefix` where the manifest sits inside that file
// (source_onnx.manifest), so a bad field is named by its full path, as Python names it.
Manifest parse_manifest(const std::string& json_text, const std::string& where, const std::string& field_prefix = "");

// A TensorRT engine by its file name: .engine, .plan or .trt in any case (ENGINE_SUFFIXES in Python).
bool is_engine_path(const std::string& path);

// Error(Unverified) when the manifest's parity certificate is missing or did not pass, unless
// options.allow_unverified: the rule of Python's dnx.load (dnx/schemas/certificate.py), verdict only.
void check_certified(const Manifest& manifest, const Options& options, const std::string& path);

// The Orientation tag (1..8) of IFD0 in an EXIF TIFF block (without the "Exif\0\0" prefix); 1 when
// absent or unreadable. Bounded by `size`: never reads outside the block.
int exif_orientation(const std::uint8_t* tiff, std::size_t size);
// The image turned upright for an EXIF orientation (2..8: Pillow's transposes; others: unchanged).
Image apply_orientation(Image image, int orientation);

// dnx::preprocess into `out` (spec.in_channels x image_size x image_size floats), without a vector
// of its own: Classifier::classify writes each image straight into the batch.
void preprocess_into(const Image& image, const Preprocess& spec, std::uint64_t max_pixels, float* out);

// The whole file as bytes/text; Error(NotFound) when it cannot be opened.
std::string read_file(const std::string& path);
bool file_exists(const std::string& path);
// The same for a file of at most max_bytes; read_file allows any manifest or engine dnx writes (4 GiB).
// Both refuse a non-regular file (folder, device, FIFO) in one line instead of reading it without end.
std::string read_file(const std::string& path, std::uint64_t max_bytes);
std::string sidecar_path(const std::string& path);  // PATH.json

// One loaded model. infer() is thread-safe and blocks while every pool slot is busy.
class Backend {
public:
    virtual ~Backend() = default;
    // batch x C x H x W floats in, batch x num_classes floats out (`out` holds that many).
    virtual void infer(const float* input, std::size_t batch, float* out) const = 0;
    virtual std::size_t max_batch() const = 0;
    virtual std::string name() const = 0;
};

// OpenVINO: an ONNX file (or OpenVINO IR). `manifest` is filled from the sidecar or, when there
// is none, from the ONNX metadata OpenVINO exposes; then checked against the graph.
std::unique_ptr<Backend> make_openvino_backend(const std::string& path, const Options& options, Manifest& manifest);

// TensorRT: an engine with its sidecar; checks TensorRT version and GPU before deserializing.
// Where TensorRT was not found at build time this throws Error(Unsupported).
std::unique_ptr<Backend> make_tensorrt_backend(const std::string& path, const Options& options, Manifest& manifest);

}  // namespace detail
}  // namespace dnx
