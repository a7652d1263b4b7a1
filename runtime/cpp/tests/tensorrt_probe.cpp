// dnx-tensorrt-probe ENGINE DEVICE INPUT.f32 BATCH: the C++ runtime on a real TensorRT engine, for
// `make gpu-check` (benchmarks/gpu_check_trt.py), built only where CMake finds TensorRT and CUDA.
// Loads ENGINE on CUDA device DEVICE while the calling thread has another device current (when the
// machine has two), runs BATCH preprocessed NCHW float32 inputs from INPUT.f32, and prints JSON:
// the logits and whether the thread's device was left as it was after load, inference and teardown.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include <dnx/runtime.hpp>

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: dnx-tensorrt-probe ENGINE DEVICE INPUT.f32 BATCH\n");
        return 1;
    }
    try {
        const int device = std::stoi(argv[2]);
        const auto batch = static_cast<std::size_t>(std::stoul(argv[4]));
        std::ifstream in(argv[3], std::ios::binary);
        const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
        std::vector<float> input(bytes.size() / sizeof(float));
        std::copy(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(input.size() * sizeof(float)),
                  reinterpret_cast<char*>(input.data()));
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
        const int caller = count > 1 ? (device + 1) % count : device;  // a device other than the engine's
        if (cudaSetDevice(caller) != cudaSuccess) throw std::runtime_error("cudaSetDevice failed");
        bool restored = true;
        const auto still = [&] {
            int now = -1;
            restored = restored && cudaGetDevice(&now) == cudaSuccess && now == caller;
        };
        std::vector<float> logits;
        std::string backend;
        {
            dnx::Options options;
            options.cuda_device = device;
            const dnx::Classifier model = dnx::Classifier::load(argv[1], options);
            still();
            logits = model.logits(input.data(), batch);
            still();
            backend = model.backend_name();
        }
        still();
        std::printf("{\"backend\": \"%s\", \"device\": %d, \"caller_device\": %d, \"device_restored\": %s, \"logits\": [",
                    backend.c_str(), device, caller, restored ? "true" : "false");
        for (std::size_t i = 0; i < logits.size(); ++i) std::printf("%s%.9g", i ? ", " : "", static_cast<double>(logits[i]));
        std::printf("]}\n");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "dnx-tensorrt-probe: %s\n", e.what());
        return 1;
    }
}
