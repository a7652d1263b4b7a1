// Issue 22, #8 and #18: an edited manifest is refused in one line when the model loads, with the
// rules Python's reader shares (dnx/schemas/manifest.py); the certificate covers the preprocessing; a
// manifest or engine path that is not a regular file is refused, never read without end.
#include "fixtures.hpp"

#include <dnx/runtime.hpp>

#include "internal.hpp"

#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

namespace {

using dnx::Error;
using nlohmann::json;

// The fixture model with its sidecar edited by `edit`, loaded with Classifier::load: the error's code
// and message (which must be one line), or Backend/"loaded" when it loaded.
std::pair<Error::Code, std::string> load_edited(const std::string& name, const std::function<void(json&)>& edit) {
    const std::string dir = ::testing::TempDir() + "edited_" + name;
    std::filesystem::create_directories(dir);
    const std::string model = dir + "/m.onnx";
    dnx_test::write_bytes(model, dnx_test::read_bytes(dnx_test::fixture("fp32.onnx")));
    json side = json::parse(dnx::detail::read_file(dnx_test::fixture("fp32.onnx.json")));
    edit(side);
    const std::string text = side.dump();
    dnx_test::write_bytes(model + ".json", std::vector<std::uint8_t>(text.begin(), text.end()));
    std::pair<Error::Code, std::string> result{Error::Code::Backend, "loaded"};
    try {
        dnx::Classifier::load(model);
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
        result = {e.code(), e.what()};
    }
    std::filesystem::remove_all(dir);
    return result;
}

void expect(const std::pair<Error::Code, std::string>& got, Error::Code code, const std::string& needle) {
    EXPECT_EQ(got.first, code) << got.second;
    EXPECT_NE(got.second.find(needle), std::string::npos) << got.second;
}

TEST(ManifestRules, EditedPreprocessingIsRefusedInOneLineAtLoad) {
    DNX_REQUIRE_FIXTURES();
    expect(load_edited("std0", [](json& j) { j["preprocess"]["std"] = {0.0}; }), Error::Code::BadArtifact,
           "preprocess.std[0] must be > 0");
    expect(load_edited("mean100", [](json& j) { j["preprocess"]["mean"] = {100.0}; }), Error::Code::BadArtifact,
           "preprocess.mean[0] must be <= 1");
    expect(load_edited("lanczos", [](json& j) { j["preprocess"]["interpolation"] = "lanczos"; }),
           Error::Code::BadArtifact, "preprocess.interpolation must be one of \"bilinear\", \"bicubic\", \"nearest\", got \"lanczos\"");
    expect(load_edited("rgb", [](json& j) {
               j["preprocess"]["in_channels"] = 3;
               j["preprocess"]["mean"] = {0.5, 0.5, 0.5};
               j["preprocess"]["std"] = {0.5, 0.5, 0.5};
           }),
           Error::Code::BadArtifact, "input.shape does not match the preprocess entry (3 channels, 28x28)");
    expect(load_edited("counts", [](json& j) { j["preprocess"]["mean"] = {0.1, 0.2}; }), Error::Code::BadArtifact,
           "one value per input channel");
    expect(load_edited("labels", [](json& j) { j["labels"]["names"] = {"a", "b", "c"}; }),
           Error::Code::ManifestMismatch, "3 labels");
}

TEST(ManifestRules, AValidButEditedPreprocessVoidsTheCertificate) {
    DNX_REQUIRE_FIXTURES();
    // A plausible edit (another mean) that every field rule accepts: only the certificate catches it.
    auto certify = [](json& j) { j["certificate"]["preprocess"] = j["preprocess"]; };
    auto certify_then_edit = [&](json& j) {
        certify(j);
        j["preprocess"]["mean"] = {0.25};
    };
    expect(load_edited("voided", certify_then_edit), Error::Code::Unverified,
           "differs from the one it was verified with");
    expect(load_edited("kept", certify), Error::Code::Backend, "loaded");
    expect(load_edited("ints", [&](json& j) {  // 28 and 28.0 are the same number
               certify(j);
               j["certificate"]["preprocess"]["image_size"] = 28.0;
           }),
           Error::Code::Backend, "loaded");
}

TEST(ManifestRules, ANonRegularOrOversizedFileIsRefusedNotRead) {
    const std::string dir = ::testing::TempDir() + "non_regular";
    std::filesystem::create_directories(dir + "/m.onnx.json");  // a folder where a sidecar should be
    for (const std::string& path : {dir + "/m.onnx.json", std::string("/dev/zero")}) {
        try {
            dnx::detail::read_file(path);  // /dev/zero would never end if read as a stream
            ADD_FAILURE() << path << " was read";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), Error::Code::BadArtifact);
            EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
        }
    }
    const std::string big = dir + "/big.json";
    dnx_test::write_bytes(big, std::vector<std::uint8_t>(2048, ' '));
    EXPECT_THROW(dnx::detail::read_file(big, 1024), Error);
    EXPECT_EQ(dnx::detail::read_file(big, 2048).size(), 2048u);
    EXPECT_EQ(dnx::detail::read_file(big).size(), 2048u);
    std::filesystem::remove_all(dir);
}

}  // namespace
