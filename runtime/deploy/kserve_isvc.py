"""KServe ``InferenceService`` objects, built from the ``kserve`` SDK's model classes.

- Engines and ONNX files: the Triton runtime (``predictor.triton``) on the model repository's
  ``storageUri`` (KServe downloads s3/gs/https URIs and mounts ``pvc://`` claims), the image release
  chosen for the engine (``runtimeVersion``), its ``--backend-config`` flags, ``nvidia.com/gpu``.
- ``dnx serve``: a custom predictor container; the storage initializer puts the artifact under
  ``/mnt/models`` (``STORAGE_URI``), readiness on ``/readyz`` and liveness on ``/healthz``.

:func:`parse_inference_service` reads a dict back into the SDK's classes strictly (an unknown field
fails; the SDK's own deserializer would drop it silently and cannot resolve Kubernetes types).

The SDK runs in a child process (:func:`isolated`): ``import kserve`` registers KServe's
``inference.*`` gRPC messages in protobuf's default pool, and tritonclient's ``grpc_service.proto``
defines the same names, so the two cannot be imported into one interpreter (``duplicate symbol
'inference.ServerLiveRequest'``), and dnx's Triton code and tests use tritonclient.

    python -m dnx.runtime.deploy.kserve_isvc < request.json   # {"action": ..., "args": [...]} -> JSON
"""

from __future__ import annotations

import re
from typing import Any

from dnx.core.errors import DnxError, MissingDependencyError, require
from dnx.runtime.deploy.manifests import (TRITON_PORTS, DeployOptions, ManifestInvalid, http_probe, labels_for,
                                          resources_for, serve_container)

KSERVE_MOUNT = "/mnt/models"


def _sdk():
    require("kserve", "deploy", "writing KServe InferenceServices")
    import kserve
    from kubernetes import client

    return kserve, client


def _metadata(options: DeployOptions, component: str, client) -> Any:
    return client.V1ObjectMeta(name=options.name, namespace=options.namespace, labels=labels_for(options, component),
                               annotations={"serving.kserve.io/deploymentMode": "RawDeployment"})


