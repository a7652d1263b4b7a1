// dnx-classify MODEL IMAGE... : top-5 and stage timings per image.
// dnx-classify --bench MODEL IMAGE... : latency of end-to-end (decode -> preprocess -> infer ->
// top-k) and of bare inference on the same artifact, with `dnx bench`'s statistics (warm-up, then
// median/p90/p99 as numpy's linear percentiles, images/s), as one JSON object on stdout.
#include <dnx/runtime.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// Larger files are refused before they are read: no photo is this big, and a FIFO or /dev/zero
// named as an image would otherwise be read without end.
constexpr std::uintmax_t kMaxImageBytes = 256u << 20;

[[noreturn]] void usage_error(const std::string& message) {
    throw dnx::Error(dnx::Error::Code::InvalidArgument, message + "; see dnx-classify --help");
}

// The value of a numeric option, checked whole and against its range, so that the std::stoi/stod
// that read it cannot fail or wrap; other options' values pass through. --top is checked against
// the model's classes once it is loaded (Classifier::classify).
std::string checked_value(const std::string& name, const std::string& text) {
    struct Range { const char* name; double lo, hi; bool integer; };
    static const Range ranges[] = {{"--top", 1, 100000, true}, {"--threads", 0, 1024, true},
                                   {"--batch", 1, 4096, true}, {"--warmup", 0, 3600, false},
                                   {"--duration", 0.001, 3600, false}};
    for (const Range& r : ranges) {
        if (name != r.name) continue;
        double v = 0;
        bool whole = false;
        if (r.integer) {
            long long n = 0;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
            whole = ec == std::errc() && end == text.data() + text.size() && !text.empty();
            v = static_cast<double>(n);
        } else {
            try {
                std::size_t used = 0;
                v = std::stod(text, &used);
                whole = used == text.size() && std::isfinite(v);
            } catch (const std::exception&) {
                whole = false;
            }
        }
        if (!whole || v < r.lo || v > r.hi) {
            std::ostringstream range;
            range << r.lo << " to " << r.hi;
            usage_error(name + (r.integer ? " takes an integer from " : " takes seconds from ") + range.str() +
                        ", got '" + text + "'");
        }
    }
    return text;
}

// A path the tool will read: a regular file (not a folder, FIFO or device) of at most max_bytes.
void check_regular_file(const std::string& path, const char* what, std::uintmax_t max_bytes) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status))
        throw dnx::Error(dnx::Error::Code::NotFound, std::string(what) + " " + path + " does not exist");
    if (!std::filesystem::is_regular_file(status))
        throw dnx::Error(dnx::Error::Code::InvalidArgument,
                         std::string(what) + " " + path + " is not a regular file (a folder, device or pipe)");
    const auto size = std::filesystem::file_size(path, ec);
    if (!ec && size > max_bytes)
        throw dnx::Error(dnx::Error::Code::InvalidArgument, std::string(what) + " " + path + " is " +
                                                                std::to_string(size >> 20) + " MiB; the limit is " +
                                                                std::to_string(max_bytes >> 20) + " MiB");
}

const char* kUsage =
    "usage: dnx-classify [--top K] [--threads N] [--precision fp32|bf16] [--allow-unverified] MODEL IMAGE...\n"
    "       dnx-classify --bench [--batch B] [--warmup S] [--duration S] [--threads N] [--allow-unverified] MODEL IMAGE...\n"
    "       --decode exact|fast: JPEG decode (default: the manifest's); --no-exif: ignore EXIF orientation\n"
    "MODEL is a dnx ONNX file (with its .json sidecar or embedded manifest) or a dnx TensorRT engine.\n"
    "--precision: fp32 (default) runs the file as written; bf16 runs its float ops in BF16 (OpenVINO, CPUs\n"
    "with AVX-512 BF16 or AMX; Python checks that run's parity at load: dnx.load(..., precision=\"bf16\")).\n";

struct Args {
    bool bench = false, allow_unverified = false;
    int top = 5, threads = 0, batch = 1;
    double warmup_s = 1.0, duration_s = 5.0;
    std::string model, decode, precision = "f32";
    bool exif = true;
    std::vector<std::string> images;
};

