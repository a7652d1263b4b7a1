// The stand-ins' behaviour: NOT TensorRT, NOT CUDA. Devices are a per-thread number; device memory
// is host memory tagged with the device it was allocated on; stream work is queued and done at
// cudaStreamSynchronize, so a lane handed back with work in flight is visible.
#include "standin.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "NvInfer.h"

struct CUstream_st {
    int device;
    std::vector<std::function<void()>> queued;
};

namespace standin {
namespace {

std::mutex mutex;
Config cfg;
std::vector<std::string> log_;
std::map<const void*, int> allocations;  // pointer -> device
std::size_t wrong_device = 0;
bool host_code = false;
thread_local int device = 0;

void note(const std::string& what) {
    std::lock_guard<std::mutex> lock(mutex);
    log_.push_back(what);
}

void released_on(int owner) {
    if (owner != device) {
        std::lock_guard<std::mutex> lock(mutex);
        ++wrong_device;
    }
}

std::vector<CUstream_st*>& streams() {
    static std::vector<CUstream_st*> all;
    return all;
}

}  // namespace

Config& config() { return cfg; }
void reset() {
    std::lock_guard<std::mutex> lock(mutex);
    cfg = Config{};
    log_.clear();
    wrong_device = 0;
    host_code = false;
    device = 0;
}
int current_device() { return device; }
std::size_t pending_operations() {
    std::lock_guard<std::mutex> lock(mutex);
    std::size_t n = 0;
    for (const CUstream_st* s : streams()) n += s->queued.size();
    return n;
}
std::size_t wrong_device_releases() {
    std::lock_guard<std::mutex> lock(mutex);
    return wrong_device;
}
bool host_code_allowed() { return host_code; }
std::vector<std::string> events() {
    std::lock_guard<std::mutex> lock(mutex);
    return log_;
}

namespace {

using namespace nvinfer1;

Dims dims(std::initializer_list<int64_t> values) {
    Dims d{};
    d.nbDims = static_cast<int32_t>(values.size());
    std::copy(values.begin(), values.end(), d.d);
    return d;
}

class Context final : public IExecutionContext {
public:
    ~Context() noexcept override { released_on(device_); }
    bool setInputShape(char const*, Dims const& d) noexcept override {
        if (cfg.refuse_input_shape || d.d[0] < 1 || d.d[0] > cfg.max_batch) return false;
        batch_ = d.d[0];
        return true;
    }
    bool setTensorAddress(char const* name, void* data) noexcept override {
        (std::strcmp(name, "input") == 0 ? in_ : out_) = static_cast<float*>(data);
        return true;
    }
    bool enqueueV3(cudaStream_t stream) noexcept override {
        const int64_t batch = batch_, per_image = cfg.channels * cfg.size * cfg.size, classes = cfg.classes;
        float *in = in_, *out = out_;
        std::lock_guard<std::mutex> lock(mutex);
        stream->queued.push_back([=] {  // logits: class 0 = the image's sum, class 1 = minus it
            for (int64_t b = 0; b < batch; ++b) {
                float sum = 0;
                for (int64_t i = 0; i < per_image; ++i) sum += in[b * per_image + i];
                for (int64_t c = 0; c < classes; ++c) out[b * classes + c] = c % 2 ? -sum : sum;
            }
        });
        return true;
    }

private:
    int device_ = device;
    int64_t batch_ = 0;
    float *in_ = nullptr, *out_ = nullptr;
};

class Engine final : public ICudaEngine {
public:
    ~Engine() noexcept override { released_on(device_); }
    int32_t getNbIOTensors() const noexcept override { return 2; }
    char const* getIOTensorName(int32_t index) const noexcept override { return index == 0 ? "input" : "logits"; }
    TensorIOMode getTensorIOMode(char const* name) const noexcept override {
        return std::strcmp(name, "input") == 0 ? TensorIOMode::kINPUT : TensorIOMode::kOUTPUT;
    }
    DataType getTensorDataType(char const*) const noexcept override { return DataType::kFLOAT; }
    Dims getTensorShape(char const* name) const noexcept override {
        return std::strcmp(name, "input") == 0 ? dims({-1, cfg.channels, cfg.size, cfg.size}) : dims({-1, cfg.classes});
    }
    Dims getProfileShape(char const*, int32_t, OptProfileSelector select) const noexcept override {
        const int64_t batch = select == OptProfileSelector::kMAX ? cfg.max_batch : 1;
        return dims({batch, cfg.channels, cfg.size, cfg.size});
    }
    IExecutionContext* createExecutionContext() noexcept override { return new Context(); }

private:
    int device_ = device;
};

class Runtime final : public IRuntime {
public:
    explicit Runtime(ILogger& logger) : logger_(logger) {}
    void setEngineHostCodeAllowed(bool allowed) noexcept override {
        host_code = allowed;
        note("setEngineHostCodeAllowed");
    }
    ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size) noexcept override {
        note("deserialize");
        const std::string plan(static_cast<const char*>(blob), size);
        if (plan == kVersionCompatPlan && !host_code) {
            logger_.log(ILogger::Severity::kERROR, "stand-in: the plan has host code and host code is not allowed");
            return nullptr;
        }
        if (plan != kPlan && plan != kVersionCompatPlan) {
            logger_.log(ILogger::Severity::kERROR, "stand-in: not a plan");
            return nullptr;
        }
        return new Engine();
    }

private:
    ILogger& logger_;
};

cudaError_t allocate(void** ptr, std::size_t size) {
    *ptr = std::malloc(size ? size : 1);
    std::lock_guard<std::mutex> lock(mutex);
    allocations[*ptr] = device;
    return cudaSuccess;
}

cudaError_t release(void* ptr) {
    int owner;
    {
        std::lock_guard<std::mutex> lock(mutex);
        owner = allocations.at(ptr);
        allocations.erase(ptr);
    }
    released_on(owner);
    std::free(ptr);
    return cudaSuccess;
}

}  // namespace
}  // namespace standin