def _triton_isvc(options: DeployOptions, image: str, flags: list[str]) -> dict[str, Any]:
    kserve, client = _sdk()
    repository, _, tag = image.rpartition(":")
    resources = resources_for(options, gpu=True)
    triton = kserve.V1beta1TritonSpec(
        storage_uri=options.repo, runtime_version=tag, protocol_version="v2",
        args=["--strict-readiness=true", *flags],
        resources=client.V1ResourceRequirements(requests=resources["requests"], limits=resources["limits"]),
        readiness_probe=_v1_probe(client, "/v2/health/ready", TRITON_PORTS["http"], 5, 2),
        liveness_probe=_v1_probe(client, "/v2/health/live", TRITON_PORTS["http"], 10, 3),
        startup_probe=_v1_probe(client, "/v2/health/ready", TRITON_PORTS["http"], 10,
                                -(-options.startup_timeout_s // 10)))
    predictor = kserve.V1beta1PredictorSpec(triton=triton, min_replicas=options.replicas,
                                            max_replicas=options.hpa_max)
    isvc = kserve.V1beta1InferenceService(
        api_version=kserve.constants.KSERVE_V1BETA1, kind=kserve.constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=_metadata(options, "triton", client), spec=kserve.V1beta1InferenceServiceSpec(predictor=predictor))
    if repository != "nvcr.io/nvidia/tritonserver":
        # KServe's Triton runtime pins nvcr.io's repository; another image needs a custom container
        raise DnxError(f"--kserve with the Triton runtime takes nvcr.io/nvidia/tritonserver images, got {image}")
    return _plain(isvc)


def _serve_isvc(options: DeployOptions, image: str, artifact_file: str) -> dict[str, Any]:
    kserve, client = _sdk()
    spec = serve_container(options, image, f"{KSERVE_MOUNT}/{artifact_file}", [])
    spec["name"] = "kserve-container"  # the name KServe's storage initializer and agent look for
    del spec["volumeMounts"]
    spec["env"] = [{"name": "STORAGE_URI", "value": options.repo}]
    container = parse_model(spec, "V1Container")
    predictor = kserve.V1beta1PredictorSpec(containers=[container], min_replicas=options.replicas,
                                            max_replicas=options.hpa_max, scale_metric="concurrency",
                                            scale_target=options.target_queue_depth)
    isvc = kserve.V1beta1InferenceService(
        api_version=kserve.constants.KSERVE_V1BETA1, kind=kserve.constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=_metadata(options, "serve", client), spec=kserve.V1beta1InferenceServiceSpec(predictor=predictor))
    return _plain(isvc)


def _v1_probe(client, path: str, port: int, period: int, failures: int):
    probe = http_probe(path, "http", period, failures)
    probe["httpGet"]["port"] = port  # KServe renames container ports; the number is stable
    return parse_model(probe, "V1Probe")


def _plain(obj: Any) -> Any:
    from kserve.api_client import ApiClient  # kubernetes' own one keeps snake_case keys of kserve models

    return ApiClient().sanitize_for_serialization(obj)


def _model_class(name: str):
    kserve, client = _sdk()
    cls = getattr(kserve.models, name, None) or getattr(client.models, name, None)
    if cls is None:
        raise DnxError(f"neither kserve nor kubernetes defines the model class {name}")
    return cls


def parse_model(data: Any, type_name: str, where: str = "") -> Any:
    """``data`` (camelCase dict from YAML) as an instance of the SDK class ``type_name``, strictly."""

    if data is None:
        return None
    inner = re.fullmatch(r"[lL]ist\[(.+)\]", type_name)
    if inner:
        if not isinstance(data, list):
            raise ManifestInvalid(f"{where or '(root)'} must be a list")
        return [parse_model(v, inner.group(1), f"{where}[{i}]") for i, v in enumerate(data)]
    inner = re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name)
    if inner:
        if not isinstance(data, dict):
            raise ManifestInvalid(f"{where or '(root)'} must be a mapping")
        value_type = inner.group(1) or inner.group(2)
        return {k: parse_model(v, value_type, f"{where}.{k}") for k, v in data.items()}
    if type_name in ("str", "int", "float", "bool", "object", "datetime", "date", "bytes"):
        return data
    cls = _model_class(type_name)
    if not isinstance(data, dict):
        raise ManifestInvalid(f"{where or '(root)'} must be a mapping ({type_name})")
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(by_json))
    if unknown:
        raise ManifestInvalid(f"{where or '(root)'}: {type_name} has no field {', '.join(unknown)}")
    kwargs = {by_json[k]: parse_model(v, cls.openapi_types[by_json[k]], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:  # the SDK's required-field and enum checks
        raise ManifestInvalid(f"{where or '(root)'}: {exc}") from None


def parse_inference_service(data: dict[str, Any]):
    """An InferenceService dict as the SDK's ``V1beta1InferenceService``; fails on any field it does not define."""

    kserve, _ = _sdk()
    if data.get("apiVersion") != kserve.constants.KSERVE_V1BETA1 or data.get("kind") != "InferenceService":
        raise ManifestInvalid(f"not a {kserve.constants.KSERVE_V1BETA1} InferenceService: "
                              f"{data.get('apiVersion')} {data.get('kind')}")
    isvc = parse_model(data, "V1beta1InferenceService")
    if isvc.spec is None or isvc.spec.predictor is None:
        raise ManifestInvalid("an InferenceService needs spec.predictor")
    return isvc


def _containers(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Parse ``data`` strictly; return its predictor's containers (a Triton spec as one) as plain dicts."""
    predictor = parse_inference_service(data).spec.predictor
    containers = [_plain(c) for c in predictor.containers or []]
    if predictor.triton is not None:  # a container spec plus KServe's storage and runtime fields
        triton = {k: v for k, v in _plain(predictor.triton).items()
                  if k not in ("storageUri", "runtimeVersion", "protocolVersion", "storage")}
        containers.append({"name": "kserve-container", "image": "tritonserver", **triton})
    return containers


def _child_main() -> None:
    import json
    import sys

    request = json.load(sys.stdin)
    args = request["args"]
    try:
        if request["action"] in ("triton", "serve"):
            options = DeployOptions(**args[0])
            result = (_triton_isvc if request["action"] == "triton" else _serve_isvc)(options, *args[1:])
        else:
            result = _containers(args[0])
        sys.stdout.write(json.dumps({"result": result}))  # the answer to the parent (isolated())
    except DnxError as exc:
        sys.stdout.write(json.dumps({"error": str(exc), "invalid": isinstance(exc, ManifestInvalid)}))


def isolated(action: str, *args: Any) -> Any:
    """Run ``action`` ("triton", "serve": build an InferenceService; "containers": check one) in a child."""
    import dataclasses
    import json
    import subprocess
    import sys

    import importlib.util

    if importlib.util.find_spec("kserve") is None:  # found, never imported, here
        raise MissingDependencyError("kserve is not installed (needed for --kserve): pip install 'dnx[deploy]'")
    args = tuple(dataclasses.asdict(a) if dataclasses.is_dataclass(a) else a for a in args)
    proc = subprocess.run([sys.executable, "-m", "dnx.runtime.deploy.kserve_isvc"], capture_output=True, text=True,
                          input=json.dumps({"action": action, "args": args}), timeout=300)
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        raise DnxError(f"the kserve SDK check failed (exit {proc.returncode}): "
                       f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}") from None
    if "error" in answer:
        raise (ManifestInvalid if answer["invalid"] else DnxError)(answer["error"])
    return answer["result"]


def triton_inference_service(options: DeployOptions, image: str, flags: list[str]) -> dict[str, Any]:
    return isolated("triton", options, image, flags)


def serve_inference_service(options: DeployOptions, image: str, artifact_file: str) -> dict[str, Any]:
    return isolated("serve", options, image, artifact_file)


if __name__ == "__main__":
    _child_main()
