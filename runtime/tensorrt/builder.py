"""ONNX -> TensorRT engine, strongly typed: the precision is the ONNX graph's, never a builder flag.

``dnx build MODEL.onnx --precision P`` first decides which ONNX graph TensorRT will build
(:func:`plan_graph`, :func:`select_graph`): the file itself, its FP16 conversion, or its calibrated
INT8 Q/DQ version. That graph runs in onnxruntime on any CPU, so the accuracy of FP16/INT8 is
tested without a GPU; the builder then builds exactly that graph with TensorRT 10.x or 11.x
(which removed ``BuilderFlag.FP16/INT8`` and the INT8 calibrators).

Order of checks, so mistakes cost nothing: options and files (exit 1), then the CUDA device and
TensorRT (exit 2), then conversion/calibration, then the build.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from dnx.core.errors import DnxError
from dnx.schemas.engine_manifest import ENGINE_SCHEMA, HARDWARE_COMPAT, machine_facts, write_engine_manifest
from dnx.runtime.backends.tensorrt_compat import (
    dtype_name, hardware_compatibility_level, import_tensorrt, make_logger, make_progress_monitor,
    network_creation_flags, ProgressCallback, TensorRTError)
from dnx.calibration.fp16 import convert_fp16
from dnx.calibration.qdq import calibrate_qdq
from dnx.core.fileio import check_writable, write_bytes_atomic
from dnx.core.hashing import sha256_file
from dnx.core.onnx_graph import load_onnx
from dnx.core.version import __version__
from dnx.runtime.tensorrt.inspect import onnx_precision
from dnx.runtime.tensorrt.timing_cache import attach_timing_cache, write_timing_cache
from dnx.schemas.manifest import ArtifactManifest, read_manifest

if TYPE_CHECKING:
    import tensorrt as trt

PRECISIONS = ("fp32", "fp16", "int8", "best")
MAX_OPT_LEVEL = 5
# A batch range covering the sizes `dnx bench` reports (1 to 32), tuned for 8, a common serving batch.
DEFAULT_MIN_BATCH, DEFAULT_OPT_BATCH, DEFAULT_MAX_BATCH = 1, 8, 32
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise DnxError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}", param="precision")


def parse_size(text: str | int) -> int:
    """Bytes from ``4GiB``, ``512MiB``, ``2GB`` or a plain number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise DnxError(f"workspace must be a size like 4GiB, 512MiB or 2GB, got {text!r}", param="workspace")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


@dataclass(frozen=True)
class BuildOptions:
    """How to build an engine; ``None`` batch fields take the ONNX file's fixed batch or the defaults."""

    precision: str = "fp32"
    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    workspace: int | None = None  # bytes of builder scratch memory; None: TensorRT's default (all of it)
    timing_cache: Path | None = None
    opt_level: int = 3  # TensorRT's default builder optimization level
    hardware_compat: str = "none"
    version_compat: bool = False

    def validate(self) -> "BuildOptions":
        _check_precision(self.precision)
        if self.hardware_compat not in HARDWARE_COMPAT:
            raise DnxError(f"hardware_compat must be one of {', '.join(HARDWARE_COMPAT)}, "
                           f"got {self.hardware_compat!r}", param="hardware_compat")
        if not (isinstance(self.opt_level, int) and 0 <= self.opt_level <= MAX_OPT_LEVEL):
            raise DnxError(f"opt_level must be between 0 and {MAX_OPT_LEVEL}, got {self.opt_level}", param="opt_level")
        if self.workspace is not None and self.workspace <= 0:
            raise DnxError(f"workspace must be a positive size like 4GiB, got {self.workspace} bytes",
                           param="workspace")
        self.batch_range()
        return self

    def _batches(self) -> tuple[tuple[str, int | None], ...]:
        """The batch options as given (None: not given), each with its field's name."""
        return ("min_batch", self.min_batch), ("opt_batch", self.opt_batch), ("max_batch", self.max_batch)

    def batch_range(self) -> tuple[int, int, int]:
        """(min, opt, max) batch of a dynamic-batch input, defaults filled in and checked."""
        for name, value in self._batches():
            if value is not None and value < 1:
                raise DnxError(f"{name} must be a positive integer, got {value}", param=name)
        low = self.min_batch or DEFAULT_MIN_BATCH
        high = self.max_batch or max(DEFAULT_MAX_BATCH, low, self.opt_batch or 0)
        opt = self.opt_batch or min(max(DEFAULT_OPT_BATCH, low), high)
        if not low <= opt <= high:
            raise DnxError(f"batch sizes must satisfy min <= opt <= max, got min_batch {low} opt_batch {opt} "
                           f"max_batch {high}", param=("min_batch", "opt_batch", "max_batch"))
        return low, opt, high

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["timing_cache"] = str(self.timing_cache) if self.timing_cache else None
        return d

    def cli_args(self) -> list[str]:
        """The ``dnx build`` options that reproduce these options."""
        args = ["--precision", self.precision]
        for name, value in (*self._batches(), ("workspace", self.workspace), ("timing_cache", self.timing_cache)):
            if value is not None:
                args += [f"--{name.replace('_', '-')}", str(value)]
        if self.opt_level != 3:
            args += ["--opt-level", str(self.opt_level)]
        if self.hardware_compat != "none":
            args += ["--hardware-compat", self.hardware_compat]
        if self.version_compat:
            args.append("--version-compat")
        return args


