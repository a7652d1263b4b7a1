// Engine sidecars (X.engine.json, dnx/schemas/engine_manifest.py) and the compatibility check Python
// runs before deserializing: same TensorRT version (or a version-compatible engine on a later
// release of the same major, or of the next major where NVIDIA supports it: 10 -> 11), same GPU
// architecture (or an Ampere+ hardware-compatible engine).
// Pure functions, so they are tested on machines without TensorRT.
#include "engine.hpp"
#include "json_fields.hpp"

#include <algorithm>
#include <cctype>
#include <memory>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

namespace dnx {
namespace detail {
namespace {

using nlohmann::json;

[[noreturn]] void refuse(const std::string& what) { throw Error(Error::Code::ManifestMismatch, what); }

// The numbers in a version string, e.g. "10.8.0.43" -> {10, 8, 0} for parts = 3.
std::vector<int> version_tuple(const std::string& version, std::size_t parts) {
    std::vector<int> out;
    for (std::size_t i = 0; i < version.size() && out.size() < parts;) {
        if (!std::isdigit(static_cast<unsigned char>(version[i]))) {
            ++i;
            continue;
        }
        int value = 0;
        for (; i < version.size() && std::isdigit(static_cast<unsigned char>(version[i])) && value < 100000; ++i)
            value = value * 10 + (version[i] - '0');
        out.push_back(value);
    }
    return out;
}

std::pair<int, int> cc_tuple(const std::string& cc) {
    const auto v = version_tuple(cc, 2);
    return {v.empty() ? 0 : v[0], v.size() > 1 ? v[1] : 0};
}

std::string sm(const std::string& cc) {
    const auto t = cc_tuple(cc);
    return "sm_" + std::to_string(t.first) + std::to_string(t.second);
}

std::string describe(const std::string& version, const std::string& cc, const std::string& gpu) {
    return "TensorRT " + version + " on " + sm(cc) + (gpu.empty() ? "" : " (" + gpu + ")");
}

}  // namespace

EngineManifest parse_engine_manifest(const std::string& json_text, const std::string& where) {
    // The rules of dnx/schemas/json/engine-manifest.schema.json (EngineManifest in Python) for the
    // fields this runtime reads, and the source ONNX manifest's through parse_manifest.
    const std::string rebuild = "rebuild the engine with `dnx build MODEL.onnx`";
    json j;
    try {
        j = json::parse(json_text);
    } catch (const json::exception& e) {
        throw Error(Error::Code::BadArtifact, where + " is not valid JSON (" + e.what() + "); " + rebuild);
    }
    if (!j.is_object() || !j.contains("schema") || j["schema"] != "dnx.engine-manifest/1")
        throw Error(Error::Code::BadArtifact, where + " is not a dnx engine manifest (schema "
                                                      "\"dnx.engine-manifest/1\" expected); " + rebuild);
    EngineManifest e;
    e.build_command = "dnx build MODEL.onnx";
    if (j.contains("build_command") && j["build_command"].is_string()) e.build_command = j["build_command"];
    const JsonFields f(where, "rebuild it on this machine with `" + e.build_command + "`");
    if (const json* v = f.member(j, "", "build_command", false); v && !v->is_null()) f.string(*v, "build_command");
    e.tensorrt_version = f.string(*f.member(j, "", "tensorrt_version", true), "tensorrt_version");
    const json& gpu = f.object(*f.member(j, "", "gpu", true), "gpu");
    const json& cc = *f.member(gpu, "gpu", "compute_capability", true);
    e.compute_capability = f.string(cc, "gpu.compute_capability");
    const auto dot = e.compute_capability.find('.');
    const auto digits = [](const std::string& s) {
        return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (dot == std::string::npos || !digits(e.compute_capability.substr(0, dot)) || !digits(e.compute_capability.substr(dot + 1)))
        f.bad("gpu.compute_capability", "must match ^[0-9]+\\.[0-9]+$, got " + JsonFields::shown(cc));
    if (const json* v = f.member(gpu, "gpu", "name", false); v && !v->is_null()) e.gpu_name = f.string(*v, "gpu.name");
    e.hardware_compat = "none";
    if (const json* v = f.member(j, "", "hardware_compat", false))
        e.hardware_compat = f.one_of(*v, "hardware_compat", {"none", "ampere+", "same-cc"});
    if (const json* v = f.member(j, "", "version_compat", false)) e.version_compat = f.boolean(*v, "version_compat");
    if (const json* profile = f.member(j, "", "batch_profile", false); profile && !profile->is_null()) {
        f.object(*profile, "batch_profile");
        for (const char* key : {"min_batch", "opt_batch", "max_batch"}) {
            const json* v = f.member(*profile, "batch_profile", key, false);
            if (!v || v->is_null()) continue;
            const auto batch = static_cast<int>(f.integer(*v, std::string("batch_profile.") + key, 1));
            if (std::string(key) == "max_batch") e.max_batch = batch;
        }
    }
    std::string precision, sha;
    if (const json* v = f.member(j, "", "precision", false); v && !v->is_null())
        precision = f.one_of(*v, "precision", {"fp32", "fp16", "int8", "best"});
    if (const json* v = f.member(j, "", "engine_sha256", false); v && !v->is_null()) sha = f.sha256(*v, "engine_sha256");
    const json* source = f.member(j, "", "source_onnx", false);
    if (source && !source->is_null()) {
        f.object(*source, "source_onnx");
        f.string(*f.member(*source, "source_onnx", "path", true), "source_onnx.path");
        if (const json* v = f.member(*source, "source_onnx", "sha256", false); v && !v->is_null())
            f.sha256(*v, "source_onnx.sha256");
    }
    const json* manifest = source && source->is_object() ? f.member(*source, "source_onnx", "manifest", false) : nullptr;
    if (!manifest || !manifest->is_object())
        throw Error(Error::Code::BadArtifact, where + " does not carry its source ONNX manifest (preprocessing, "
                                                      "labels); build the engine from a `dnx export`ed ONNX");
    e.manifest = parse_manifest(manifest->dump(), where, "source_onnx.manifest");
    e.manifest.artifact = "tensorrt-engine";
    if (!precision.empty()) e.manifest.precision = precision;
    e.manifest.sha256 = sha;
    e.manifest.path = where;
    return e;
}

const std::vector<std::pair<int, int>>& version_compat_across_majors() {
    static const std::vector<std::pair<int, int>> pairs{{8, 10}, {10, 11}};
    return pairs;
}

std::string sha256_hex(const std::string& bytes) {
    // OpenSSL's EVP digest: a maintained SHA-256 rather than a hand-rolled one.
    const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), digest, &size) != 1)
        throw Error(Error::Code::Backend, "OpenSSL could not compute a SHA-256 digest");
    static const char digits[] = "0123456789abcdef";
    std::string hex;
    for (unsigned int i = 0; i < size; ++i) {
        hex += digits[digest[i] >> 4];
        hex += digits[digest[i] & 0xf];
    }
    return hex;
}

