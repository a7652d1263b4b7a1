// Engine manifests and the TensorRT compatibility check (pure; used by the TensorRT backend and tests).
#pragma once

#include "internal.hpp"

#include <utility>
#include <vector>

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

// (built, runtime) major versions NVIDIA supports for version-compatible engines across a major
// release: {8, 10} and {10, 11}, as VERSION_COMPAT_ACROSS_MAJORS in dnx/schemas/engine_manifest.py
// (both tests compare theirs with tests/runtime/engine_compat_cases.json).
const std::vector<std::pair<int, int>>& version_compat_across_majors();

EngineManifest parse_engine_manifest(const std::string& json_text, const std::string& where);

// Throws Error(ManifestMismatch) naming both sides and the `dnx build` command when the engine
// cannot run here; same rules as dnx/schemas/engine_manifest.py check_engine_compatible.
void check_engine_compatible(const EngineManifest& engine, const EngineFacts& here, const std::string& engine_name);

// Lower-case hex SHA-256 of `bytes` (OpenSSL), as Python's sha256_file writes into engine_sha256.
std::string sha256_hex(const std::string& bytes);

// Throws Error(ManifestMismatch) when the manifest records an engine_sha256 other than `sha256`
// (the engine was replaced without its sidecar); same rule as manifest.py check_engine_digest.
void check_engine_digest(const EngineManifest& engine, const std::string& sha256, const std::string& engine_name);

}  // namespace detail
}  // namespace dnx