Args parse(int argc, char** argv) {
    Args a;
    std::vector<std::string> rest;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&](const char* name) -> std::string {
            if (i + 1 >= argc) usage_error(std::string(name) + " needs a value");
            return checked_value(name, argv[++i]);
        };
        if (arg == "--bench") a.bench = true;
        else if (arg == "--allow-unverified") a.allow_unverified = true;
        else if (arg == "--decode") a.decode = value("--decode");
        else if (arg == "--no-exif") a.exif = false;
        else if (arg == "--top") a.top = std::stoi(value("--top"));
        else if (arg == "--threads") a.threads = std::stoi(value("--threads"));
        else if (arg == "--precision") {
            const std::string p = value("--precision");
            if (p != "fp32" && p != "bf16")
                throw dnx::Error(dnx::Error::Code::InvalidArgument, "--precision takes fp32 or bf16, got " + p);
            a.precision = p == "fp32" ? "f32" : p;
        } else if (arg == "--batch") a.batch = std::stoi(value("--batch"));
        else if (arg == "--warmup") a.warmup_s = std::stod(value("--warmup"));
        else if (arg == "--duration") a.duration_s = std::stod(value("--duration"));
        else if (arg == "-h" || arg == "--help") { std::cout << kUsage; std::exit(0); }
        else if (!arg.empty() && arg[0] == '-') usage_error("unknown option " + arg);
        else rest.push_back(arg);
    }
    if (rest.size() < 2) usage_error("need a MODEL and at least one IMAGE");
    a.model = rest[0];
    a.images.assign(rest.begin() + 1, rest.end());
    // every path is checked before the model loads: a bad one fails fast, and nothing unbounded is read
    check_regular_file(a.model, "MODEL", std::numeric_limits<std::uintmax_t>::max());
    for (const auto& image : a.images) check_regular_file(image, "IMAGE", kMaxImageBytes);
    return a;
}

double percentile(std::vector<double> v, double p) {  // numpy's default (linear) percentile
    std::sort(v.begin(), v.end());
    const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
    const auto lo = static_cast<std::size_t>(pos);
    const std::size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// Run `step` for warmup_s, then for duration_s; per-call milliseconds of the measured part.
template <typename F>
std::vector<double> measure(F&& step, double warmup_s, double duration_s) {
    auto seconds_since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
    const auto warm = Clock::now();
    while (seconds_since(warm) < warmup_s) step();
    std::vector<double> ms;
    const auto start = Clock::now();
    while (seconds_since(start) < duration_s || ms.size() < 5) {
        const auto t = Clock::now();
        step();
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
    }
    return ms;
}

std::string stats_json(const std::vector<double>& ms, int batch) {
    const double median = percentile(ms, 50);
    std::ostringstream o;
    o << "{\"n\": " << ms.size() << ", \"median_ms\": " << median << ", \"p90_ms\": " << percentile(ms, 90)
      << ", \"p99_ms\": " << percentile(ms, 99) << ", \"min_ms\": " << *std::min_element(ms.begin(), ms.end())
      << ", \"images_per_s\": " << 1000.0 * batch / median << "}";
    return o.str();
}

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) >= 0x20) out += c;
    }
    return out + "\"";
}