@dataclass(frozen=True)
class ProfileShapes:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def _is_dynamic(dim) -> bool:
    return dim is None or isinstance(dim, str) or (isinstance(dim, int) and dim < 0)


def profile_shapes(input_shape: Sequence, options: BuildOptions, name: str = "input") -> ProfileShapes:
    """Optimization-profile shapes of one input from its shape (manifest ``["N", 3, 224, 224]`` or
    TensorRT ``(-1, 3, 224, 224)``) and the batch options. Only the batch dimension may be dynamic."""
    shape = list(input_shape)
    if not shape:
        raise DnxError(f"input {name} is a scalar; dnx builds image classifiers with an NCHW input")
    rest_dynamic = [i for i, d in enumerate(shape[1:], start=1) if _is_dynamic(d)]
    if rest_dynamic:
        raise DnxError(f"input {name} has dynamic dimensions {rest_dynamic} besides the batch ({shape}); "
                       "re-export with a fixed --image-size")
    rest = tuple(int(d) for d in shape[1:])
    if _is_dynamic(shape[0]):
        low, opt, high = options.batch_range()
    else:
        fixed = int(shape[0])
        asked = {field: v for field, v in options._batches() if v is not None and v != fixed}
        if asked:
            got = " ".join(f"{field} {v}" for field, v in asked.items())
            raise DnxError(f"input {name} has a fixed batch of {fixed}, so {got} cannot apply; drop those options "
                           "or re-export with `dnx export MODEL --batch dynamic`", param=tuple(asked))
        low = opt = high = fixed
    return ProfileShapes((low, *rest), (opt, *rest), (high, *rest))


# -- which graph gets built --------------------------------------------------------------------

@dataclass(frozen=True)
class GraphPlan:
    """What :func:`select_graph` will do: use ``source`` as it is, convert it to FP16, or calibrate it."""

    source: Path
    precision: str
    action: str  # "as-is" | "convert-fp16" | "calibrate"
    graph: Path  # the ONNX file TensorRT builds
    calib_data: Path | None = None
    calib_cache: Path | None = None
    notes: tuple[str, ...] = ()


@dataclass
class SelectedGraph:
    path: Path
    precision: str
    action: str
    source: Path
    seconds: float
    manifest: dict | None = None
    notes: list[str] = field(default_factory=list)


def graph_precision(onnx_path: str | Path) -> str:
    """The precision an ONNX file's types ask for (fp32, fp16, int8 or best); CPU only."""

    return onnx_precision(load_onnx(onnx_path, load_external_data=False))


