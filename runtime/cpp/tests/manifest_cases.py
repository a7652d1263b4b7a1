"""Valid and invalid manifests for the C++ parser, judged by the JSON Schema and Python's reader.

    python runtime/cpp/tests/manifest_cases.py OUT_DIR     (make_fixtures.py calls write_cases too)

Writes OUT_DIR/manifest_cases/{onnx,engine}/NAME.json and OUT_DIR/manifest_cases/index.json. Each case
is a complete manifest with at most one edit to a field libdnx_runtime reads (the fields it ignores are
the schema's business alone). Before anything is written, every case is judged three ways and the
judgements must agree with the case's expectation: the checked-in JSON Schema
(dnx/schemas/json/*.schema.json), Python's reader (ArtifactManifest / EngineManifest; its ``check``
rules go beyond what JSON Schema states, marked ``rule``), and for invalid ones the field Python's
error names. The ctest ManifestSchema.* (test_manifest_schema.cpp) then requires the C++ parser to
accept exactly the cases marked ``cpp_accepts`` and to name the field in its error for the others.

``cpp_accepts`` is ``valid`` and what the C++ runtime cannot run without: an ONNX manifest with
``input``, ``preprocess`` and label names or an (N, classes) output shape; an engine manifest whose
``source_onnx.manifest`` is such a manifest (Python loads the same files only when the caller passes
the preprocessing instead).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

from dnx.core.documents import SchemaError
from dnx.schemas.engine_manifest import EngineManifest
from dnx.schemas.jsonschema import load_schema
from dnx.schemas.manifest import ArtifactManifest

SHA = "ab" * 32


def onnx_manifest() -> dict:
    """What `dnx export` writes for a 3-channel ImageNet-style model, with labels and a certificate."""
    pre = {"image_size": 224, "resize_size": 256, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
           "in_channels": 3, "interpolation": "bilinear", "decode": "fast"}
    return {"schema": "dnx.manifest/1", "dnx_version": "0.1.0", "onnx_version": "1.17.0", "python": "3.11.2",
            "torch_version": "2.5.0", "artifact": "onnx", "precision": "fp32",
            "model": {"name": "densenet121", "num_classes": 3}, "weights": {"id": SHA, "path": None},
            "input": {"name": "input", "shape": ["N", 3, 224, 224], "dtype": "float32", "layout": "NCHW"},
            "output": {"name": "logits", "shape": ["N", 3], "dtype": "float32"},
            "preprocess": pre, "labels": {"source": "custom", "names": ["cat", "dog", "fox"]},
            "opset": 17, "forward_form": "incremental",
            "certificate": {"schema": "dnx.certificate/1", "verdict": "passed", "content_sha256": SHA,
                            "preprocess": dict(pre), "reference": {"what": "PyTorch"}, "data": {"images": 9},
                            "cases": {}, "thresholds": {}, "backend": "onnxruntime CPU", "machine": {"cpu": "x"},
                            "at": "2026-01-01T00:00:00+00:00"},
            "sha256": SHA}


def engine_manifest() -> dict:
    return {"schema": "dnx.engine-manifest/1", "artifact": "tensorrt-engine", "dnx_version": "0.1.0",
            "tensorrt_version": "10.8.0.43", "precision": "fp16", "strongly_typed": True,
            "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9", "driver_version": "12.8", "cuda_runtime": "12.4"},
            "hardware_compat": "none", "version_compat": False,
            "batch_profile": {"min_batch": 1, "opt_batch": 8, "max_batch": 32, "shapes": {}},
            "inputs": [{"name": "input", "mode": "input", "shape": [-1, 3, 224, 224], "dtype": "float32"}],
            "outputs": [{"name": "logits", "mode": "output", "shape": [-1, 3], "dtype": "float32"}],
            "build_command": "dnx build m.onnx --precision fp16", "engine_sha256": SHA, "engine_bytes": 1000,
            "source_onnx": {"path": "m.onnx", "sha256": SHA, "manifest": onnx_manifest()}}


def _set(path: str, value):
    """An edit: set (or with ``...`` delete) the value at a dotted path ("preprocess.std[1]")."""
    def edit(doc: dict) -> None:
        *parents, last = path.replace("]", "").replace("[", ".").split(".")
        for key in parents:
            doc = doc[int(key)] if isinstance(doc, list) else doc[key]
        if value is ...:
            del doc[last]
        elif isinstance(doc, list):
            doc[int(last)] = value
        else:
            doc[last] = value
    return edit


def _all(*edits):
    def edit(doc: dict) -> None:
        for e in edits:
            e(doc)
    return edit


# name -> (edit, the field Python's error names or None when valid, "rule": a check() rule JSON Schema cannot state)
ONNX_CASES = {
    "complete": (None, None),
    "minimal": (_all(*(_set(k, ...) for k in ("dnx_version", "onnx_version", "python", "torch_version", "artifact",
                                              "model", "weights", "output", "opset", "forward_form", "certificate",
                                              "sha256", "preprocess.interpolation", "preprocess.decode",
                                              "input.dtype", "input.layout", "labels.source"))), None),
    "classes_from_the_output": (_set("labels.names", None), None),
    "integral_float": (_set("preprocess.image_size", 224.0), None),
    "unknown_top_level_key": (_set("made_by_a_newer_dnx", {"x": 1}), None),
    "failed_certificate": (_set("certificate.verdict", "failed"), None),
    "grey_static_batch": (_all(_set("input.shape", [8, 1, 28, 28]), _set("preprocess.in_channels", 1),
                               _set("preprocess.image_size", 28), _set("preprocess.resize_size", 28),
                               _set("preprocess.mean", [0.5]), _set("preprocess.std", [0.25]),
                               _set("preprocess.interpolation", "nearest"), _set("certificate", ...)), None),
    "optional_nulls": (_all(*(_set(k, None) for k in ("artifact", "sha256", "output.dtype", "labels.source",
                                                      "certificate.summary", "input.layout", "model"))), None),
    "no_preprocess": (_set("preprocess", ...), None),  # valid; C++ cannot run it
    "no_labels_no_output": (_all(_set("labels", ...), _set("output", ...)), None),  # valid; C++ cannot name classes
    "schema_missing": (_set("schema", ...), "schema"),
    "other_schema": (_set("schema", "dnx.manifest/2"), "schema"),
    "precision_unknown": (_set("precision", "fp64"), "precision"),
    "precision_missing": (_set("precision", ...), "precision"),
    "artifact_unknown": (_set("artifact", "tensorrt"), "artifact"),
    "input_name_not_a_string": (_set("input.name", 7), "input.name"),
    "input_three_dimensions": (_set("input.shape", ["N", 3, 224]), "input.shape"),
    "input_dimension_named": (_set("input.shape[0]", "batch"), "input.shape[0]"),
    "input_dimension_zero": (_set("input.shape[2]", 0), "input.shape[2]"),
    "input_layout_nhwc": (_set("input.layout", "NHWC"), "input.layout"),
    "input_dtype_float16": (_set("input.dtype", "float16"), "input.dtype"),
    "output_without_name": (_set("output.name", ...), "output.name"),
    "image_size_string": (_set("preprocess.image_size", "224"), "preprocess.image_size"),
    "image_size_zero": (_set("preprocess.image_size", 0), "preprocess.image_size"),
    "image_size_fraction": (_set("preprocess.image_size", 224.5), "preprocess.image_size"),
    "resize_size_missing": (_set("preprocess.resize_size", ...), "preprocess.resize_size"),
    "in_channels_two": (_set("preprocess.in_channels", 2), "preprocess.in_channels"),
    "mean_count": (_set("preprocess.mean", [0.5, 0.5]), "preprocess.mean"),
    "mean_for_255_pixels": (_set("preprocess.mean[0]", 123.7), "preprocess.mean[0]"),
    "mean_negative": (_set("preprocess.mean[2]", -0.1), "preprocess.mean[2]"),
    "mean_not_an_array": (_set("preprocess.mean", "zero"), "preprocess.mean"),
    "std_zero": (_set("preprocess.std[1]", 0.0), "preprocess.std[1]"),
    "std_missing": (_set("preprocess.std", ...), "preprocess.std"),
    "interpolation_lanczos": (_set("preprocess.interpolation", "lanczos"), "preprocess.interpolation"),
    "decode_unknown": (_set("preprocess.decode", "turbo"), "preprocess.decode"),
    "interpolation_null": (_set("preprocess.interpolation", None), "preprocess.interpolation"),
    "preprocess_unknown_key": (_set("preprocess.color_order", "bgr"), "preprocess.color_order"),
    "image_size_not_the_graph": (_all(_set("preprocess.image_size", 256), _set("certificate", ...)),
                                 ("input.shape", "rule")),
    "label_not_a_string": (_set("labels.names[1]", 2), "labels.names[1]"),
    "labels_a_string": (_set("labels.names", "cat"), "labels.names"),
    "certificate_other_schema": (_set("certificate.schema", "dnx.certificate/2"), "certificate.schema"),
    "certificate_verdict_unknown": (_set("certificate.verdict", "maybe"), "certificate.verdict"),
    "certificate_without_verdict": (_set("certificate.verdict", ...), "certificate.verdict"),
    "certificate_sha_short": (_set("certificate.content_sha256", "abc"), "certificate.content_sha256"),
    "certificate_summary_number": (_set("certificate.summary", 5), "certificate.summary"),
    "certificate_preprocess_string": (_set("certificate.preprocess", "x"), "certificate.preprocess"),
    "sha256_not_hex": (_set("sha256", "z" * 64), "sha256"),
}

ENGINE_CASES = {
    "complete": (None, None),
    "minimal": (_all(*(_set(k, ...) for k in ("artifact", "dnx_version", "precision", "strongly_typed", "gpu.name",
                                              "gpu.driver_version", "gpu.cuda_runtime", "hardware_compat",
                                              "version_compat", "batch_profile", "inputs", "outputs",
                                              "build_command", "engine_sha256", "engine_bytes",
                                              "source_onnx.sha256"))), None),
    "ampere_plus": (_set("hardware_compat", "ampere+"), None),
    "unknown_key": (_set("made_by_a_newer_dnx", 1), None),
    "static_batch": (_set("batch_profile.max_batch", None), None),
    "optional_nulls": (_all(*(_set(k, None) for k in ("precision", "build_command", "engine_sha256", "gpu.name",
                                                      "batch_profile", "source_onnx.sha256"))), None),
    "foreign_source": (_set("source_onnx.manifest", None), None),  # valid; C++ needs the preprocessing
    "other_schema": (_set("schema", "dnx.engine/1"), "schema"),
    "tensorrt_version_missing": (_set("tensorrt_version", ...), "tensorrt_version"),
    "tensorrt_version_number": (_set("tensorrt_version", 10.8), "tensorrt_version"),
    "gpu_missing": (_set("gpu", ...), "gpu"),
    "compute_capability_word": (_set("gpu.compute_capability", "eight"), "gpu.compute_capability"),
    "hardware_compat_unknown": (_set("hardware_compat", "any"), "hardware_compat"),
    "version_compat_string": (_set("version_compat", "yes"), "version_compat"),
    "version_compat_null": (_set("version_compat", None), "version_compat"),
    "max_batch_string": (_set("batch_profile.max_batch", "32"), "batch_profile.max_batch"),
    "max_batch_zero": (_set("batch_profile.max_batch", 0), "batch_profile.max_batch"),
    "precision_unknown": (_set("precision", "fp64"), "precision"),
    "engine_sha_not_hex": (_set("engine_sha256", "12"), "engine_sha256"),
    "build_command_number": (_set("build_command", 5), "build_command"),
    "source_path_missing": (_set("source_onnx.path", ...), "source_onnx.path"),
    "source_std_zero": (_set("source_onnx.manifest.preprocess.std[0]", 0), "source_onnx.manifest.preprocess.std[0]"),
}


def _cpp_needs(kind: str, doc: dict) -> bool:
    """What libdnx_runtime needs beyond validity (see the module docstring); ``doc`` is valid."""
    manifest = ArtifactManifest.from_dict(doc) if kind == "onnx" else EngineManifest.from_dict(doc).source_manifest
    if manifest is None or manifest.input is None or manifest.preprocess is None:
        return False
    shape = manifest.output.shape if manifest.output and manifest.output.shape else ()
    return bool(manifest.label_names) or (len(shape) == 2 and isinstance(shape[1], int))


def _python_verdict(kind: str, doc) -> str | None:
    """None when Python's reader accepts ``doc``, else the field its error names ("" for the whole file)."""
    try:
        if kind == "onnx":
            ArtifactManifest.from_dict(doc, "case")
        else:
            EngineManifest.from_dict(doc, "case")
    except SchemaError as exc:
        return exc.field
    return None


