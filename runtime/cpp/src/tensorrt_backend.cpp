// TensorRT backend (compiled only where CMake finds TensorRT and CUDA). Written against NVIDIA's
// C++ samples and the TensorRT 10.x/11.x API: I/O tensors looked up by name, setInputShape +
// setTensorAddress + enqueueV3, one execution context per concurrent caller, each with its own
// CUDA stream, device buffers and pinned host buffers sized for the profile's largest batch.
// NOT YET RUN on real TensorRT: no machine with TensorRT was available when it was written.
#include "engine.hpp"

#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>

#include <NvInfer.h>
#include <cuda_runtime_api.h>

namespace dnx {
namespace detail {
namespace {

[[noreturn]] void fail(const std::string& what) { throw Error(Error::Code::Backend, what); }

void cuda_check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) fail(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(status));
}

// Keeps TensorRT's last error so a failed call becomes a message, not just a null pointer.
class Logger final : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char* msg) noexcept override {
        if (severity > Severity::kERROR) return;
        std::lock_guard<std::mutex> lock(mutex_);
        last_ = msg;
    }
    std::string last() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return last_.empty() ? "no message" : last_.substr(0, last_.find('\n'));
    }

private:
    mutable std::mutex mutex_;
    std::string last_;
};

// Makes `device` current for one scope and restores the caller's device after it: cudaSetDevice is
// per host thread, and a service that embeds the runtime keeps its own device on its own threads.
class DeviceGuard {
public:
    explicit DeviceGuard(int device) {
        cuda_check(cudaGetDevice(&previous_), "cudaGetDevice");
        if (previous_ != device) cuda_check(cudaSetDevice(device), "cudaSetDevice");
    }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;
    ~DeviceGuard() { cudaSetDevice(previous_); }

private:
    int previous_ = 0;
};

struct CudaFree {
    void operator()(void* p) const noexcept { cudaFree(p); }
};
struct CudaFreeHost {
    void operator()(void* p) const noexcept { cudaFreeHost(p); }
};

// One concurrent caller's execution context with its stream and buffers (RAII, move-only).
struct Lane {
    std::unique_ptr<nvinfer1::IExecutionContext> context;
    cudaStream_t stream = nullptr;
    std::unique_ptr<void, CudaFree> device_in, device_out;
    std::unique_ptr<void, CudaFreeHost> host_in, host_out;
    Lane() = default;
    Lane(const Lane&) = delete;
    Lane& operator=(const Lane&) = delete;
    ~Lane() {
        if (stream) cudaStreamDestroy(stream);
    }
};