def plan_graph(onnx_path: str | Path, precision: str, calib_data: str | Path | None = None,
               calib_cache: str | Path | None = None, workdir: str | Path | None = None) -> GraphPlan:
    """Decide which graph is built for ``precision``, or raise a DnxError saying what to pass instead.

    Pure decision (reads the ONNX file, writes nothing), so ``dnx build`` can refuse bad options
    before it looks for a GPU. A converted graph goes to ``workdir/STEM.PRECISION.onnx``.
    """

    _check_precision(precision)
    source = Path(onnx_path)
    found = graph_precision(source)
    calib_data = Path(calib_data) if calib_data else None
    calib_cache = Path(calib_cache) if calib_cache else None
    stem = source.name[:-len(".onnx")] if source.name.endswith(".onnx") else source.name
    target = Path(workdir or source.parent) / f"{stem}.{precision}.onnx"

    if found != "fp32":
        if found != precision:
            raise DnxError(f"{source} is already a {found} graph (its types fix the precision of a strongly typed "
                           f"engine); build it with --precision {found}, or pass the FP32 export for {precision}")
        notes = ()
        if calib_data or calib_cache:
            notes = (f"{source} is already calibrated; --calib-data/--calib-cache were not used",)
        return GraphPlan(source, precision, "as-is", source, notes=notes)
    if precision in ("fp32", "fp16"):
        if calib_data or calib_cache:
            raise DnxError(f"calib_data/calib_cache calibrate INT8; use them with precision int8 or best, "
                           f"not {precision}", param=("calib_data", "calib_cache", "precision"))
        if precision == "fp32":
            return GraphPlan(source, precision, "as-is", source)
        return GraphPlan(source, precision, "convert-fp16", check_writable(target))
    if calib_data is None:
        if calib_cache is not None:
            raise DnxError("calib_cache alone is not enough: the cache is keyed by the calibration data's "
                           "fingerprint; pass calib_data too (a matching cache then skips the calibration pass)",
                           param=("calib_cache", "calib_data"))
        raise DnxError(f"precision {precision} needs calibration images for {source}: pass calib_data PATH "
                       "(an image folder, .npy/.npz or IDX files), or build an already calibrated Q/DQ ONNX file",
                       param=("precision", "calib_data"))
    if not calib_data.exists():
        raise DnxError(f"calibration data {calib_data} does not exist")
    return GraphPlan(source, precision, "calibrate", check_writable(target), calib_data, calib_cache)


def run_plan(plan: GraphPlan) -> SelectedGraph:
    """Carry out a :class:`GraphPlan` (conversion and calibration run on the CPU, in onnxruntime)."""
    start = time.perf_counter()
    if plan.action == "as-is":
        return SelectedGraph(plan.graph, plan.precision, plan.action, plan.source, 0.0, notes=list(plan.notes))
    if plan.action == "convert-fp16":

        result = convert_fp16(plan.source, plan.graph)
    else:

        result = calibrate_qdq(plan.source, plan.graph, plan.calib_data, target="tensorrt", method="entropy",
                               high_precision="fp16" if plan.precision == "best" else None,
                               cache_path=plan.calib_cache)
    return SelectedGraph(Path(result.path), plan.precision, plan.action, plan.source, time.perf_counter() - start,
                         getattr(result, "manifest", None), list(plan.notes) + list(getattr(result, "notes", [])))


def select_graph(onnx_path: str | Path, precision: str, calib_data: str | Path | None = None,
                 calib_cache: str | Path | None = None, workdir: str | Path | None = None) -> SelectedGraph:
    """The ONNX graph TensorRT builds for ``precision``, converting or calibrating ``onnx_path`` if needed:

    * fp32: the file itself; fp16: its FP16 conversion (``convert_fp16``);
    * int8: the file if it holds Q/DQ nodes, else its Q/DQ calibration for TensorRT (entropy);
    * best: as int8, with the unquantized ops in FP16.
    """
    return run_plan(plan_graph(onnx_path, precision, calib_data, calib_cache, workdir))


# -- the TensorRT build --------------------------------------------------------------------------

