// Classifier: artifact + manifest -> backend, with preprocessing, softmax/top-k and stage timings.
#include "internal.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace dnx {

struct Classifier::Impl {
    Manifest manifest;
    std::unique_ptr<detail::Backend> backend;
    DecodeOptions decode;  // from the manifest's preprocess block and Options
    std::uint64_t max_pixels = Image::kMaxPixels;
};

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

Prediction top_k_of(const float* logits, std::size_t classes, int k, const std::vector<std::string>& labels) {
    // softmax in double: the probabilities of near-equal logits stay ordered as the logits are
    const float peak = *std::max_element(logits, logits + classes);
    std::vector<double> e(classes);
    double sum = 0.0;
    for (std::size_t i = 0; i < classes; ++i) sum += e[i] = std::exp(static_cast<double>(logits[i]) - peak);
    std::vector<int> order(classes);
    std::iota(order.begin(), order.end(), 0);
    const std::size_t n = static_cast<std::size_t>(k);  // 1..classes, checked by classify()
    // ties keep the lower index first, as numpy's stable argsort of -logits does
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), order.end(),
                      [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    Prediction p;
    for (std::size_t i = 0; i < n; ++i) {
        p.indices.push_back(order[i]);
        p.labels.push_back(labels[static_cast<std::size_t>(order[i])]);
        p.probabilities.push_back(static_cast<float>(e[static_cast<std::size_t>(order[i])] / sum));
    }
    return p;
}

}  // namespace

Classifier::Classifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Classifier::Classifier(Classifier&&) noexcept = default;
Classifier& Classifier::operator=(Classifier&&) noexcept = default;
Classifier::~Classifier() = default;

Classifier Classifier::load(const std::string& path, const Options& options) {
    if (!detail::file_exists(path))
        throw Error(Error::Code::NotFound, "model " + path + " does not exist; export one with `dnx export MODEL -o " +
                                               path + "`");
    if (!options.decode.empty() && options.decode != "exact" && options.decode != "fast")
        throw Error(Error::Code::InvalidArgument, "Options::decode must be \"\", \"exact\" or \"fast\", got \"" +
                                                      options.decode + "\"");
    if (options.max_pixels == 0) throw Error(Error::Code::InvalidArgument, "Options::max_pixels must be positive");
    auto impl = std::make_unique<Impl>();
    if (detail::is_engine_path(path))
        impl->backend = detail::make_tensorrt_backend(path, options, impl->manifest);
    else
        impl->backend = detail::make_openvino_backend(path, options, impl->manifest);
    Preprocess& pre = impl->manifest.preprocess;
    if (!options.decode.empty()) pre.decode = options.decode == "fast" ? Decode::Fast : Decode::Exact;
    impl->max_pixels = options.max_pixels;
    impl->decode.max_pixels = options.max_pixels;
    impl->decode.min_short_side = fast_decode_side(pre);
    impl->decode.exif_orientation = options.exif_orientation;
    return Classifier(std::move(impl));
}

const Manifest& Classifier::manifest() const { return impl_->manifest; }
Image Classifier::read_image(const std::string& path) const { return Image::from_file(path, impl_->decode); }
Image Classifier::decode_image(const std::uint8_t* data, std::size_t size) const {
    return Image::decode(data, size, impl_->decode);
}
int Classifier::num_classes() const { return static_cast<int>(impl_->manifest.labels.size()); }
std::size_t Classifier::max_batch() const { return impl_->backend->max_batch(); }
std::string Classifier::backend_name() const { return impl_->backend->name(); }

std::vector<float> Classifier::logits(const float* nchw, std::size_t batch) const {
    if (nchw == nullptr) throw Error(Error::Code::InvalidArgument, "logits() got a null input pointer");
    if (batch == 0 || batch > max_batch())
        throw Error(Error::Code::InvalidArgument, "batch of " + std::to_string(batch) + " is outside 1.." +
                                                      std::to_string(max_batch()) +
                                                      " (the model's limit); split it into smaller batches");
    std::vector<float> out(batch * impl_->manifest.labels.size());
    impl_->backend->infer(nchw, batch, out.data());
    return out;
}

Prediction Classifier::classify(const Image& image, int top_k, Timings* timings) const {
    return classify(&image, 1, top_k, timings).front();
}

std::vector<Prediction> Classifier::classify(const std::vector<Image>& images, int top_k, Timings* timings) const {
    return classify(images.data(), images.size(), top_k, timings);
}

std::vector<Prediction> Classifier::classify(const Image* images, std::size_t count, int top_k,
                                             Timings* timings) const {
    if (top_k < 1 || top_k > num_classes())
        throw Error(Error::Code::InvalidArgument, "top_k must be an integer from 1 to " + std::to_string(num_classes()) +
                                                      " (the model's classes), got " + std::to_string(top_k));
    if (images == nullptr || count == 0) throw Error(Error::Code::InvalidArgument, "classify() got no images");
    if (count > max_batch())
        throw Error(Error::Code::InvalidArgument, std::to_string(count) + " images exceed the model's batch limit of " +
                                                      std::to_string(max_batch()) + "; classify them in smaller groups");
    const Manifest& m = impl_->manifest;
    Timings t;
    auto start = Clock::now();
    const std::size_t per_image = static_cast<std::size_t>(m.preprocess.in_channels) * m.preprocess.image_size *
                                  m.preprocess.image_size;
    std::vector<float> input(per_image * count);
    for (std::size_t i = 0; i < count; ++i)
        detail::preprocess_into(images[i], m.preprocess, impl_->max_pixels, input.data() + i * per_image);
    t.preprocess_ms = ms_since(start);
    start = Clock::now();
    const std::vector<float> out = logits(input.data(), count);
    t.infer_ms = ms_since(start);
    start = Clock::now();
    std::vector<Prediction> predictions;
    predictions.reserve(count);
    for (std::size_t i = 0; i < count; ++i)
        predictions.push_back(top_k_of(&out[i * m.labels.size()], m.labels.size(), top_k, m.labels));
    t.postprocess_ms = ms_since(start);
    if (timings) *timings = t;
    return predictions;
}

}  // namespace dnx