std::string facts_version() {
    // NV_TENSORRT_VERSION layout: major * 10000 + minor * 100 + patch
    const int v = getInferLibVersion();
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

class TensorRtBackend final : public Backend {
public:
    TensorRtBackend(const std::string& path, const Options& options, Manifest& manifest) : device_(options.cuda_device) {
        const std::string side = sidecar_path(path);
        if (!file_exists(side))
            throw Error(Error::Code::BadArtifact, path + " has no manifest " + side + " (not built by dnx, or the "
                                                  "sidecar was not copied with it); rebuild it with `dnx build "
                                                  "MODEL.onnx` or copy the sidecar next to it");
        const EngineManifest em = parse_engine_manifest(read_file(side), side);
        check_certified(em.manifest, options, path);  // the source ONNX's certificate, as Python checks
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess || count <= device_)
            throw Error(Error::Code::Unsupported, "no CUDA device " + std::to_string(device_) +
                                                      ": TensorRT engines run on an NVIDIA GPU with a working driver");
        const DeviceGuard on_device(device_);  // everything below (and the destructor) runs on device_
        try {
            load(path, options, manifest, em);
        } catch (...) {
            release_all();  // on device_, while the guard holds it
            throw;
        }
    }

    ~TensorRtBackend() override {
        // TensorRT objects and CUDA buffers are released on the device they were made on.
        int previous = 0;
        const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != device_ &&
                              cudaSetDevice(device_) == cudaSuccess;
        release_all();
        if (switched) cudaSetDevice(previous);
    }
    TensorRtBackend(const TensorRtBackend&) = delete;
    TensorRtBackend& operator=(const TensorRtBackend&) = delete;

    void infer(const float* input, std::size_t batch, float* out) const override {
        const DeviceGuard on_device(device_);  // the device is per calling thread; the caller's is restored
        std::size_t index;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            available_.wait(lock, [&] { return !free_.empty(); });
            index = free_.back();
            free_.pop_back();
        }
        struct Release {  // hands the lane back even when a call below throws
            const TensorRtBackend& b;
            std::size_t i;
            int exceptions = std::uncaught_exceptions();
            ~Release() {
                // After an error, copies or kernels may still be in flight on the lane's stream, reading
                // its pinned input or writing its output: the next caller must not get it before they end.
                if (std::uncaught_exceptions() > exceptions) cudaStreamSynchronize(b.lanes_[i]->stream);
                {
                    std::lock_guard<std::mutex> lock(b.mutex_);
                    b.free_.push_back(i);
                }
                b.available_.notify_one();
            }
        } release{*this, index};
        Lane& lane = *lanes_[index];
        const std::size_t in_bytes = batch * per_image_ * sizeof(float), out_bytes = batch * classes_ * sizeof(float);
        std::memcpy(lane.host_in.get(), input, in_bytes);
        cuda_check(cudaMemcpyAsync(lane.device_in.get(), lane.host_in.get(), in_bytes, cudaMemcpyHostToDevice, lane.stream),
                   "copy to device");
        nvinfer1::Dims shape = input_dims_;
        shape.d[0] = static_cast<std::int64_t>(batch);
        if (!lane.context->setInputShape(input_name_.c_str(), shape))
            fail("TensorRT refused input shape of batch " + std::to_string(batch) + ": " + logger_.last());
        if (!lane.context->enqueueV3(lane.stream)) fail("TensorRT enqueueV3 failed: " + logger_.last());
        cuda_check(cudaMemcpyAsync(lane.host_out.get(), lane.device_out.get(), out_bytes, cudaMemcpyDeviceToHost,
                                   lane.stream), "copy to host");
        cuda_check(cudaStreamSynchronize(lane.stream), "stream synchronize");
        std::memcpy(out, lane.host_out.get(), out_bytes);
    }

    std::size_t max_batch() const override { return max_batch_; }
    std::string name() const override { return "tensorrt-cuda:" + std::to_string(device_); }

