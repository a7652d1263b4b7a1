"""Which TensorRT Python names arrived or left in which release: the tables of the static API check.

:mod:`tests/runtime/tensorrt/tensorrt_api/trt_api_check.py` checks dnx's TensorRT code against the bindings'
name lists of every supported version; these tables add what flat name lists cannot say on their own.
"""

from __future__ import annotations

from dataclasses import dataclass

Version = tuple[int, ...]

# Names newer than the oldest supported release (10.0), with the release that brought them (NVIDIA's
# release notes; the bindings lists agree: absent from every older list, present in every newer one).
# A use must sit behind ``if trt_version(trt) >= FIRST_IN[name]:``.
FIRST_IN: dict[str, Version] = {
    "device_memory_size_v2": (10, 1),
    "get_device_memory_size_for_profile_v2": (10, 1),
    "runtime_platform": (10, 3),
    "tiling_optimization_level": (10, 8),
    "SAME_COMPUTE_CAPABILITY": (10, 9),
}


@dataclass(frozen=True)
class Removed:
    names: frozenset[str]
    pairs: frozenset[tuple[str, str]]  # (owner attribute, name), e.g. ("BuilderFlag", "FP16")


# Names a major release removed (NVIDIA's migration guides): the lists are flat, so ``BuilderFlag.FP16``
# (gone in 11) is checked as an (owner, name) pair while ``DataType.FP16`` stays.
REMOVED = {
    10: Removed(
        names=frozenset({"build_engine", "execute_async_v2", "num_bindings", "get_binding_shape", "get_binding_name",
                         "get_binding_dtype", "get_binding_index", "binding_is_input", "set_binding_shape",
                         "max_workspace_size"}),
        pairs=frozenset()),
    11: Removed(
        names=frozenset({"IInt8Calibrator", "IInt8EntropyCalibrator", "IInt8EntropyCalibrator2",
                         "IInt8MinMaxCalibrator", "IInt8LegacyCalibrator", "CalibrationAlgoType", "int8_calibrator",
                         "set_calibration_profile", "get_calibration_profile", "quantization_flags",
                         "QuantizationFlag", "platform_has_fast_fp16", "platform_has_fast_int8",
                         "IAlgorithmSelector", "algorithm_selector", "EXPLICIT_BATCH"}),
        pairs=frozenset(("BuilderFlag", flag) for flag in (
            "FP16", "INT8", "BF16", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
            "PREFER_PRECISION_CONSTRAINTS"))),
}
