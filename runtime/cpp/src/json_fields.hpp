// Checked reads of JSON fields for the manifest parsers, with Python's wording: a bad field is one
// Error line "WHERE: FIELD PROBLEM; HINT" naming the field by its dotted path (preprocess.std[0]), as
// dnx/core/documents.py names it. The rules themselves are dnx/schemas/json/*.schema.json's; the
// ctest ManifestSchema.* checks this parser accepts exactly the fixtures that schema accepts.
#pragma once

#include "dnx/runtime.hpp"

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

#include <nlohmann/json.hpp>

namespace dnx {
namespace detail {

class JsonFields {
public:
    using json = nlohmann::json;

    // `prefix`: where the object read sits in its file (source_onnx.manifest), for the field names.
    JsonFields(std::string where, std::string hint, std::string prefix = "")
        : where_(std::move(where)), hint_(std::move(hint)), prefix_(std::move(prefix)) {}

    [[noreturn]] void bad(const std::string& path, const std::string& problem) const {
        const std::string field = prefix_.empty() ? path : path.empty() ? prefix_ : prefix_ + "." + path;
        throw Error(Error::Code::BadArtifact,
                    where_ + ": " + (field.empty() ? "" : field + " ") + problem + (hint_.empty() ? "" : "; " + hint_));
    }

    static std::string shown(const json& v) {
        const std::string s = v.dump();
        return s.size() <= 60 ? s : s.substr(0, 57) + "...";
    }

    static std::string join(const std::string& path, const std::string& key) {
        return path.empty() ? key : path + "." + key;
    }

    // The member `key` of `obj` (an object), or nullptr when absent; a required absent one is refused.
    const json* member(const json& obj, const std::string& path, const char* key, bool required) const {
        auto it = obj.find(key);
        if (it == obj.end()) {
            if (required) bad(join(path, key), "is missing");
            return nullptr;
        }
        return &*it;
    }

    const json& object(const json& v, const std::string& path) const {
        if (!v.is_object()) bad(path, "must be an object, got " + shown(v));
        return v;
    }

    const json& array(const json& v, const std::string& path) const {
        if (!v.is_array()) bad(path, "must be an array, got " + shown(v));
        return v;
    }

    std::string string(const json& v, const std::string& path) const {
        if (!v.is_string()) bad(path, "must be a string, got " + shown(v));
        return v.get<std::string>();
    }

    // JSON does not tell 1 from 1.0: an integral number is an integer (as JSON Schema's "integer").
    static bool is_integer(const json& v) {
        if (v.is_number_integer()) return true;
        if (!v.is_number_float()) return false;
        const double d = v.get<double>();
        return std::isfinite(d) && std::floor(d) == d;
    }

    std::int64_t integer(const json& v, const std::string& path, std::int64_t minimum) const {
        if (!is_integer(v)) bad(path, "must be an integer, got " + shown(v));
        const double d = v.get<double>();
        if (d < static_cast<double>(minimum)) bad(path, "must be >= " + std::to_string(minimum) + ", got " + shown(v));
        if (d > 2147483647.0) bad(path, "must be <= 2147483647, got " + shown(v));
        return static_cast<std::int64_t>(d);
    }

    double number(const json& v, const std::string& path) const {
        if (!v.is_number()) bad(path, "must be a number, got " + shown(v));
        return v.get<double>();
    }

    bool boolean(const json& v, const std::string& path) const {
        if (!v.is_boolean()) bad(path, "must be true or false, got " + shown(v));
        return v.get<bool>();
    }

    std::string one_of(const json& v, const std::string& path, std::initializer_list<const char*> allowed) const {
        std::string list;
        for (const char* a : allowed) {
            if (v.is_string() && v.get<std::string>() == a) return a;
            list += (list.empty() ? "" : ", ") + json(a).dump();
        }
        bad(path, "must be one of " + list + ", got " + shown(v));
    }

    // A lower-case hex sha256, as dnx writes.
    std::string sha256(const json& v, const std::string& path) const {
        const std::string s = string(v, path);
        bool hex = s.size() == 64;
        for (char c : s) hex = hex && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
        if (!hex) bad(path, "must match ^[0-9a-f]{64}$, got " + shown(v));
        return s;
    }

private:
    std::string where_, hint_, prefix_;
};

}  // namespace detail
}  // namespace dnx