nvinfer1::IRuntime* nvinfer1::createInferRuntime(ILogger& logger) noexcept { return new standin::Runtime(logger); }
extern "C" int32_t getInferLibVersion() noexcept { return standin::cfg.lib_version; }

extern "C" {
const char* cudaGetErrorString(cudaError_t error) { return error == cudaSuccess ? "no error" : "stand-in error"; }
cudaError_t cudaGetDeviceCount(int* count) {
    *count = standin::cfg.devices;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
    *device = standin::device;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
    if (device < 0 || device >= standin::cfg.devices) return cudaErrorInvalidDevice;
    standin::device = device;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
    if (device < 0 || device >= standin::cfg.devices) return cudaErrorInvalidDevice;
    *prop = cudaDeviceProp{};
    std::strcpy(prop->name, "Stand-in GPU");
    prop->major = standin::cfg.cc_major;
    prop->minor = standin::cfg.cc_minor;
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
    *stream = new CUstream_st{standin::device, {}};
    std::lock_guard<std::mutex> lock(standin::mutex);
    standin::streams().push_back(*stream);
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    {
        std::lock_guard<std::mutex> lock(standin::mutex);
        auto& all = standin::streams();
        all.erase(std::find(all.begin(), all.end(), stream));
    }
    standin::released_on(stream->device);
    delete stream;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    std::vector<std::function<void()>> work;
    {
        std::lock_guard<std::mutex> lock(standin::mutex);
        work.swap(stream->queued);
    }
    for (auto& step : work) step();
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t count, cudaMemcpyKind, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(standin::mutex);
    stream->queued.push_back([=] { std::memcpy(dst, src, count); });
    return cudaSuccess;
}
cudaError_t cudaMalloc(void** ptr, std::size_t size) { return standin::allocate(ptr, size); }
cudaError_t cudaFree(void* ptr) { return standin::release(ptr); }
cudaError_t cudaMallocHost(void** ptr, std::size_t size) { return standin::allocate(ptr, size); }
cudaError_t cudaFreeHost(void* ptr) { return standin::release(ptr); }
}
