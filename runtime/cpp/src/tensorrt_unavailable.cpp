// Built when CMake found no TensorRT/CUDA: engines are refused with a message, not a link error.
#include "internal.hpp"

namespace dnx {
namespace detail {

std::unique_ptr<Backend> make_tensorrt_backend(const std::string& path, const Options&, Manifest&) {
    throw Error(Error::Code::Unsupported, "cannot load engine " + path + ": this libdnx_runtime was built without "
                                          "TensorRT; rebuild it where TensorRT and CUDA are installed, or load the "
                                          "ONNX file instead (OpenVINO)");
}

}  // namespace detail
}  // namespace dnx