@dataclass
class EngineBuildResult:
    path: Path
    manifest: dict
    graph: SelectedGraph
    build_seconds: float
    warnings: list[str]  # TensorRT's
    notes: list[str]  # dnx's: what it decided on the way (reused cache, skipped options)


def _parser_errors(parser: trt.OnnxParser) -> list[str]:
    errors = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        index = int(error.node())
        where = str(error.node_name()) or (f"#{index}" if index >= 0 else "graph")
        op = str(error.node_operator())
        errors.append(f"node {where}{f' ({op})' if op else ''}: {error.desc()} [{error.code()}]")
    return errors


def _tensor_facts(tensor: trt.ITensor) -> dict[str, Any]:
    return {"name": str(tensor.name), "shape": [int(d) for d in tensor.shape], "dtype": dtype_name(tensor.dtype)}


def _no_progress(phase: str, step: int, steps: int) -> None:
    pass


def _parse_onnx(trt, network: trt.INetworkDefinition, logger, graph_path: Path):
    """Fill ``network`` from ``graph_path``; every parser error, with its node, in one TensorRTError.

    Returns the parser, which owns the weights: keep it alive until the engine is built.
    """

    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph_path)):
        errors = _parser_errors(parser) or logger.errors() or ["no details given"]
        raise TensorRTError("parse", f"TensorRT's ONNX parser rejected {graph_path} ({len(errors)} error"
                                     f"{'s' if len(errors) != 1 else ''}): {'; '.join(errors)}")
    return parser


def _configure(trt, config: trt.IBuilderConfig, options: BuildOptions, hardware_level) -> None:
    if options.workspace is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace)
    config.builder_optimization_level = options.opt_level
    config.hardware_compatibility_level = hardware_level
    if options.version_compat:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.precision == "fp32":
        # TF32 (on by default) rounds FP32 convolutions to a 10-bit mantissa; fp32 promises FP32 parity.
        config.clear_flag(trt.BuilderFlag.TF32)
    # Per-layer names, precisions and tactics in the plan, so `dnx inspect` can show what really runs INT8.
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED


def _build_serialized(trt, graph_path: Path, options: BuildOptions, progress: ProgressCallback | None,
                      notes: list[str], facts: dict[str, Any]) -> tuple[Any, dict[str, Any], list[str]]:
    """(serialized engine, I/O and profile facts, TensorRT warnings) of ``graph_path``."""

    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_creation_flags(trt))
    parser = _parse_onnx(trt, network, logger, graph_path)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    inputs = [_tensor_facts(network.get_input(i)) for i in range(network.num_inputs)]
    outputs = [_tensor_facts(network.get_output(i)) for i in range(network.num_outputs)]
    shapes = {}
    for tensor in inputs:
        p = profile_shapes(tensor["shape"], options, tensor["name"])
        profile.set_shape(tensor["name"], p.min, p.opt, p.max)
        shapes[tensor["name"]] = {"min": list(p.min), "opt": list(p.opt), "max": list(p.max)}
    if config.add_optimization_profile(profile) < 0:  # -1: TensorRT found the profile invalid
        raise TensorRTError("profile", f"TensorRT refused the optimization profile {shapes} of {graph_path}; "
                                       "check --min-batch/--opt-batch/--max-batch")
    _configure(trt, config, options, hardware_compatibility_level(trt, options.hardware_compat))
    timing_cache: trt.ITimingCache = attach_timing_cache(config, options.timing_cache, facts, notes)
    # A monitor even without a progress callback: its Python callbacks are where Ctrl-C can stop a build.
    monitor = make_progress_monitor(trt, progress or _no_progress)
    if monitor is not None:
        config.progress_monitor = monitor

    # parser (it owns the weights), logger, monitor and timing_cache stay alive until we return.
    serialized = builder.build_serialized_network(network, config)
    if monitor is not None:
        monitor.check()
    if serialized is None:
        details = "; ".join(logger.errors()[-3:]) or "see TensorRT's log"
        raise TensorRTError("build", f"TensorRT could not build {graph_path}: {details}")
    if options.timing_cache is not None:
        write_timing_cache(options.timing_cache, timing_cache, facts)
    del parser
    return serialized, {"inputs": inputs, "outputs": outputs, "shapes": shapes}, logger.warnings()