void check_engine_digest(const EngineManifest& e, const std::string& sha256, const std::string& engine_name) {
    const std::string& expected = e.manifest.sha256;
    if (expected.empty() || expected == sha256) return;
    refuse(engine_name + " does not match its manifest (sha256 " + sha256.substr(0, 12) + " vs " +
           expected.substr(0, 12) + "): the engine was replaced without its sidecar; rebuild it on this machine "
           "with `" + e.build_command + "`");
}

void check_engine_compatible(const EngineManifest& e, const EngineFacts& here, const std::string& engine_name) {
    std::vector<std::string> reasons;
    // Python compares every number of the version string; the C++ runtime knows
    // major.minor.patch of the loaded library, so three parts are compared here.
    const auto built = version_tuple(e.tensorrt_version, 3), now = version_tuple(here.tensorrt_version, 3);
    if (e.version_compat) {
        // NVIDIA's engine-compatibility page: later releases of the same major and, across majors, only
        // the pairs of version_compat_across_majors(); never an older runtime.
        bool across = false, other_major = built.empty() || now.empty() || built[0] != now[0];
        std::string later;
        for (const auto& pair : version_compat_across_majors()) {
            if (built.empty() || pair.first != built[0]) continue;
            later += (later.empty() ? "" : " or ") + std::to_string(pair.second) + ".x";
            across = across || (!now.empty() && pair.second == now[0]);
        }
        if (now < built || (other_major && !across))
            reasons.push_back("it is version-compatible only with TensorRT " +
                              (built.empty() ? std::string("?") : std::to_string(built[0])) + ".x from " +
                              e.tensorrt_version + " on" + (later.empty() ? "" : " and TensorRT " + later));
    } else if (built != now) {
        reasons.push_back("TensorRT versions differ (engines are tied to the exact version unless built with "
                          "--version-compat)");
    }
    if (e.hardware_compat == "ampere+") {
        if (cc_tuple(here.compute_capability) < std::make_pair(8, 0))
            reasons.push_back("it was built for Ampere or newer GPUs (--hardware-compat ampere+) and this GPU is older");
    } else if (cc_tuple(here.compute_capability) != cc_tuple(e.compute_capability)) {
        reasons.push_back("GPU architectures differ (build with --hardware-compat ampere+ for an engine that runs on "
                          "every Ampere-or-newer GPU)");
    }
    if (reasons.empty()) return;
    std::string joined;
    for (const auto& r : reasons) joined += (joined.empty() ? "" : "; ") + r;
    refuse(engine_name + " was built with " + describe(e.tensorrt_version, e.compute_capability, e.gpu_name) +
           "; this machine has " + describe(here.tensorrt_version, here.compute_capability, here.gpu_name) + ": " +
           joined + "; rebuild it on this machine with `" + e.build_command + "`");
}

}  // namespace detail
}  // namespace dnx