def cases() -> list[dict]:
    """Every case, judged; raises AssertionError when a judgement differs from the expectation."""
    import jsonschema

    validators = {kind: jsonschema.Draft202012Validator(load_schema(stem))
                  for kind, stem in (("onnx", "manifest"), ("engine", "engine-manifest"))}
    out = []
    for kind, table, base in (("onnx", ONNX_CASES, onnx_manifest), ("engine", ENGINE_CASES, engine_manifest)):
        for name, (edit, expected) in table.items():
            doc = base()
            if edit is not None:
                edit(doc)
            field, rule = expected if isinstance(expected, tuple) else (expected, None)
            valid = field is None
            python = _python_verdict(kind, copy.deepcopy(doc))
            schema_valid = validators[kind].is_valid(doc)
            where = f"{kind} case {name}"
            assert (python is None) == valid, f"{where}: Python's reader says {python!r}, expected {field!r}"
            assert valid or python == field, f"{where}: Python's error names {python!r}, expected {field!r}"
            assert schema_valid == (valid or rule == "rule"), f"{where}: the JSON Schema says valid={schema_valid}"
            out.append({"kind": kind, "name": name, "valid": valid, "field": field,
                        "cpp_accepts": valid and _cpp_needs(kind, copy.deepcopy(doc)), "document": doc})
    return out


def write_cases(out: Path) -> Path:
    folder = Path(out) / "manifest_cases"
    index = []
    for case in cases():
        path = folder / case["kind"] / f"{case['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(case.pop("document")))
        index.append({**case, "file": str(path.relative_to(folder))})
    (folder / "index.json").write_text(json.dumps(index, indent=1))
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    print(write_cases(Path(sys.argv[1])))
