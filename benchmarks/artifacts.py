"""The files each backend runs, prepared in a bench work folder: the target's PyTorch reference
model, its FP32 ONNX (exported from a registered model when the target is a name), the INT8 QDQ
and FP16 ONNX derived from it, and the TensorRT engine given (as TARGET or --engine). :class:`Artifacts`
makes each on first use and, with a kept work folder, reuses a file across runs while its inputs
(model, weights, source file, calibration settings) have not changed; an engine's or ONNX file's
dnx manifest names the PyTorch model it came from (:func:`_reference_from_manifest`).
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from dnx.core.errors import DnxError
from dnx.core.hashing import sha256_file
from dnx.runtime.backends.base import UnavailableBackend
from dnx.calibration.parity import default_calibration_data
from dnx.calibration.fp16 import convert_fp16
from dnx.calibration.qdq import calibrate_qdq
from dnx.core.version import __version__
from dnx.export.onnx_export import export_onnx, ExportOptions
from dnx.models import create_model, get_config
from dnx.models.registry import ModelConfig
from dnx.schemas.engine_manifest import EngineManifest, is_engine_path, read_engine_manifest
from dnx.schemas.manifest import ArtifactManifest, read_manifest

if TYPE_CHECKING:
    from dnx.benchmarks.harness import BenchConfig

def _reference_from_manifest(manifest: ArtifactManifest, where: Path):
    """Rebuild the exact PyTorch model an artifact came from: its config and weights."""

    cfg = ModelConfig.from_dict(manifest.model)
    weights_id, weights_path = (manifest.weights.id, manifest.weights.path) if manifest.weights else ("", None)
    if weights_path:
        if not Path(weights_path).is_file():
            raise DnxError(f"{where} was made from weights {weights_path}, which no longer exists; "
                           "restore that file or re-export the model")
        loaded = create_model(cfg, weights=weights_path)
    else:
        seed = int(weights_id.rpartition("=")[2]) if weights_id.startswith("random-init:seed=") else 0
        loaded = create_model(cfg, seed=seed, use_bundled=False)
    if weights_id and loaded.weights != weights_id:
        raise DnxError(f"{where} was made from weights {weights_id[:12]}, but {weights_path} now has "
                       f"{loaded.weights[:12]}; re-export the model from the current weights")
    return loaded


class Artifacts:
    """The files backends run, made on first use; with a kept work folder, reused across runs when
    their inputs (model, weights, source file, calibration settings) have not changed."""

    def __init__(self, config: BenchConfig, workdir: Path, temporary: bool) -> None:
        self.config, self.workdir, self.temporary = config, workdir, temporary
        self.model_name: str | None = None
        self.onnx: Path | None = None
        self.engine = Path(config.engine) if config.engine else None
        self.manifest: ArtifactManifest | None = None  # of the ONNX target, or of the ONNX the engine was built from
        self._engine_manifest: EngineManifest | None = None
        self._made: dict[str, tuple[Path, str]] = {}
        self._loaded = None
        target = config.target
        if target:
            path = Path(target)
            if is_engine_path(path):
                if self.engine is not None:
                    raise DnxError(f"two engines given ({target} and --engine {config.engine}); give one")
                self.engine = path
            elif path.suffix.lower() == ".onnx" or path.exists():

                self.onnx = path
                self.manifest = read_manifest(path)
            else:

                self.model_name = get_config(target).name
        if self.engine is not None and not self.engine.is_file():
            raise DnxError(f"engine {self.engine} does not exist")
        if self.manifest is None and self.engine is not None:
            self._adopt_engine_manifest()

    def engine_manifest(self) -> EngineManifest | None:
        if self.engine is None:
            return None
        if self._engine_manifest is None:
            self._engine_manifest = read_engine_manifest(self.engine, required=False)
        return self._engine_manifest

    def _adopt_engine_manifest(self) -> None:
        """The engine's sidecar records the ONNX it was built from and that file's manifest: the
        manifest gives the PyTorch reference, the file (when FP32 and still there) the ONNX backends."""
        engine = self.engine_manifest()
        source = engine.source_onnx if engine else None
        manifest = source.manifest if source else None
        if manifest is None or manifest.model is None:
            return
        self.manifest = manifest
        path = Path(source.path)
        if manifest.precision == "fp32" and path.is_file() and sha256_file(path) == source.sha256:
            self.onnx = path

    # -- the PyTorch model -------------------------------------------------------------------
    def model(self):
        """The target's PyTorch model (a LoadedModel), FP32, in the torchvision forward form."""
        if self._loaded is None:
            if self.model_name:

                self._loaded = create_model(self.model_name)
            elif self.manifest is not None:
                self._loaded = _reference_from_manifest(self.manifest, self.onnx or self.engine)
            else:
                raise DnxError(f"engine {self.engine} has no dnx manifest ({self.engine}.json), so there is no "
                               "PyTorch model to compare with: give the ONNX file it was built from as TARGET")
            # torchvision's forward is the independent reference (the ONNX graph is the incremental form).
            self._loaded.model.set_forward_form("torchvision")
        return self._loaded

    @property
    def input_name(self) -> str:
        return self.manifest.input.name if self.manifest and self.manifest.input else "input"

    @property
    def output_name(self) -> str:
        return self.manifest.output.name if self.manifest and self.manifest.output else "logits"

    # -- files ---------------------------------------------------------------------------------
    @property
    def onnx_precision(self) -> str | None:
        """Precision of the ONNX target file (its manifest's; fp32 without one); None without a file."""
        if self.onnx is None:
            return None
        return self.manifest.precision if self.manifest else "fp32"

    def path_for(self, kind: str) -> tuple[Path, str]:
        """(file, precision) for ``kind``: "onnx", "int8", "int8-openvino", "fp16" or "engine"."""
        if kind not in self._made:
            make = {"onnx": self._fp32_onnx, "int8": partial(self._int8_onnx, "onnxruntime"),
                    "int8-openvino": partial(self._int8_onnx, "openvino"), "fp16": self._fp16_onnx,
                    "engine": self._engine}[kind]
            self._made[kind] = make()
        return self._made[kind]

    def _fp32_onnx(self) -> tuple[Path, str]:
        if self.onnx is not None:
            return self.onnx, self.onnx_precision
        if not self.model_name:
            raise UnavailableBackend("no ONNX file: give the ONNX the engine was built from as TARGET")

        loaded = create_model(self.model_name)
        path = self.workdir / f"{self.model_name}.onnx"
        old = read_manifest(path, required=False) if path.is_file() else None
        fresh = (old is not None and old.model == loaded.config.to_dict() and old.weights is not None
                 and old.weights.id == loaded.weights and old.dnx_version == __version__)
        if not fresh:
            export_onnx(loaded, path, ExportOptions(verify=False))
        self.onnx, self.manifest = path, read_manifest(path)
        return path, "fp32"

    def _derived(self, kind: str, settings: str) -> Path:
        """A file name keyed by the source file's hash and the settings, so a kept work folder never
        serves a stale conversion."""
        source, _ = self.path_for("onnx")
        key = hashlib.sha256(f"{sha256_file(source)}|{settings}".encode()).hexdigest()[:12]
        return self.workdir / f"{source.stem}.{kind}.{key}.onnx"

    def calibration_data(self) -> Path:
        """--calib-data, else --data, else the model's in-distribution default (kept apart from the
        parity set): :func:`dnx.calibration.parity.default_calibration_data`."""

        chosen = self.config.calib_data or self.config.data
        return Path(chosen) if chosen else default_calibration_data(self.model().config.labels, self.workdir)

    def _int8_onnx(self, target: str) -> tuple[Path, str]:
        """The INT8 Q/DQ file placed for ``target`` (onnxruntime, openvino): the target file itself when it
        already is one (onnxruntime runs any placement; OpenVINO only its own), else calibrated from the
        FP32 export."""
        placed = self.manifest is not None and self.manifest.calibration_target == target
        if self.onnx_precision == "int8" and (target == "onnxruntime" or placed):
            return self.onnx, "int8"
        if target == "openvino" and self.onnx_precision not in (None, "fp32"):
            raise UnavailableBackend(f"the target is {self.onnx_precision} (ov-cpu runs it as it is); give the FP32 "
                                     "export to calibrate for OpenVINO")
        c = self.config
        output = self._derived("int8", f"{target}|{c.samples}|{c.seed}")
        # Always through calibrate_qdq: its cache (keyed by the data's fingerprint, not its path) makes
        # a rerun on the same data take seconds and recalibrates when the data changed.
        result = calibrate_qdq(self.path_for("onnx")[0], output, self.calibration_data(), target=target,
                               samples=c.samples, seed=c.seed)
        return Path(result.path), "int8"

    def _fp16_onnx(self) -> tuple[Path, str]:
        if self.onnx_precision == "fp16":
            return self.onnx, "fp16"
        output = self._derived("fp16", "fp16")
        if not output.is_file():
            output = Path(convert_fp16(self.path_for("onnx")[0], output).path)
        return output, "fp16"

    def _engine(self) -> tuple[Path, str]:
        if self.engine is None:
            raise UnavailableBackend("no engine given: build one with `dnx build` and pass --engine PATH")
        engine = self.engine_manifest()
        return self.engine, (engine.precision if engine else None) or "unknown"

    def engine_batches(self) -> tuple[int | None, int | None]:
        """The engine's optimisation profile batch range, (None, None) where the manifest lacks it."""
        engine = self.engine_manifest()
        profile = engine.batch_profile if engine else None
        return (profile.min_batch, profile.max_batch) if profile else (None, None)

    def describe(self, path: Path) -> tuple[str | None, str]:
        """(path to report, sha256): files in a temporary work folder are gone after the run."""
        inside_temp = self.temporary and self.workdir in path.resolve().parents
        return (None if inside_temp else str(path)), sha256_file(path)
