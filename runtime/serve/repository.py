"""Triton model repositories from dnx artifacts (``dnx triton export``).

For each artifact (an ONNX file dnx wrote, or a ``dnx build`` engine) the repository gets:

    REPO/NAME/config.pbtxt                 onnxruntime_onnx or tensorrt_plan; labels, batching, warm-up
    REPO/NAME/1/model.onnx | model.plan    the artifact's bytes
    REPO/NAME/labels.txt, dnx_manifest.json
    REPO/NAME_preprocess/                  Python backend: encoded image bytes -> network input, with
                                           dnx's own preprocessing (runtime/serve/triton_model.py)
    REPO/NAME_image/config.pbtxt           ensemble: image bytes in, logits (+ labels via Triton's
                                           classification extension) out

Every config is built as a dict, parsed into Triton's own ``ModelConfig`` protobuf (shipped with
tritonclient) and written in protobuf text format, so a field Triton does not know fails here, not
at server start. Each model folder is built in a temporary folder beside its final name and renamed
into place: an interrupted export never leaves a half-written model folder. Each also holds a marker
file (``.dnx-model``): ``--force`` replaces only folders that carry it, never the user's own models.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnx.runtime.serve.repository_folders import (  # noqa: F401 (MARKER: re-exported)
    MARKER, RepositoryError, check_replaceable, check_repo, commit, stage_model)
from dnx.core.onnx_graph import load_onnx
from dnx.runtime.artifact import open_artifact
from dnx.schemas.manifest import read_manifest

# Triton serves a model under its folder name in URLs (/v2/models/NAME) and in ensemble steps; this
# is the set every Triton tool accepts (PyTriton's own check), and a leading dot would hide the folder.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "int8": "TYPE_INT8",
                 "uint8": "TYPE_UINT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}
IMAGE_INPUT = "IMAGE"  # the ensemble's input: one encoded image (JPEG/PNG/...) per batch row
DEFAULT_MAX_BATCH = 8  # for a dynamic-batch ONNX file when --max-batch is not given
KINDS = ("gpu", "cpu")
VERSION_COMPAT_ARG = "--backend-config=tensorrt,version-compatible=true"


@dataclass(frozen=True, kw_only=True)
class RepositoryOptions:
    max_batch: int | None = None  # None: the engine profile's max, or DEFAULT_MAX_BATCH for ONNX
    instances: int = 1
    preferred_batch: tuple[int, ...] = ()
    queue_delay_us: int = 100
    kind: str = "gpu"
    tensorrt_accelerator: bool = False  # ONNX only: onnxruntime's TensorRT execution provider
    ensemble: bool = True
    force: bool = False
    allow_unverified: bool = False  # export an artifact whose parity certificate failed or is missing

    def validate(self) -> RepositoryOptions:
        if self.max_batch is not None and not (isinstance(self.max_batch, int) and self.max_batch >= 1):
            raise RepositoryError(f"--max-batch must be a positive integer, got {self.max_batch!r}")
        if not 1 <= self.instances <= 64:
            raise RepositoryError(f"--instances must be from 1 to 64, got {self.instances}")
        if any(b < 1 for b in self.preferred_batch) or len(set(self.preferred_batch)) != len(self.preferred_batch):
            raise RepositoryError(f"--preferred-batch takes distinct positive sizes, got {self.preferred_batch}")
        if not 0 <= self.queue_delay_us <= 10_000_000:
            raise RepositoryError(f"--queue-delay-us must be from 0 to 10000000, got {self.queue_delay_us}")
        if self.kind not in KINDS:
            raise RepositoryError(f"--kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.tensorrt_accelerator and self.kind != "gpu":
            raise RepositoryError("the TensorRT accelerator runs on a GPU: use --kind gpu or drop --trt-accelerator")
        return self


@dataclass(frozen=True)
class NetworkSpec:
    """What the configs need to know about one artifact, read from it and its manifest."""

    name: str
    artifact: Any  # dnx.runtime.artifact.Artifact
    platform: str  # onnxruntime_onnx or tensorrt_plan
    input_dtype: str
    input_dims: tuple[int, ...]  # without the batch dimension
    output_name: str
    output_dtype: str
    output_dims: tuple[int, ...]  # without the batch dimension
    max_batch: int  # 0: the graph's batch is fixed, Triton must not batch

    @property
    def server_args(self) -> tuple[str, ...]:
        """tritonserver options this model needs: a version-compatible plan runs host code, which Triton's
        TensorRT backend allows only under this option (tensorrt_backend: setEngineHostCodeAllowed)."""
        version_compat = self.platform == "tensorrt_plan" and self.artifact.manifest.version_compat
        return (VERSION_COMPAT_ARG,) if version_compat else ()

    @property
    def model_file(self) -> str:
        return "model.plan" if self.platform == "tensorrt_plan" else "model.onnx"


def check_model_name(name: str) -> str:
    if not _NAME.match(name):
        raise RepositoryError(f"model name {name!r} is not one Triton accepts (letters, digits, '_', '.', '-'; "
                              "at most 128, not starting with '.' or '-'); rename the artifact or pass --name")
    return name


def _triton_dtype(numpy_name: str, what: str) -> str:
    if numpy_name not in TRITON_DTYPES:
        raise RepositoryError(f"{what} has data type {numpy_name}, which dnx cannot map to a Triton type")
    return TRITON_DTYPES[numpy_name]


def _onnx_output(path: Path) -> tuple[str, str, tuple[int | None, ...]]:
    import onnx

    proto = load_onnx(path, load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise RepositoryError(f"{path} keeps its weights in external data files; Triton's model.onnx must be "
                              "one file: re-export it without external data")
    out = proto.graph.output[0]
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(out.type.tensor_type.elem_type).name
    return out.name, dtype, dims


def network_spec(path: str | Path, options: RepositoryOptions, name: str | None = None) -> NetworkSpec:
    """Read and check one artifact; refuses what Triton could not serve as asked."""

    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".onnx":

        if read_manifest(path, required=False) is None:  # open_artifact would ask for mean/std instead
            raise RepositoryError(f"{path} has no dnx manifest (not exported by dnx); a Triton repository needs "
                                  "its preprocessing and labels: export it with `dnx export`")
    art = open_artifact(path, allow_unverified=options.allow_unverified)
    name = check_model_name(name or path.stem)
    if art.kind == "engine":
        outputs = art.manifest.outputs or ()
        if len(outputs) != 1:
            raise RepositoryError(f"{path} has {len(outputs)} outputs; dnx exports classifiers with one")
        out_name, out_dtype = outputs[0].name, outputs[0].dtype or "float32"
        out_dims = tuple(None if d < 0 else d for d in outputs[0].shape)
        in_dtype = art.manifest.inputs[0].dtype or "float32"
        min_batch = art.manifest.batch_profile.min_batch if art.manifest.batch_profile else None
        if (min_batch or 1) > 1 and art.input_shape[0] is None:  # a fixed batch is served unbatched
            raise RepositoryError(f"{path}'s profile starts at batch {min_batch}; Triton sends any batch "
                                  f"from 1: rebuild with `dnx build ... --min-batch 1`")
        if options.kind == "cpu":
            raise RepositoryError(f"{path} is a TensorRT engine, which runs only on a GPU: use --kind gpu")
        platform = "tensorrt_plan"
    else:
        out_name, out_dtype, out_dims = _onnx_output(path)
        in_dtype, platform = "float32", "onnxruntime_onnx"
    fixed = art.input_shape[0]
    limit = art.max_batch  # engine: the profile's max; ONNX: the fixed batch, or None
    if fixed is not None:  # Triton's non-batching form: max_batch_size 0, the batch axis kept in dims
        if options.max_batch is not None and options.max_batch != fixed:
            rebuild = " and rebuild the engine from it" if art.kind == "engine" else ""
            raise RepositoryError(f"{path} has a fixed batch of {fixed}; Triton cannot batch it (--max-batch "
                                  f"{options.max_batch}): re-export with `dnx export ... --batch dynamic`{rebuild}")
        max_batch = 0
    else:
        max_batch = options.max_batch or limit or DEFAULT_MAX_BATCH
        if limit is not None and max_batch > limit:
            raise RepositoryError(f"--max-batch {max_batch} is larger than {path}'s optimization profile (max batch "
                                  f"{limit}); rebuild with `dnx build ... --max-batch {max_batch}` or lower it")
        if any(b > max_batch for b in options.preferred_batch):
            raise RepositoryError(f"--preferred-batch {','.join(map(str, options.preferred_batch))} exceeds the "
                                  f"max batch {max_batch}")
    skip = 1 if max_batch else 0  # with batching, Triton's dims leave out the batch dimension
    in_dims, out_dims = tuple(art.input_shape[skip:]), tuple(out_dims[skip:])
    if None in in_dims or None in out_dims:
        raise RepositoryError(f"{path} has dynamic dimensions besides the batch ({in_dims} -> {out_dims}); "
                              "dnx exports fixed image sizes")
    return NetworkSpec(name, art, platform, _triton_dtype(in_dtype, "the input"), in_dims, out_name,
                       _triton_dtype(out_dtype, "the output"), out_dims, max_batch)


class ModelConfigBuilder:
    """The three config dicts (network, preprocessing, ensemble) of one artifact; one ``_set_`` per block."""

    def __init__(self, spec: NetworkSpec, options: RepositoryOptions) -> None:
        self.spec, self.options = spec, options

    @property
    def preprocess_name(self) -> str:
        return f"{self.spec.name}_preprocess"

    @property
    def ensemble_name(self) -> str:
        return f"{self.spec.name}_image"

    def network(self) -> dict[str, Any]:
        s = self.spec
        config: dict[str, Any] = {"name": s.name, "platform": s.platform, "max_batch_size": s.max_batch}
        self._set_io(config, [(s.artifact.input_name, s.input_dtype, s.input_dims)],
                     [(s.output_name, s.output_dtype, s.output_dims)])
        self._set_labels(config)
        self._set_dynamic_batching(config)
        self._set_instance_group(config, self.options.kind)
        self._set_model_warmup(config)
        self._set_accelerator(config)
        self._set_parameters(config, {"dnx_sha256": s.artifact.sha256, "dnx_precision": s.artifact.precision,
                                      **({"dnx_tritonserver_needs": " ".join(s.server_args)} if s.server_args else {})})
        return config

    def preprocess(self) -> dict[str, Any]:
        s = self.spec
        # The Python backend is named with `backend`, not `platform` (platform is for built-in formats).
        config: dict[str, Any] = {"name": self.preprocess_name, "backend": "python", "max_batch_size": s.max_batch}
        # BYTES travels as TYPE_STRING in a config; one encoded image per batch row.
        self._set_io(config, [(IMAGE_INPUT, "TYPE_STRING", self._image_dims())],
                     [(s.artifact.input_name, s.input_dtype, s.input_dims)])
        self._set_dynamic_batching(config)
        self._set_instance_group(config, "cpu")  # decoding and resizing run on the CPU whatever the network uses
        self._set_parameters(config, {"dnx_preprocess": json.dumps(s.artifact.preprocess.to_dict())})
        return config

    def ensemble(self) -> dict[str, Any]:
        s = self.spec
        # An ensemble has no instance_group or dynamic_batching of its own: its steps batch.
        config: dict[str, Any] = {"name": self.ensemble_name, "platform": "ensemble", "max_batch_size": s.max_batch}
        self._set_io(config, [(IMAGE_INPUT, "TYPE_STRING", self._image_dims())],
                     [(s.output_name, s.output_dtype, s.output_dims)])
        self._set_labels(config)
        self._set_ensemble_scheduling(config)
        return config

    # -- one block each ----------------------------------------------------------------------
    def _image_dims(self) -> list[int]:
        # Without batching the fixed batch axis is part of dims: one image per row of it.
        return [1] if self.spec.max_batch else [self.spec.artifact.input_shape[0], 1]

    @staticmethod
    def _set_io(config: dict, inputs: list, outputs: list) -> None:
        config["input"] = [{"name": n, "data_type": t, "dims": list(d)} for n, t, d in inputs]
        config["output"] = [{"name": n, "data_type": t, "dims": list(d)} for n, t, d in outputs]

    def _set_labels(self, config: dict) -> None:
        # label_filename is relative to the model folder; Triton's classification extension
        # (class_count in a request) then answers "score:index:label" strings.
        if self.spec.artifact.labels:
            config["output"][0]["label_filename"] = "labels.txt"

    def _set_dynamic_batching(self, config: dict) -> None:
        if not self.spec.max_batch:  # Triton refuses dynamic_batching on a model that cannot batch
            return
        block: dict[str, Any] = {"max_queue_delay_microseconds": self.options.queue_delay_us}
        if self.options.preferred_batch:
            block["preferred_batch_size"] = list(self.options.preferred_batch)
        config["dynamic_batching"] = block

    def _set_instance_group(self, config: dict, kind: str) -> None:
        # KIND_GPU without "gpus" puts `count` instances on every visible GPU.
        config["instance_group"] = [{"count": self.options.instances, "kind": f"KIND_{kind.upper()}"}]

    def _set_model_warmup(self, config: dict) -> None:
        s = self.spec
        sizes = sorted({1, s.max_batch}) if s.max_batch else [0]
        # Warm-up sample dims leave out the batch axis too; batch_size 0 is Triton's "no batching".
        config["model_warmup"] = [
            {"name": f"zeros_batch{b}", "batch_size": b,
             "inputs": {s.artifact.input_name: {"data_type": s.input_dtype, "dims": list(s.input_dims),
                                                "zero_data": True}}}
            for b in sizes]

    def _set_accelerator(self, config: dict) -> None:
        if self.spec.platform != "onnxruntime_onnx" or not self.options.tensorrt_accelerator:
            return
        # onnxruntime's TensorRT EP takes one precision_mode; a Q/DQ graph needs INT8 so TensorRT keeps its
        # explicit quantization, FP16 graphs FP16. Anything TensorRT cannot take falls back to CUDA.
        mode = {"fp16": "FP16", "int8": "INT8", "best": "INT8"}.get(self.spec.artifact.precision, "FP32")
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [
            {"name": "tensorrt", "parameters": {"precision_mode": mode}}]}}

    @staticmethod
    def _set_parameters(config: dict, values: dict[str, str]) -> None:
        config["parameters"] = {k: {"string_value": str(v)} for k, v in values.items()}

    def _set_ensemble_scheduling(self, config: dict) -> None:
        s = self.spec
        pixels = "preprocessed"
        # input_map/output_map keys are the step model's tensor names, values the ensemble's tensors.
        config["ensemble_scheduling"] = {"step": [
            {"model_name": self.preprocess_name, "model_version": -1,
             "input_map": {IMAGE_INPUT: IMAGE_INPUT}, "output_map": {s.artifact.input_name: pixels}},
            {"model_name": s.name, "model_version": -1,
             "input_map": {s.artifact.input_name: pixels}, "output_map": {s.output_name: s.output_name}}]}


def to_pbtxt(config: dict[str, Any]) -> str:
    """A config dict as Triton's config.pbtxt; unknown fields or bad enum values raise RepositoryError."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    try:
        message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    except json_format.ParseError as exc:
        raise RepositoryError(f"model {config.get('name')}: {exc}") from None
    return text_format.MessageToString(message)


