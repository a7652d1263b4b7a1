// Reading the manifest dnx writes next to (and into) every artifact; see dnx/schemas/manifest.py.
// Only the fields the runtime needs are read; each is checked so a hand-edited or foreign JSON
// fails here with its field named, not later with a shape error.
#include "internal.hpp"

#include <cmath>
#include <fstream>
#include <iterator>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

namespace dnx {
namespace detail {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& where, const std::string& what) {
    throw Error(Error::Code::BadArtifact, where + ": " + what + "; re-export the model with `dnx export`");
}

const json& field(const json& obj, const char* key, const std::string& where) {
    auto it = obj.find(key);
    if (it == obj.end()) bad(where, std::string("manifest has no \"") + key + "\" field");
    return *it;
}

Interpolation interpolation_of(const std::string& name, const std::string& where) {
    if (name == "bilinear") return Interpolation::Bilinear;
    if (name == "bicubic") return Interpolation::Bicubic;
    if (name == "nearest") return Interpolation::Nearest;
    bad(where, "unknown interpolation \"" + name + "\" (expected bilinear, bicubic or nearest)");
}

// JSON equality with numbers compared by value (1 == 1.0), as Python compares the parsed entries.
bool same_value(const json& a, const json& b) {
    if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
    if (a.is_array() && b.is_array()) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (!same_value(a[i], b[i])) return false;
        return true;
    }
    if (a.is_object() && b.is_object()) {
        if (a.size() != b.size()) return false;
        for (auto it = a.begin(); it != a.end(); ++it)
            if (!b.contains(it.key()) || !same_value(it.value(), b[it.key()])) return false;
        return true;
    }
    return a == b;
}

}  // namespace

std::string read_file(const std::string& path) { return read_file(path, std::uint64_t{1} << 32); }

std::string read_file(const std::string& path, std::uint64_t max_bytes) {
    // A regular file of known size only: a FIFO, a device (/dev/zero) or a folder named as a manifest
    // or an engine would otherwise be read without end, or fail later with a misleading message.
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw Error(Error::Code::NotFound, "cannot open " + path + ": no such file");
    if (!S_ISREG(st.st_mode))
        throw Error(Error::Code::BadArtifact, path + " is not a regular file (a folder, device or pipe)");
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes)
        throw Error(Error::Code::BadArtifact, path + " is " + std::to_string(st.st_size) + " bytes, more than the " +
                                                  std::to_string(max_bytes) + " a dnx file of its kind can be");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(Error::Code::NotFound, "cannot open " + path + ": not readable");
    std::string text(static_cast<std::size_t>(st.st_size), '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    return text;
}

bool file_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string sidecar_path(const std::string& path) { return path + ".json"; }

void check_certified(const Manifest& m, const Options& options, const std::string& path) {
    if (options.allow_unverified || m.certificate_verdict == "passed") return;
    const std::string why = m.certificate_verdict.empty()
                                ? "it carries no parity certificate (made by an older dnx, or verification was skipped)"
                                : "its recorded verification " + m.certificate_verdict +
                                      (m.certificate_summary.empty() ? "" : " (" + m.certificate_summary + ")");
    throw Error(Error::Code::Unverified, path + " is refused: " + why + "; re-create it with dnx (export, convert, "
                                                "calibrate, build), or load it anyway with Options::allow_unverified");
}