private:
    // The rest of the constructor, on device_.
    void load(const std::string& path, const Options& options, Manifest& manifest, const EngineManifest& em) {
        cudaDeviceProp prop{};
        cuda_check(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
        const EngineFacts here{facts_version(), std::to_string(prop.major) + "." + std::to_string(prop.minor), prop.name};
        check_engine_compatible(em, here, path);  // before deserializing, as Python does
        manifest = em.manifest;
        classes_ = manifest.labels.size();

        const std::string blob = read_file(path);
        check_engine_digest(em, sha256_hex(blob), path);  // the bytes the manifest describes, as Python checks
        runtime_.reset(nvinfer1::createInferRuntime(logger_));
        if (!runtime_) fail("TensorRT cannot create a runtime: " + logger_.last());
        // A version-compatible plan carries its own lean runtime, host code TensorRT refuses to run
        // unless allowed (the default is false; trtexec and Triton opt in the same way).
        if (em.version_compat) runtime_->setEngineHostCodeAllowed(true);
        engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
        if (!engine_) throw Error(Error::Code::BadArtifact, "TensorRT cannot deserialize " + path + ": " + logger_.last() +
                                                                "; rebuild it with `" + em.build_command + "`");
        check_io(path, manifest, em);
        const int lanes = options.num_requests > 0 ? options.num_requests : 2;
        for (int i = 0; i < lanes; ++i) lanes_.push_back(make_lane());
        for (std::size_t i = 0; i < lanes_.size(); ++i) free_.push_back(i);
    }

    void check_io(const std::string& path, const Manifest& m, const EngineManifest& em) {
        const auto mismatch = [&](const std::string& what) {
            throw Error(Error::Code::ManifestMismatch, path + ": engine does not match its manifest (" + what +
                                                           "); rebuild it with `" + em.build_command + "`");
        };
        int inputs = 0, outputs = 0;
        for (int i = 0; i < engine_->getNbIOTensors(); ++i) {
            const char* name = engine_->getIOTensorName(i);
            const bool is_input = engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
            if (engine_->getTensorDataType(name) != nvinfer1::DataType::kFLOAT)
                mismatch(std::string("tensor ") + name + " is not float32");
            (is_input ? input_name_ : output_name_) = name;
            ++(is_input ? inputs : outputs);
        }
        if (inputs != 1 || outputs != 1) mismatch("a classifier engine has one input and one output");
        if (input_name_ != m.input_name) mismatch("input is " + input_name_ + ", manifest says " + m.input_name);
        input_dims_ = engine_->getTensorShape(input_name_.c_str());
        if (input_dims_.nbDims != 4) mismatch("input is not 4-D");
        for (int d = 1; d < 4; ++d)
            if (input_dims_.d[d] != m.input_shape[static_cast<std::size_t>(d)]) mismatch("input channels/size differ");
        const nvinfer1::Dims out = engine_->getTensorShape(output_name_.c_str());
        if (out.nbDims != 2 || out.d[1] != static_cast<std::int64_t>(classes_)) mismatch("output classes differ from labels");
        if (input_dims_.d[0] >= 0) {
            max_batch_ = static_cast<std::size_t>(input_dims_.d[0]);
        } else {
            const nvinfer1::Dims high = engine_->getProfileShape(input_name_.c_str(), 0, nvinfer1::OptProfileSelector::kMAX);
            max_batch_ = static_cast<std::size_t>(high.d[0]);
            if (em.max_batch > 0 && static_cast<std::size_t>(em.max_batch) != max_batch_) mismatch("profile max batch");
        }
        per_image_ = static_cast<std::size_t>(input_dims_.d[1] * input_dims_.d[2] * input_dims_.d[3]);
    }

    void release_all() noexcept {  // contexts before the engine before the runtime
        lanes_.clear();
        engine_.reset();
        runtime_.reset();
    }

    std::unique_ptr<Lane> make_lane() {
        auto lane = std::make_unique<Lane>();
        lane->context.reset(engine_->createExecutionContext());
        if (!lane->context) fail("TensorRT cannot create an execution context: " + logger_.last());
        cuda_check(cudaStreamCreateWithFlags(&lane->stream, cudaStreamNonBlocking), "stream create");
        const std::size_t in_bytes = max_batch_ * per_image_ * sizeof(float), out_bytes = max_batch_ * classes_ * sizeof(float);
        void* p = nullptr;
        cuda_check(cudaMalloc(&p, in_bytes), "cudaMalloc");
        lane->device_in.reset(p);
        cuda_check(cudaMalloc(&p, out_bytes), "cudaMalloc");
        lane->device_out.reset(p);
        cuda_check(cudaMallocHost(&p, in_bytes), "cudaMallocHost");
        lane->host_in.reset(p);
        cuda_check(cudaMallocHost(&p, out_bytes), "cudaMallocHost");
        lane->host_out.reset(p);
        // addresses never change for a lane: set once, not per call
        if (!lane->context->setTensorAddress(input_name_.c_str(), lane->device_in.get()) ||
            !lane->context->setTensorAddress(output_name_.c_str(), lane->device_out.get()))
            fail("TensorRT refused a tensor address: " + logger_.last());
        return lane;
    }

    int device_;
    mutable Logger logger_;
    // declaration order = reverse destruction order: contexts before the engine before the runtime
    std::unique_ptr<nvinfer1::IRuntime> runtime_;
    std::unique_ptr<nvinfer1::ICudaEngine> engine_;
    std::vector<std::unique_ptr<Lane>> lanes_;
    mutable std::vector<std::size_t> free_;
    mutable std::mutex mutex_;
    mutable std::condition_variable available_;
    std::string input_name_, output_name_;
    nvinfer1::Dims input_dims_{};
    std::size_t classes_ = 0, per_image_ = 0, max_batch_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_tensorrt_backend(const std::string& path, const Options& options, Manifest& manifest) {
    return std::make_unique<TensorRtBackend>(path, options, manifest);
}

}  // namespace detail
}  // namespace dnx