def build_command(onnx_path: str | Path, output: str | Path, options: BuildOptions,
                  calib_data: str | Path | None = None, calib_cache: str | Path | None = None) -> str:
    args = ["dnx", "build", str(onnx_path), *options.cli_args()]
    if calib_data:
        args += ["--calib-data", str(calib_data)]
    if calib_cache:
        args += ["--calib-cache", str(calib_cache)]
    return shlex.join([*args, "-o", str(output)])


def build_engine(onnx_path: str | Path, output: str | Path, options: BuildOptions = BuildOptions(),
                 progress: ProgressCallback | None = None, *, calib_data: str | Path | None = None,
                 calib_cache: str | Path | None = None, workdir: str | Path | None = None,
                 device: int = 0) -> EngineBuildResult:
    """Build ``onnx_path`` (or its FP16 / Q/DQ version, see :func:`select_graph`) into ``output``.

    Writes the engine atomically and its manifest ``output.json``; converted graphs go to ``workdir``
    (default: the output's folder). ``progress(phase, step, steps)`` is called during the build where
    TensorRT supports progress monitors.
    """
    import torch

    options.validate()
    output = check_writable(output)
    if options.timing_cache is not None:
        check_writable(options.timing_cache)
    plan = plan_graph(onnx_path, options.precision, calib_data, calib_cache, workdir or output.parent)
    trt = import_tensorrt(device)  # checks the CUDA device first; nothing TensorRT exists before this
    hardware_compatibility_level(trt, options.hardware_compat)  # refuse same-cc on < 10.9 before calibrating
    graph = run_plan(plan)
    notes = list(graph.notes)
    start = time.perf_counter()
    with torch.cuda.device(device):
        facts = machine_facts(trt, device)
        serialized, io, warnings = _build_serialized(trt, graph.path, options, progress, notes, facts)
    build_seconds = time.perf_counter() - start
    write_bytes_atomic(output, serialized)

    source_sha256 = sha256_file(plan.source)
    graph_sha256 = source_sha256 if Path(graph.path) == Path(plan.source) else sha256_file(graph.path)
    batch = next(iter(io["shapes"].values()), {"min": [None], "opt": [None], "max": [None]})
    manifest = {
        "schema": ENGINE_SCHEMA,
        "artifact": "tensorrt-engine",
        "dnx_version": __version__,
        "tensorrt_version": facts["tensorrt_version"],
        "gpu": {"name": facts["gpu_name"], "compute_capability": facts["compute_capability"],
                "driver_version": facts["driver_version"], "cuda_runtime": facts["cuda_runtime"]},
        "precision": options.precision,
        "strongly_typed": True,
        "hardware_compat": options.hardware_compat,
        "version_compat": options.version_compat,
        "batch_profile": {"min_batch": batch["min"][0], "opt_batch": batch["opt"][0],
                          "max_batch": batch["max"][0], "shapes": io["shapes"]},
        "inputs": io["inputs"],
        "outputs": io["outputs"],
        "build_options": options.to_dict(),
        "build_command": build_command(plan.source, output, options, calib_data, calib_cache),
        "build_seconds": round(build_seconds, 3),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source_onnx": {"path": str(plan.source), "sha256": source_sha256,
                        "manifest": _manifest_json(read_manifest(plan.source, required=False))},
        "built_graph": {"path": str(graph.path), "sha256": graph_sha256, "action": graph.action,
                        "precision": graph.precision},
        "notes": notes,
        "tensorrt_warnings": warnings,
    }
    manifest = write_engine_manifest(output, manifest).to_dict()
    return EngineBuildResult(output, manifest, graph, build_seconds, warnings, notes)


def _manifest_json(manifest: ArtifactManifest | None) -> dict | None:
    return manifest.to_dict() if manifest else None
