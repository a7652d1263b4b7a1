"""dnx's TensorRT code uses only names that exist in every TensorRT version dnx supports (10.0 to 11.x).

A static check (``ast`` over dnx's source, compared with the names of the compiled bindings of
TensorRT 10.0.1, 10.8.0.43, 10.16.1.11, 11.0.0.114 and 11.4.0.106, committed in
``tests/runtime/tensorrt/tensorrt_api/api_names``): it runs everywhere and needs no TensorRT. A pass means no missing,
removed or unguarded newer name was found; it does not mean the code ran on TensorRT.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "tensorrt_api"))  # test tooling, not part of the package
from trt_api_check import check_files, check_source, collect_uses, dnx_tensorrt_modules, load_api_lists  # noqa: E402
from trt_api_versions import FIRST_IN, REMOVED  # noqa: E402
from dnx.runtime.backends.tensorrt_compat import MIN_VERSION

# The lists are committed with the checker: a missing list is a broken checkout, not a reason to skip.
API_LISTS = load_api_lists()
VERSIONS = ["10.0.1", "10.8.0.43", "10.16.1.11", "11.0.0.114", "11.4.0.106"]


def lists_of(major: int):
    return [api for api in API_LISTS if api.major == major]


def test_lists_cover_every_checked_version_the_oldest_included():
    assert [api.version for api in sorted(API_LISTS, key=lambda a: a.version_tuple)] == VERSIONS


def test_the_oldest_list_is_the_declared_floor():
    """pyproject's ``tensorrt>=10`` extra, compat.MIN_VERSION and the oldest checked bindings agree."""
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    floor = re.search(r'"tensorrt>=([\d.]+)"', pyproject).group(1)
    assert (*map(int, floor.split(".")), 0)[:2] == MIN_VERSION
    assert min(api.version_tuple for api in API_LISTS)[:2] == MIN_VERSION


@pytest.mark.parametrize("name, first", sorted(FIRST_IN.items()))
def test_first_in_table_agrees_with_the_bindings(name, first):
    """Absent from every list older than its first release, present in every list from it on."""
    for api in API_LISTS:
        assert api.has(name) == (api.version_tuple >= first), (name, api.version)


@pytest.mark.parametrize("api", API_LISTS, ids=lambda api: f"tensorrt-{api.version}")
def test_dnx_tensorrt_modules_use_only_names_of(api):
    findings = check_files(dnx_tensorrt_modules(), [api])
    assert not findings, "\n".join(map(str, findings))


def test_the_check_sees_dnx_tensorrt_calls():
    """Guards against a vacuous pass: the calls the builder and runner are made of are all collected."""
    uses = {u.name for path in dnx_tensorrt_modules() for u in collect_uses(path.read_text(), str(path))}
    assert {"Builder", "create_network", "OnnxParser", "parse_from_file", "get_error", "node_name",
            "create_builder_config", "create_optimization_profile", "set_shape", "add_optimization_profile",
            "set_memory_pool_limit", "WORKSPACE", "create_timing_cache", "builder_optimization_level",
            "hardware_compatibility_level", "VERSION_COMPATIBLE", "progress_monitor", "build_serialized_network",
            "Runtime", "deserialize_cuda_engine", "num_io_tensors", "get_tensor_profile_shape",
            "create_execution_context", "set_input_shape", "set_tensor_address", "execute_async_v3",
            "create_engine_inspector", "STRONGLY_TYPED"} <= uses


def test_strongly_typed_flag_is_only_used_on_10():
    path = next(p for p in dnx_tensorrt_modules() if p.name == "tensorrt_compat.py")
    uses = [u for u in collect_uses(path.read_text(), str(path)) if u.name == "STRONGLY_TYPED"]
    assert uses and all(v[0] == 10 for u in uses for v in u.versions)


IMPLICIT_QUANTIZATION = '''
def build_int8(trt, logger, network, batches):
    class Calibrator(trt.IInt8EntropyCalibrator2):
        def get_batch(self, names):
            return None

    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = Calibrator()
    return builder.build_serialized_network(network, config)
'''


def test_implicit_quantization_fails_for_11_and_passes_for_10():
    found = {(f.use.dotted, f.reason.split(";")[0]) for f in check_source(IMPLICIT_QUANTIZATION, lists_of(11))}
    assert ("trt.IInt8EntropyCalibrator2", "removed in TensorRT 11") in found
    assert ("BuilderFlag.INT8", "removed in TensorRT 11") in found
    assert ("config.int8_calibrator", "removed in TensorRT 11") in found
    assert not check_source(IMPLICIT_QUANTIZATION, lists_of(10))


def test_builderflag_int8_is_caught_by_the_removed_pairs_not_by_the_flat_list():
    """The README caveat: ``INT8`` is in 11's list (``DataType.INT8`` lives on), so only the explicit
    ``BuilderFlag.INT8`` pair catches the removed flag, and ``DataType.INT8`` stays accepted."""
    api11 = lists_of(11)[-1]
    assert api11.has("INT8") and api11.has("FP16")
    assert ("BuilderFlag", "INT8") in REMOVED[11].pairs
    flag = check_source("def f(trt, config):\n    config.set_flag(trt.BuilderFlag.FP16)\n", [api11])
    assert [f.use.dotted for f in flag] == ["BuilderFlag.FP16"]
    assert not check_source("def f(trt):\n    return trt.DataType.INT8, trt.DataType.HALF\n", [api11])


