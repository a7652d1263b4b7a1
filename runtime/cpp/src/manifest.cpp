// Reading the manifest dnx writes next to (and into) every artifact; see dnx/schemas/manifest.py and
// its JSON Schema dnx/schemas/json/manifest.schema.json. Only the fields the runtime needs are read;
// each is checked with the schema's rules so a hand-edited or foreign JSON fails here with its field
// named, not later with a shape error (ctest ManifestSchema.* holds this parser to the schema).
#include "internal.hpp"
#include "json_fields.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <iterator>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

namespace dnx {
namespace detail {
namespace {

using nlohmann::json;

const char* const kHint = "re-export the model with `dnx export`";

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

namespace {

// One input/output dimension: a positive integer or "N" (dynamic batch; -1 here).
std::int64_t dimension(const JsonFields& f, const json& d, const std::string& path) {
    if (d.is_string() && d.get<std::string>() == "N") return -1;
    if (!JsonFields::is_integer(d)) f.bad(path, "must be an integer or one of \"N\", got " + JsonFields::shown(d));
    return f.integer(d, path, 1);
}

void read_input(const JsonFields& f, const json& j, Manifest& m) {
    const json& input = f.object(*f.member(j, "", "input", true), "input");
    m.input_name = f.string(*f.member(input, "input", "name", true), "input.name");
    const json& shape = f.array(*f.member(input, "input", "shape", true), "input.shape");
    if (shape.size() != 4) f.bad("input.shape", "must have 4 dimensions (NCHW), got " + std::to_string(shape.size()));
    for (std::size_t i = 0; i < shape.size(); ++i)
        m.input_shape.push_back(dimension(f, shape[i], "input.shape[" + std::to_string(i) + "]"));
    if (const json* v = f.member(input, "input", "dtype", false); v && !v->is_null()) f.one_of(*v, "input.dtype", {"float32"});
    if (const json* v = f.member(input, "input", "layout", false); v && !v->is_null()) f.one_of(*v, "input.layout", {"NCHW"});
}

// The class count from output.shape (N, classes), or 0 when it does not say.
int read_output(const JsonFields& f, const json& j, Manifest& m) {
    const json* out = f.member(j, "", "output", false);
    if (!out || out->is_null()) return 0;
    f.object(*out, "output");
    m.output_name = f.string(*f.member(*out, "output", "name", true), "output.name");
    if (const json* v = f.member(*out, "output", "dtype", false); v && !v->is_null()) f.one_of(*v, "output.dtype", {"float32"});
    const json* shape = f.member(*out, "output", "shape", false);
    if (!shape || shape->is_null()) return 0;
    f.array(*shape, "output.shape");
    if (shape->empty()) f.bad("output.shape", "needs at least 1 item(s), got 0");
    std::int64_t classes = 0;
    for (std::size_t i = 0; i < shape->size(); ++i) classes = dimension(f, (*shape)[i], "output.shape[" + std::to_string(i) + "]");
    return shape->size() == 2 && classes > 0 ? static_cast<int>(classes) : 0;
}

std::vector<float> per_channel(const JsonFields& f, const json& pre, const char* key, bool positive) {
    const std::string path = std::string("preprocess.") + key;
    const json& values = f.array(*f.member(pre, "preprocess", key, true), path);
    if (values.empty() || values.size() > 3)
        f.bad(path, values.empty() ? "needs at least 1 item(s), got 0" : "takes at most 3 item(s), got " + std::to_string(values.size()));
    std::vector<float> out;
    for (std::size_t i = 0; i < values.size(); ++i) {
        const std::string item = path + "[" + std::to_string(i) + "]";
        const double v = f.number(values[i], item);
        // pixels are scaled to [0, 1] before normalising: a mean outside was written for 0-255 pixels
        if (positive && !(v > 0.0)) f.bad(item, "must be > 0, got " + JsonFields::shown(values[i]));
        if (!positive && v < 0.0) f.bad(item, "must be >= 0, got " + JsonFields::shown(values[i]));
        if (!positive && v > 1.0) f.bad(item, "must be <= 1, got " + JsonFields::shown(values[i]));
        out.push_back(static_cast<float>(v));
    }
    return out;
}

void read_preprocess(const JsonFields& f, const json& j, Preprocess& p) {
    const json& pre = f.object(*f.member(j, "", "preprocess", true), "preprocess");
    static const char* const known[] = {"image_size", "resize_size", "mean", "std", "in_channels", "interpolation", "decode"};
    for (auto it = pre.begin(); it != pre.end(); ++it)  // a key this runtime does not know could change the math
        if (std::find(std::begin(known), std::end(known), it.key()) == std::end(known))
            f.bad("preprocess." + it.key(), "is not a field of this document");
    p.image_size = static_cast<int>(f.integer(*f.member(pre, "preprocess", "image_size", true), "preprocess.image_size", 1));
    p.resize_size = static_cast<int>(f.integer(*f.member(pre, "preprocess", "resize_size", true), "preprocess.resize_size", 1));
    p.mean = per_channel(f, pre, "mean", false);
    p.std = per_channel(f, pre, "std", true);
    const json& channels = *f.member(pre, "preprocess", "in_channels", true);
    if (!JsonFields::is_integer(channels) || (channels.get<double>() != 1.0 && channels.get<double>() != 3.0))
        f.bad("preprocess.in_channels", "must be one of 1, 3, got " + JsonFields::shown(channels));
    p.in_channels = static_cast<int>(channels.get<double>());
    std::string interpolation = "bilinear", decode = "exact";  // absent decode: made before the mode
    if (const json* v = f.member(pre, "preprocess", "interpolation", false))
        interpolation = f.one_of(*v, "preprocess.interpolation", {"bilinear", "bicubic", "nearest"});
    if (const json* v = f.member(pre, "preprocess", "decode", false)) decode = f.one_of(*v, "preprocess.decode", {"exact", "fast"});
    p.interpolation = interpolation == "bicubic" ? Interpolation::Bicubic
                      : interpolation == "nearest" ? Interpolation::Nearest : Interpolation::Bilinear;
    p.decode = decode == "fast" ? Decode::Fast : Decode::Exact;
    for (const char* key : {"mean", "std"}) {
        const std::size_t n = std::string(key) == "mean" ? p.mean.size() : p.std.size();
        if (n != static_cast<std::size_t>(p.in_channels))
            f.bad(std::string("preprocess.") + key, "needs one value per input channel (" + std::to_string(p.in_channels) +
                                                       "), got " + std::to_string(n));
    }
}

void read_labels(const JsonFields& f, const json& j, Manifest& m) {
    const json* labels = f.member(j, "", "labels", false);
    if (!labels || labels->is_null()) return;
    f.object(*labels, "labels");
    if (const json* v = f.member(*labels, "labels", "source", false); v && !v->is_null()) f.string(*v, "labels.source");
    const json* names = f.member(*labels, "labels", "names", false);
    if (!names || names->is_null()) return;
    f.array(*names, "labels.names");
    for (std::size_t i = 0; i < names->size(); ++i)
        m.labels.push_back(f.string((*names)[i], "labels.names[" + std::to_string(i) + "]"));
}

void read_certificate(const JsonFields& f, const json& j, const json& pre, Manifest& m) {
    const json* cert = f.member(j, "", "certificate", false);
    if (!cert || cert->is_null()) return;
    f.object(*cert, "certificate");
    f.one_of(*f.member(*cert, "certificate", "schema", true), "certificate.schema", {"dnx.certificate/1"});
    m.certificate_verdict = f.one_of(*f.member(*cert, "certificate", "verdict", true), "certificate.verdict", {"passed", "failed"});
    f.sha256(*f.member(*cert, "certificate", "content_sha256", true), "certificate.content_sha256");
    if (const json* v = f.member(*cert, "certificate", "summary", false); v && !v->is_null())
        m.certificate_summary = f.string(*v, "certificate.summary");
    const json* certified = f.member(*cert, "certificate", "preprocess", false);
    if (!certified || certified->is_null()) return;
    f.object(*certified, "certificate.preprocess");
    // The certificate records the preprocessing it was checked with (dnx/schemas/certificate.py): an
    // edited preprocess entry voids it, as an edited graph does.
    if (!same_value(*certified, pre)) {
        m.certificate_verdict = "no longer holds";
        m.certificate_summary = "the manifest's preprocess entry differs from the one it was verified with";
    }
}

}  // namespace

bool is_engine_path(const std::string& path) {
    const auto dot = path.find_last_of("./");
    if (dot == std::string::npos || path[dot] != '.') return false;
    std::string suffix = path.substr(dot);
    for (char& c : suffix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return suffix == ".engine" || suffix == ".plan" || suffix == ".trt";  // ENGINE_SUFFIXES in Python
}

Manifest parse_manifest(const std::string& json_text, const std::string& where, const std::string& field_prefix) {
    const JsonFields f(where, kHint, field_prefix);
    json j;
    try {
        j = json::parse(json_text);
    } catch (const json::exception& e) {
        f.bad("", std::string("is not valid JSON (") + e.what() + ")");
    }
    if (!j.is_object()) f.bad("", "is not a dnx manifest (a JSON " + std::string(j.type_name()) + ", not an object)");
    const json* schema = f.member(j, "", "schema", true);
    if (!schema->is_string() || schema->get<std::string>() != "dnx.manifest/1")
        f.bad("schema", "must be \"dnx.manifest/1\" (not a dnx manifest), got " + JsonFields::shown(*schema));
    Manifest m;
    m.path = where;
    m.precision = f.one_of(*f.member(j, "", "precision", true), "precision", {"fp32", "fp16", "int8", "best"});
    m.artifact = "onnx";
    if (const json* v = f.member(j, "", "artifact", false); v && !v->is_null())
        m.artifact = f.one_of(*v, "artifact", {"onnx", "onnx-fp16", "onnx-qdq"});
    read_input(f, j, m);
    const int classes = read_output(f, j, m);
    read_preprocess(f, j, m.preprocess);
    read_labels(f, j, m);
    read_certificate(f, j, j["preprocess"], m);
    if (const json* v = f.member(j, "", "sha256", false); v && !v->is_null()) m.sha256 = f.sha256(*v, "sha256");

    const Preprocess& p = m.preprocess;
    const auto& s = m.input_shape;
    if ((s[1] != -1 && s[1] != p.in_channels) || (s[2] != -1 && s[2] != p.image_size) || (s[3] != -1 && s[3] != p.image_size))
        f.bad("input.shape", "does not match the preprocess entry (" + std::to_string(p.in_channels) + " channels, " +
                                 std::to_string(p.image_size) + "x" + std::to_string(p.image_size) + ")");
    if (m.labels.empty())  // no names (e.g. random-init ImageNet models): classes are named by index, as Python does
        for (int i = 0; i < classes; ++i) m.labels.push_back(std::to_string(i));
    if (m.labels.empty()) f.bad("", "manifest has neither label names nor an output shape to count classes");
    return m;
}

}  // namespace detail
}  // namespace dnx