Manifest parse_manifest(const std::string& json_text, const std::string& where) {
    json j;
    try {
        j = json::parse(json_text);
    } catch (const json::exception& e) {
        bad(where, std::string("manifest is not valid JSON (") + e.what() + ")");
    }
    if (!j.is_object() || j.value("schema", std::string()) != "dnx.manifest/1")
        bad(where, "not a dnx manifest (schema \"dnx.manifest/1\" expected)");
    Manifest m;
    m.path = where;
    try {
        m.artifact = j.value("artifact", std::string("onnx"));
        m.precision = field(j, "precision", where).get<std::string>();
        m.sha256 = j.value("sha256", std::string());
        const json& input = field(j, "input", where);
        m.input_name = field(input, "name", where).get<std::string>();
        if (input.value("layout", std::string("NCHW")) != "NCHW")
            bad(where, "input layout " + input["layout"].get<std::string>() + " is not supported (NCHW expected)");
        if (input.value("dtype", std::string("float32")) != "float32")
            bad(where, "input dtype " + input["dtype"].get<std::string>() + " is not supported (float32 expected)");
        for (const json& d : field(input, "shape", where)) m.input_shape.push_back(d.is_number_integer() ? d.get<std::int64_t>() : -1);
        if (m.input_shape.size() != 4) bad(where, "input shape must have 4 dimensions (NCHW)");
        if (j.contains("output")) m.output_name = j["output"].value("name", std::string());

        const json& pre = field(j, "preprocess", where);
        Preprocess& p = m.preprocess;
        p.image_size = field(pre, "image_size", where).get<int>();
        p.resize_size = field(pre, "resize_size", where).get<int>();
        p.in_channels = field(pre, "in_channels", where).get<int>();
        p.mean = field(pre, "mean", where).get<std::vector<float>>();
        p.std = field(pre, "std", where).get<std::vector<float>>();
        p.interpolation = interpolation_of(pre.value("interpolation", std::string("bilinear")), where);
        const std::string decode = pre.value("decode", std::string("exact"));  // absent: made before the mode
        if (decode != "exact" && decode != "fast") bad(where, "unknown decode \"" + decode + "\" (expected exact or fast)");
        p.decode = decode == "fast" ? Decode::Fast : Decode::Exact;
        const json& names = field(j, "labels", where).value("names", json());
        if (!names.is_null()) m.labels = names.get<std::vector<std::string>>();
        if (m.labels.empty() && j.contains("output") && j["output"].contains("shape") &&
            j["output"]["shape"].size() == 2 && j["output"]["shape"][1].is_number_integer()) {
            // no names (e.g. random-init ImageNet models): classes are named by index, as Python does
            const int classes = j["output"]["shape"][1].get<int>();
            for (int i = 0; i < classes; ++i) m.labels.push_back(std::to_string(i));
        }
        const json& cert = j.value("certificate", json::object());
        if (cert.is_object() && cert.value("schema", std::string()) == "dnx.certificate/1") {
            m.certificate_verdict = cert.value("verdict", std::string("unknown"));
            if (cert.contains("summary") && cert["summary"].is_string()) m.certificate_summary = cert["summary"];
            // The certificate records the preprocessing it was checked with (dnx/schemas/certificate.py): an
            // edited preprocess entry voids it, as an edited graph does.
            if (cert.contains("preprocess") && !same_value(cert["preprocess"], pre)) {
                m.certificate_verdict = "no longer holds";
                m.certificate_summary = "the manifest's preprocess entry differs from the one it was verified with";
            }
        }
    } catch (const json::exception& e) {
        bad(where, std::string("manifest field has the wrong type (") + e.what() + ")");
    }
    const Preprocess& p = m.preprocess;
    if (p.in_channels != 1 && p.in_channels != 3) bad(where, "in_channels must be 1 or 3");
    if (p.image_size <= 0 || p.resize_size <= 0) bad(where, "image_size and resize_size must be positive");
    if (p.mean.size() != static_cast<std::size_t>(p.in_channels) || p.std.size() != p.mean.size())
        bad(where, "mean and std need one value per input channel");
    for (float s : p.std)
        if (!(s > 0.0f) || !std::isfinite(s)) bad(where, "std values must be positive and finite");
    // pixels are scaled to [0, 1] before normalising: a mean outside was written for 0-255 pixels
    for (float v : p.mean)
        if (!(v >= 0.0f && v <= 1.0f)) bad(where, "mean values must be within [0, 1] (pixels are scaled to [0, 1] first)");
    if (m.input_shape[1] != p.in_channels || m.input_shape[2] != p.image_size || m.input_shape[3] != p.image_size)
        bad(where, "input shape does not match the preprocess block (channels / image_size)");
    if (m.labels.empty()) bad(where, "manifest has neither label names nor an output shape to count classes");
    return m;
}

}  // namespace detail
}  // namespace dnx
