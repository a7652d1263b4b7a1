// Engine manifests and the TensorRT compatibility check (pure; used by the TensorRT backend and tests).
#pragma once

#include "internal.hpp"

namespace dnx {
namespace detail {

struct EngineManifest {
    Manifest manifest;  // from source_onnx.manifest: input, preprocessing, labels
    std::string tensorrt_version, compute_capability, gpu_name, hardware_compat, build_command;
    bool version_compat = false;
    int max_batch = 0;  // the optimization profile's, 0 when not recorded
};

struct EngineFacts {  // the machine an engine is about to run on
    std::string tensorrt_version, compute_capability, gpu_name;
};

EngineManifest parse_engine_manifest(const std::string& json_text, const std::string& where);

// Throws Error(ManifestMismatch) naming both sides and the `dnx build` command when the engine
// cannot run here; same rules as runtime/tensorrt/manifest.py check_engine_compatible.
void check_engine_compatible(const EngineManifest& engine, const EngineFacts& here, const std::string& engine_name);

}  // namespace detail
}  // namespace dnx
