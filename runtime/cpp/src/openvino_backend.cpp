// OpenVINO backend. Each batch size is compiled as its own static-shape model on first use (a few
// kept): OpenVINO 2026.4 mis-computes dnx's TensorRT-placed Q/DQ graphs when the batch is dynamic
// and computes them correctly with static shapes (benchmarks/experiments/openvino_repro/conv_concat_qdq.py),
// the same rule as Python's OpenVINORunner. Each compiled shape has a pool of InferRequests for
// concurrent callers (an InferRequest is not thread-safe; a compiled model is). Inputs are
// wrapped, not copied.
#include "internal.hpp"

#include <condition_variable>
#include <cstring>
#include <list>
#include <mutex>

#include <openvino/runtime/core.hpp>

namespace dnx {
namespace detail {
namespace {

std::string first_line(const std::string& s) {
    std::string line = s.substr(0, s.find('\n'));
    return line.size() > 300 ? line.substr(0, 300) + "..." : line;
}

[[noreturn]] void mismatch(const std::string& path, const std::string& what) {
    throw Error(Error::Code::ManifestMismatch, path + ": manifest does not match the graph (" + what +
                                                   "); re-export the model with `dnx export` so both agree");
}

class OpenVinoBackend final : public Backend {
public:
    OpenVinoBackend(const std::string& path, const Options& options, Manifest& manifest) {
        std::shared_ptr<ov::Model> model;
        try {
            model = core_.read_model(path);
        } catch (const std::exception& e) {
            throw Error(Error::Code::BadArtifact, "cannot read model " + path + " (not an ONNX/OpenVINO model, or "
                                                  "corrupt): " + first_line(e.what()));
        }
        const std::string side = sidecar_path(path);
        if (file_exists(side)) {
            manifest = parse_manifest(read_file(side), side);
        } else if (model->has_rt_info("framework", "dnx.manifest")) {
            // OpenVINO's ONNX frontend exposes metadata_props under rt_info["framework"]
            manifest = parse_manifest(model->get_rt_info<std::string>("framework", "dnx.manifest"), path);
        } else {
            throw Error(Error::Code::BadArtifact, path + " has no dnx manifest (neither " + side +
                                                      " nor ONNX metadata): not exported by dnx; re-export it with "
                                                      "`dnx export`");
        }
        check_certified(manifest, options, path);
        check(path, *model, manifest, options);
        configure(model, options);
    }

    void infer(const float* input, std::size_t batch, float* out) const override {
        const std::shared_ptr<Compiled> compiled = compiled_for(batch);
        Slot slot(*compiled);
        ov::Shape shape = input_shape_;
        shape[0] = batch;
        try {
            // OpenVINO only reads a wrapped input tensor; the const_cast is its API's, not a write
            slot.request.set_input_tensor(ov::Tensor(ov::element::f32, shape, const_cast<float*>(input)));
            slot.request.infer();
            const ov::Tensor result = slot.request.get_output_tensor();
            std::memcpy(out, result.data<const float>(), batch * classes_ * sizeof(float));
        } catch (const std::exception& e) {
            // OpenVINO reports through ov::Exception and std exceptions alike; callers see one type
            throw Error(Error::Code::Backend, "OpenVINO inference failed: " + first_line(e.what()));
        }
    }

    std::size_t max_batch() const override { return max_batch_; }
    std::string name() const override { return "openvino-" + device_; }

private:
    static constexpr std::size_t kMaxShapes = 8;

    // One static-shape compiled model and its pool of requests.
    struct Compiled {
        std::size_t batch = 0;
        ov::CompiledModel model;
        std::vector<ov::InferRequest> requests;
        std::vector<std::size_t> free;
        std::mutex mutex;
        std::condition_variable available;
    };

    // Borrow a free InferRequest for one call; waits while all are busy.
    struct Slot {
        explicit Slot(Compiled& c) : owner(c) {
            std::unique_lock<std::mutex> lock(c.mutex);
            c.available.wait(lock, [&] { return !c.free.empty(); });
            index = c.free.back();
            c.free.pop_back();
            request = c.requests[index];
        }
        ~Slot() {
            {
                std::lock_guard<std::mutex> lock(owner.mutex);
                owner.free.push_back(index);
            }
            owner.available.notify_one();
        }
        Slot(const Slot&) = delete;
        Slot& operator=(const Slot&) = delete;
        Compiled& owner;
        std::size_t index = 0;
        ov::InferRequest request;  // a cheap handle sharing the pooled request
    };

