"""``dnx deploy k8s``: from one artifact to a validated folder of Kubernetes (and KServe) manifests.

Which server runs the artifact:
- a TensorRT engine: Triton on GPU nodes (an engine never runs without its GPU: ``--gpu`` is required);
- an ONNX file with ``--gpu``: Triton's onnxruntime backend on GPU nodes;
- an ONNX file without: ``dnx serve`` on CPU nodes, with a Dockerfile for its image.

Everything is built and validated first (every object against each Kubernetes version in
``validate.KUBERNETES_VERSIONS``); only then are files written, each atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dnx.core.errors import DnxError
from dnx.runtime.deploy.manifests import DeployError, DeployOptions, dns_name
from dnx.core.fileio import write_bytes_atomic
from dnx.core.version import __version__
from dnx.runtime.artifact import open_artifact
from dnx.runtime.deploy import images, manifests
from dnx.runtime.deploy.kserve_isvc import serve_inference_service, triton_inference_service
from dnx.runtime.deploy.validate import validate_object
from dnx.runtime.serve.repository import export_repository, RepositoryOptions
from dnx.schemas.engine_manifest import ENGINE_SUFFIXES

SUMMARY = "deploy.json"


@dataclass(frozen=True)
class DeployPlan:
    target: str  # "triton" or "serve"
    options: DeployOptions
    image: str
    image_reason: str
    objects: dict[str, dict]  # file stem -> Kubernetes object
    texts: dict[str, str] = field(default_factory=dict)  # other files (Dockerfile)
    checks: list[str] = field(default_factory=list)  # "Kind@version" validated
    artifact: Any = None
    repository_models: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {"target": self.target, "artifact": str(self.artifact.path), "artifact_sha256": self.artifact.sha256,
                "kind": self.artifact.kind, "image": self.image, "image_reason": self.image_reason,
                "repo": self.options.repo, "replicas": self.options.replicas,
                "memory_request_mib": self.options.memory_request_mib, "memory_source": self.options.memory_source,
                "files": sorted([f"{s}.yaml" for s in self.objects] + list(self.texts)),
                "validated": self.checks}


def plan_k8s(artifact_path: str | Path, options: DeployOptions, gpu: bool, kserve: bool,
             allow_unverified: bool = False, measure=None) -> DeployPlan:
    """Build and validate every object. ``measure(artifact) -> MemoryMeasurement`` supplies dnx serve's
    memory when ``options.memory_source`` is "default" (the CLI passes ``measure_serve_memory``)."""

    art = open_artifact(artifact_path, allow_unverified=allow_unverified)
    annotations = {"dnx.io/artifact": art.path.name, "dnx.io/artifact-sha256": art.sha256,
                   "dnx.io/precision": art.precision}
    texts: dict[str, str] = {}
    if art.kind == "engine" or gpu:
        if not gpu:
            raise DeployError(f"{art.path.name} is a TensorRT engine: it runs only on the GPU it was built for; "
                              "add --gpu (Triton on GPU nodes)")
        image, why = (options.image, "given with --image") if options.image else images.triton_image(art)
        flags = images.triton_backend_flags(art)
        if options.memory_source == "default":
            # tritonserver with TensorRT cannot run here to be measured: a stated estimate
            mib = 1024 + 2 * -(-art.path.stat().st_size // 2**20)
            options = replace(options, memory_request_mib=mib, memory_source=(
                "estimate (not measured: no tritonserver with this backend here): 1 GiB + 2 x artifact size"))
        annotations.update({"dnx.io/image-reason": why, "dnx.io/memory-source": options.memory_source})
        objects = manifests.triton_objects(options, image, flags, annotations)
        if kserve:

            objects["inferenceservice"] = triton_inference_service(options, image, flags)
        target = "triton"
    else:
        pins = images.serve_pins(art.onnx_manifest)

        image, why = options.image or f"dnx-serve:{pins['dnx'] or __version__}", "the image the Dockerfile builds"
        if options.memory_source == "default":
            if measure is None:
                raise DeployError("dnx serve's memory request needs a measurement (or --memory-mib)")
            m = measure(art.path)
            options = replace(options, memory_request_mib=m.request_mib, memory_source=m.describe())
        annotations.update({"dnx.io/image-reason": why, "dnx.io/memory-source": options.memory_source})
        objects = manifests.serve_objects(options, image, art.path.name, annotations)
        if kserve:

            objects["inferenceservice"] = serve_inference_service(options, image, art.path.name)
        texts["Dockerfile"] = manifests.dockerfile(pins)
        target = "serve"
    checks = [c for obj in objects.values() for c in validate_object(obj)]
    return DeployPlan(target, options, image, why, objects, texts, checks, art)


def write_plan(plan: DeployPlan, out: str | Path, force: bool = False, repository: bool = True) -> list[Path]:
    """Write the plan's files into ``out`` (empty, or ``force``). For Triton, also the model repository the
    pods read (``out/model-repository``), to copy onto the claim or bucket ``--repo`` names."""
    import yaml

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DnxError(f"-o {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise DnxError(f"-o {out} is not empty; pass --force to overwrite dnx's files in it, or choose an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if plan.target == "triton" and repository:

        result = export_repository([plan.artifact.path], out / "model-repository",
                                   RepositoryOptions(force=True, allow_unverified=plan.artifact.unverified is not None),
                                   [plan.options.name.replace("-", "_")])
        plan = replace(plan, repository_models=result.models)
    for stem, obj in plan.objects.items():
        path = out / f"{stem}.yaml"
        write_bytes_atomic(path, yaml.safe_dump(obj, sort_keys=False).encode())
        written.append(path)
    for name, text in plan.texts.items():
        write_bytes_atomic(out / name, text.encode())
        written.append(out / name)
    summary = {**plan.summary(), "model_repository": list(plan.repository_models)}
    write_bytes_atomic(out / SUMMARY, (json.dumps(summary, indent=2) + "\n").encode())
    return [*written, out / SUMMARY]


def default_name(artifact_path: str | Path) -> str:
    name = Path(artifact_path).name
    for suffix in (".onnx", *ENGINE_SUFFIXES):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return dns_name(name)