// CPU model and the ISA flags that decide OpenVINO's kernels, for labelling every number.
std::pair<std::string, std::string> cpu_info() {
    std::ifstream in("/proc/cpuinfo");
    std::string line, model, flags;
    while (std::getline(in, line) && (model.empty() || flags.empty())) {
        auto value = [&] { return line.substr(line.find(':') + 2); };
        if (model.empty() && line.rfind("model name", 0) == 0) model = value();
        if (flags.empty() && line.rfind("flags", 0) == 0) flags = value();
    }
    std::set<std::string> keep;
    std::istringstream words(flags);
    for (std::string w; words >> w;)
        if (w == "avx2" || w == "fma" || w.rfind("avx512", 0) == 0 || w.rfind("amx", 0) == 0 || w == "avx_vnni") keep.insert(w);
    std::string isa;
    for (const auto& w : keep) isa += (isa.empty() ? "" : " ") + w;
    return {model, isa};
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw dnx::Error(dnx::Error::Code::NotFound, "cannot open image " + path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int bench(const Args& a, const dnx::Classifier& model) {
    // Encoded bytes are read once: the end-to-end figure covers decode, not disk.
    std::vector<std::vector<std::uint8_t>> files;
    for (const auto& p : a.images) files.push_back(read_bytes(p));
    std::size_t next = 0;
    std::vector<dnx::Image> batch(static_cast<std::size_t>(a.batch));
    std::vector<double> decode_ms, preprocess_ms, infer_ms, postprocess_ms;  // stages of each measured call
    auto end_to_end = [&] {
        const auto t0 = Clock::now();
        for (auto& img : batch) {
            const auto& f = files[next++ % files.size()];
            img = model.decode_image(f.data(), f.size());
        }
        decode_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        dnx::Timings t;
        model.classify(batch, a.top, &t);
        preprocess_ms.push_back(t.preprocess_ms);
        infer_ms.push_back(t.infer_ms);
        postprocess_ms.push_back(t.postprocess_ms);
    };
    const auto& pre = model.manifest().preprocess;
    std::vector<float> input;
    for (int i = 0; i < a.batch; ++i) {
        const auto one = dnx::preprocess(model.decode_image(files[0].data(), files[0].size()), pre);
        input.insert(input.end(), one.begin(), one.end());
    }
    auto bare = [&] { model.logits(input.data(), static_cast<std::size_t>(a.batch)); };
    // interleaved halves so drift on a shared machine hits both
    std::vector<double> e2e = measure(end_to_end, a.warmup_s, a.duration_s / 2);
    for (auto* v : {&decode_ms, &preprocess_ms, &infer_ms, &postprocess_ms}) v->erase(v->begin(), v->end() - e2e.size());
    std::vector<double> inf = measure(bare, a.warmup_s / 2, a.duration_s / 2);
    const auto more_e2e = measure(end_to_end, 0, a.duration_s / 2);
    const auto more_inf = measure(bare, 0, a.duration_s / 2);
    e2e.insert(e2e.end(), more_e2e.begin(), more_e2e.end());
    inf.insert(inf.end(), more_inf.begin(), more_inf.end());
    const auto cpu = cpu_info();
    std::cout << "{\"tool\": \"dnx-classify --bench\", \"model\": " << json_string(a.model)
              << ", \"precision\": " << json_string(model.manifest().precision)
              << ", \"backend\": " << json_string(model.backend_name()) << ", \"batch\": " << a.batch
              << ", \"threads\": " << a.threads << ", \"images\": " << files.size()
              << ", \"cpu\": " << json_string(cpu.first) << ", \"isa\": " << json_string(cpu.second)
              << ", \"decode\": " << json_string(pre.decode == dnx::Decode::Fast ? "fast" : "exact")
              << ", \"end_to_end\": " << stats_json(e2e, a.batch) << ", \"bare_inference\": " << stats_json(inf, a.batch)
              << ", \"stages\": {\"decode\": " << stats_json(decode_ms, a.batch) << ", \"preprocess\": "
              << stats_json(preprocess_ms, a.batch) << ", \"inference\": " << stats_json(infer_ms, a.batch)
              << ", \"postprocess\": " << stats_json(postprocess_ms, a.batch) << "}}\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Args a = parse(argc, argv);
        dnx::Options options;
        options.num_threads = a.threads;
        options.num_requests = 1;
        options.allow_unverified = a.allow_unverified;
        options.decode = a.decode;
        options.exif_orientation = a.exif;
        options.inference_precision = a.precision;
        const dnx::Classifier model = dnx::Classifier::load(a.model, options);
        if (a.bench) return bench(a, model);
        for (const auto& path : a.images) {
            const auto t0 = Clock::now();
            const dnx::Image image = model.read_image(path);
            const double decode_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            dnx::Timings t;
            const dnx::Prediction p = model.classify(image, a.top, &t);
            std::printf("%s (%dx%d)\n", path.c_str(), image.width, image.height);
            for (std::size_t i = 0; i < p.indices.size(); ++i)
                std::printf("  %6.2f%%  %3d  %s\n", 100.0 * p.probabilities[i], p.indices[i], p.labels[i].c_str());
            std::printf("  decode %.2f ms, preprocess %.2f ms, infer %.2f ms, postprocess %.3f ms\n", decode_ms,
                        t.preprocess_ms, t.infer_ms, t.postprocess_ms);
        }
        return 0;
    } catch (const dnx::Error& e) {
        std::fprintf(stderr, "dnx-classify: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {  // a bug or an exhausted resource: still one line
        std::fprintf(stderr, "dnx-classify: %s\n", e.what());
        return 1;
    }
}