    // The compiled model of `batch`, compiling it under the lock on first use. A shape dropped
    // from the cache stays alive while a caller still holds it.
    std::shared_ptr<Compiled> compiled_for(std::size_t batch) const {
        std::lock_guard<std::mutex> lock(shapes_mutex_);
        for (auto it = shapes_.begin(); it != shapes_.end(); ++it) {
            if ((*it)->batch == batch) {
                shapes_.splice(shapes_.begin(), shapes_, it);  // most recently used first
                return shapes_.front();
            }
        }
        auto c = std::make_shared<Compiled>();
        c->batch = batch;
        try {
            std::shared_ptr<ov::Model> model = model_->clone();
            ov::PartialShape shape{static_cast<std::int64_t>(batch), static_cast<std::int64_t>(input_shape_[1]),
                                   static_cast<std::int64_t>(input_shape_[2]), static_cast<std::int64_t>(input_shape_[3])};
            model->reshape(shape);
            c->model = core_.compile_model(model, device_, config_);
            const std::size_t n = num_requests_ > 0
                                      ? num_requests_
                                      : std::max<std::size_t>(1, c->model.get_property(ov::optimal_number_of_infer_requests));
            for (std::size_t i = 0; i < n; ++i) {
                c->requests.push_back(c->model.create_infer_request());
                c->free.push_back(i);
            }
        } catch (const std::exception& e) {
            throw Error(Error::Code::Backend, "OpenVINO cannot compile the model for " + device_ + " at batch " +
                                                  std::to_string(batch) + ": " + first_line(e.what()));
        }
        shapes_.push_front(c);
        if (shapes_.size() > kMaxShapes) shapes_.pop_back();
        return c;
    }

    void check(const std::string& path, const ov::Model& model, const Manifest& m, const Options& options) {
        if (model.inputs().size() != 1 || model.outputs().size() != 1)
            mismatch(path, "the graph has " + std::to_string(model.inputs().size()) + " inputs and " +
                               std::to_string(model.outputs().size()) + " outputs, a classifier has one each");
        const ov::Output<const ov::Node> in = model.input();
        if (in.get_names().count(m.input_name) == 0) mismatch(path, "input name " + m.input_name + " not in the graph");
        const ov::PartialShape ps = in.get_partial_shape();
        if (ps.rank().is_dynamic() || ps.rank().get_length() != 4) mismatch(path, "graph input is not 4-D");
        for (int d = 1; d < 4; ++d)
            if (ps[d].is_dynamic() || ps[d].get_length() != m.input_shape[d])
                mismatch(path, "graph input " + ps.to_string() + " vs manifest channels/size");
        const ov::PartialShape out = model.output().get_partial_shape();
        if (out.rank().is_dynamic() || out.rank().get_length() != 2 || out[1].is_dynamic() ||
            out[1].get_length() != static_cast<std::int64_t>(m.labels.size()))
            mismatch(path, "graph output " + out.to_string() + " vs " + std::to_string(m.labels.size()) + " labels");
        if (in.get_element_type() != ov::element::f32) mismatch(path, "graph input is not float32");
        classes_ = m.labels.size();
        input_shape_ = {1, static_cast<std::size_t>(m.input_shape[1]), static_cast<std::size_t>(m.input_shape[2]),
                        static_cast<std::size_t>(m.input_shape[3])};
        if (options.max_batch <= 0) throw Error(Error::Code::InvalidArgument, "max_batch must be positive");
        max_batch_ = ps[0].is_static() ? static_cast<std::size_t>(ps[0].get_length())
                                       : static_cast<std::size_t>(options.max_batch);
        if (ps[0].is_static() && m.input_shape[0] > 0 && ps[0].get_length() != m.input_shape[0])
            mismatch(path, "static batch of the graph differs from the manifest's");
    }

    void configure(const std::shared_ptr<ov::Model>& model, const Options& options) {
        model_ = model;
        device_ = options.device;
        num_requests_ = options.num_requests > 0 ? static_cast<std::size_t>(options.num_requests) : 0;
        config_ = {ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY)};
        if (options.num_threads > 0) config_.emplace(ov::inference_num_threads(options.num_threads));
        const std::string& precision = options.inference_precision;
        if (precision == "f32" || precision == "bf16" || precision == "f16")
            config_.emplace(ov::hint::inference_precision(ov::element::Type(precision)));
        else if (!precision.empty())
            throw Error(Error::Code::InvalidArgument, "inference_precision must be f32, bf16, f16 or empty (the "
                                                      "plugin's default), got \"" + precision + "\"");
        compiled_for(1);  // compile errors surface at load, not on the first request
    }

    mutable ov::Core core_;
    std::shared_ptr<ov::Model> model_;
    ov::AnyMap config_;
    std::size_t num_requests_ = 0;
    mutable std::mutex shapes_mutex_;
    mutable std::list<std::shared_ptr<Compiled>> shapes_;
    ov::Shape input_shape_;
    std::size_t classes_ = 0;
    std::size_t max_batch_ = 0;
    std::string device_;
};

}  // namespace

std::unique_ptr<Backend> make_openvino_backend(const std::string& path, const Options& options, Manifest& manifest) {
    return std::make_unique<OpenVinoBackend>(path, options, manifest);
}

}  // namespace detail
}  // namespace dnx