@dataclass(frozen=True)
class RepositoryResult:
    repo: Path
    models: tuple[str, ...]  # every model folder written
    configs: dict[str, dict]  # model name -> the config dict written as its config.pbtxt
    server_args: tuple[str, ...] = ()  # tritonserver options the models need (version-compatible engines)


def export_repository(artifacts: Sequence[str | Path], repo: str | Path, options: RepositoryOptions,
                      names: Sequence[str] | None = None) -> RepositoryResult:
    """Write a Triton model repository for ``artifacts`` into ``repo`` (see the module docstring)."""
    options.validate()
    if not artifacts:
        raise RepositoryError("give at least one artifact (an ONNX file from `dnx export` or an engine)")
    if names is not None and len(names) != len(artifacts):
        raise RepositoryError(f"{len(names)} names for {len(artifacts)} artifacts; give one --name per artifact")
    specs = [network_spec(a, options, names[i] if names else None) for i, a in enumerate(artifacts)]
    builders = [ModelConfigBuilder(s, options) for s in specs]
    configs: dict[str, dict] = {}
    files: dict[str, dict[str, Path | bytes]] = {}
    model_py = Path(__file__).with_name("triton_model.py")
    for b in builders:
        s = b.spec
        labels = {"labels.txt": ("\n".join(s.artifact.labels) + "\n").encode()} if s.artifact.labels else {}
        manifest = {"dnx_manifest.json": json.dumps(s.artifact.manifest.to_dict(), indent=2).encode()}
        configs[s.name] = b.network()
        files[s.name] = {f"1/{s.model_file}": s.artifact.path, **labels, **manifest}
        if s.server_args:  # said where whoever starts the server will look, and in config.pbtxt's parameters
            files[s.name]["README.md"] = (f"{s.artifact.path.name} is a version-compatible TensorRT engine: start "
                                          f"tritonserver with `{' '.join(s.server_args)}` "
                                          "or it will not load.\n").encode()
        if options.ensemble:
            configs[b.preprocess_name] = b.preprocess()
            files[b.preprocess_name] = {"1/model.py": model_py}
            configs[b.ensemble_name] = b.ensemble()
            files[b.ensemble_name] = {"1/.keep": b"", **labels}  # Triton needs the version folder, even empty
    if len(configs) != len(builders) * (3 if options.ensemble else 1):  # a name was written twice
        raise RepositoryError("two artifacts would share a model name; pass --name for each")
    repo = Path(repo)
    check_repo(repo, options.force)
    check_replaceable(repo, list(configs))
    staged: dict[str, Path] = {}
    try:
        for name, config in configs.items():
            staged[name] = stage_model(repo, name, {"config.pbtxt": to_pbtxt(config).encode(), **files[name]})
        commit(repo, staged)
    finally:
        for stage in staged.values():
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)
    server_args = tuple(dict.fromkeys(a for s in specs for a in s.server_args))
    return RepositoryResult(repo, tuple(configs), configs, server_args)
