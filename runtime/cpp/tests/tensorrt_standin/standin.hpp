// Controls and observations of the TensorRT/CUDA stand-ins (NvInfer.h, cuda_runtime_api.h here).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace standin {

// Plans the stand-in runtime deserializes: a version-compatible one needs host code allowed, as
// TensorRT's lean runtime inside such a plan does.
inline const std::string kPlan = "STANDIN-PLAN";
inline const std::string kVersionCompatPlan = "STANDIN-PLAN-VERSION-COMPATIBLE";

struct Config {
    int devices = 2;
    int32_t lib_version = 100800;  // getInferLibVersion(): 10.8.0
    int cc_major = 8, cc_minor = 9;
    int64_t channels = 3, size = 8, classes = 2, max_batch = 4;
    bool refuse_input_shape = false;  // setInputShape answers false (an error after the input copy is queued)
};

Config& config();
void reset();                        // default config, empty log; the calling thread's device back to 0
int current_device();                // the calling thread's, as cudaGetDevice reports it
std::size_t pending_operations();    // queued on streams and not yet synchronized, over all streams
std::size_t wrong_device_releases(); // buffers, streams, contexts or engines released on another device
bool host_code_allowed();            // what the last runtime was told
std::vector<std::string> events();   // "deserialize", "setEngineHostCodeAllowed", ...

}  // namespace standin