@pytest.mark.parametrize("guard, else_branch", [
    ("trt_major_version(trt) < 11", False),
    ("not is_trt11(trt)", False),
    ("is_trt11(trt)", True),
    ("major == 10", False),
    ("10 <= major < 11", False),
    ("trt_major_version(trt) >= 11 or use_flags", None),  # not a pure version test: no exemption
])
def test_uses_behind_a_version_guard_are_checked_only_for_that_version(guard, else_branch):
    legacy = "config.set_flag(trt.BuilderFlag.INT8)\n        config.int8_calibrator = calibrator"
    body, orelse = ("pass", legacy) if else_branch else (legacy, "pass")
    source = f'''
def configure(trt, config: trt.IBuilderConfig, calibrator, use_flags):
    major = trt_major_version(trt)
    if {guard}:
        {body}
    else:
        {orelse}
'''
    findings = check_source(source, API_LISTS)
    if else_branch is None:
        assert {f.use.dotted for f in findings} == {"BuilderFlag.INT8", "config.int8_calibrator"}
    else:
        assert not findings, "\n".join(map(str, findings))


def test_a_guard_for_the_wrong_version_still_fails():
    source = "def f(trt, config: trt.IBuilderConfig):\n    if is_trt11(trt):\n        config.int8_calibrator = None\n"
    findings = check_source(source, API_LISTS)
    assert {(f.use.dotted, f.version) for f in findings} == {("config.int8_calibrator", v) for v in VERSIONS[3:]}


def test_objects_are_followed_through_assignments_annotations_and_self():
    source = '''
class Runner:
    def load(self, trt, loaded):
        engine: trt.ICudaEngine = loaded.engine
        self._context = engine.create_execution_context()
        name = str(engine.get_tensor_name(0))
        name.startswith("x")
        loaded.not_tensorrt

    def run(self):
        self._context.execute_async_v3(0)
        self._context.execute_async_v2(0)
        self._context.no_such_method_in_any_version()
'''
    uses = {u.dotted for u in collect_uses(source)}
    assert {"engine.create_execution_context", "engine.get_tensor_name", "_context.execute_async_v3"} <= uses
    assert not any("startswith" in u or "not_tensorrt" in u for u in uses)
    findings = {(f.use.dotted, f.reason.split(";")[0]) for f in check_source(source, API_LISTS)}
    assert findings == {("_context.execute_async_v2", "removed in TensorRT 10"),
                        ("_context.no_such_method_in_any_version", "absent from this version's bindings")}


def test_names_stored_as_the_tail_of_a_longer_string_are_accepted():
    # The linker keeps "INPUT" only inside "CONDITIONAL_INPUT": still a real enum member.
    for api in API_LISTS:
        assert "INPUT" not in api.names and api.has("INPUT")
    assert not check_source("def f(trt):\n    return trt.TensorIOMode.INPUT\n", API_LISTS)


EAGER_HARDWARE_LEVELS = """
def level(trt, choice):
    return {"none": trt.HardwareCompatibilityLevel.NONE,
            "same-cc": trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY}[choice]
"""


def test_the_eager_hardware_level_lookup_of_issue_15_fails_on_10_0_and_10_8():
    findings = check_source(EAGER_HARDWARE_LEVELS, API_LISTS)
    assert {f.use.dotted for f in findings} == {"HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"}
    (finding,) = findings
    assert finding.version == "10.0.1" and "first in TensorRT 10.9" in finding.reason
    assert "trt_version(trt) >= (10, 9)" in finding.reason


@pytest.mark.parametrize("guard, passes", [
    ("trt_version(trt) >= (10, 9)", True),
    ("(10, 9) <= trt_version(trt)", True),
    ("version >= (10, 9, 0)", True),
    ("trt_version(trt) >= (10, 8, 1)", False),  # no list lies in between: the 10.8.x stand-in catches it
    ("trt_version(trt) >= (10, 1)", False),
    ("trt_major_version(trt) >= 10", False),
    ("trt_major_version(trt) >= (10, 9)", False),  # an int against a tuple is no guard
])
def test_a_name_newer_than_the_floor_must_sit_behind_its_version_guard(guard, passes):
    source = f"""
def level(trt):
    version = trt_version(trt)
    if {guard}:
        return trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    return trt.HardwareCompatibilityLevel.NONE
"""
    findings = check_source(source, API_LISTS)
    assert not findings if passes else [f.use.name for f in findings] == ["SAME_COMPUTE_CAPABILITY"], \
        "\n".join(map(str, findings))


def test_dnx_looks_up_same_compute_capability_only_from_10_9():
    path = next(p for p in dnx_tensorrt_modules() if p.name == "tensorrt_compat.py")
    versions = [tuple(int(x) for x in v.split(".")) for v in VERSIONS]
    uses = [u for u in collect_uses(path.read_text(), str(path), versions) if u.name == "SAME_COMPUTE_CAPABILITY"]
    assert uses and all(u.versions == {v for v in versions if v >= (10, 9)} for u in uses)
