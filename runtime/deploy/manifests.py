"""Kubernetes objects (plain dicts) for one dnx artifact: Triton on GPU nodes, or ``dnx serve`` on CPU nodes.

Each object is the smallest complete form of what docs/triton.md "Several instances" asks for:

- Triton: Deployment (tritonserver image of the engine's TensorRT release, ``nvidia.com/gpu``, the
  model repository as a volume, the ``--backend-config`` flags the artifact needs, probes on
  ``/v2/health/{ready,live}``, a startupProbe long enough for engine load), Service (HTTP 8000, gRPC
  8001, metrics 8002), PodDisruptionBudget, and an HPA on queue time per request, exposed by the
  prometheus-adapter rule written beside it.
- ``dnx serve``: Deployment (probes on ``/readyz`` and ``/healthz``, a grace period longer than the
  server's drain), Service, PodDisruptionBudget, HPA on CPU and ``dnx_queue_depth``.

Memory requests come from a measurement (``dnx serve``'s peak RSS, see ``memory.py``) or, for Triton,
from a stated estimate; :class:`DeployOptions` carries where the number came from into an annotation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from dnx.core.errors import DnxError
from dnx.runtime.serve.supervisor import GRACEFUL_S as GRACEFUL_SHUTDOWN_S


MODELS_DIR = "/models"
PRE_STOP_S = 5  # endpoints controllers and load balancers stop routing to the pod before it drains
TRITON_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
SERVE_PORT = 8000
TRITON_QUEUE_METRIC = "triton_queue_us_per_request"
SERVE_QUEUE_METRIC = "dnx_queue_depth"
_DNS = re.compile(r"[^a-z0-9-]+")


class ManifestInvalid(DnxError):
    """A generated object the schemas refuse (a dnx bug, or a hand edit)."""


class DeployError(DnxError):
    """Options or an artifact the manifests cannot be made from."""


@dataclass(frozen=True, kw_only=True)
class DeployOptions:
    name: str  # the Kubernetes name stem (DNS-1123 label)
    repo: str  # pvc://CLAIM[/sub/path], or s3:// gs:// https:// (Triton and KServe read those directly)
    replicas: int = 2
    max_replicas: int | None = None  # HPA ceiling; default 4 x replicas
    namespace: str | None = None
    image: str | None = None  # None: chosen from the artifact (images.py) or dnx-serve:<dnx version>
    memory_request_mib: int = 1024
    memory_source: str = "default"
    cpu: int = 1  # CPU request per pod (dnx serve: its --threads)
    startup_timeout_s: int = 600  # engine deserialization + warm-up may take minutes on a large model
    target_queue_ms: float = 20.0  # Triton HPA target: queue time per request
    target_queue_depth: int = 8  # dnx serve HPA target: requests in flight per pod
    max_batch: int = 8

    def validate(self) -> "DeployOptions":
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?", self.name):
            raise DeployError(f"--name must be a DNS-1123 label of at most 40 characters (a-z, 0-9, '-'), "
                              f"got {self.name!r}")
        if self.replicas < 1 or (self.max_replicas is not None and self.max_replicas < self.replicas):
            raise DeployError("--replicas must be >= 1 and --max-replicas >= --replicas")
        if not re.match(r"^(pvc|s3|gs|https?)://\S+", self.repo):
            raise DeployError(f"--repo must be pvc://CLAIM[/path], s3://, gs:// or https:// (where the pods read the "
                              f"model repository), got {self.repo!r}")
        if self.memory_request_mib < 64 or self.cpu < 1 or self.startup_timeout_s < 10:
            raise DeployError("memory request must be >= 64 MiB, cpu >= 1, startup timeout >= 10 s")
        return self

    @property
    def hpa_max(self) -> int:
        return self.max_replicas or 4 * self.replicas


def dns_name(stem: str) -> str:
    """A DNS-1123 label from a file stem: fmnist.int8-onnxruntime -> fmnist-int8-onnxruntime."""
    name = _DNS.sub("-", stem.lower()).strip("-")[:40].strip("-")
    return name or "dnx-model"


def _meta(name: str, options: DeployOptions, component: str, annotations: dict | None = None) -> dict:
    meta: dict[str, Any] = {"name": name, "labels": labels_for(options, component)}
    if options.namespace:
        meta["namespace"] = options.namespace
    if annotations:
        meta["annotations"] = annotations
    return meta


def labels_for(options: DeployOptions, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": options.name, "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "dnx"}


def repo_volume(options: DeployOptions) -> tuple[list[dict], list[dict], str]:
    """``(volumes, mounts, path)``: a pvc:// repository becomes a read-only volume at /models (path is the
    folder inside the pod); an object-store URI is passed to the server as it is (no volume)."""
    if not options.repo.startswith("pvc://"):
        return [], [], options.repo
    claim, _, sub = options.repo[len("pvc://"):].partition("/")
    volumes = [{"name": "model-repository", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}]
    mounts = [{"name": "model-repository", "mountPath": MODELS_DIR, "readOnly": True}]
    return volumes, mounts, f"{MODELS_DIR}/{sub}".rstrip("/")


def http_probe(path: str, port: str, period: int, failures: int, timeout: int = 2) -> dict:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": timeout}


def resources_for(options: DeployOptions, gpu: bool) -> dict:
    memory = options.memory_request_mib
    limits: dict[str, Any] = {"memory": f"{math.ceil(memory * 1.5)}Mi"}  # headroom over the measured peak
    if gpu:
        limits["nvidia.com/gpu"] = "1"  # extended resources: the request equals the limit
    return {"requests": {"cpu": str(options.cpu), "memory": f"{memory}Mi"}, "limits": limits}


def _deployment(name: str, options: DeployOptions, component: str, container: dict, volumes: list[dict],
                grace_s: int, annotations: dict, gpu: bool) -> dict:
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace_s,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
        "containers": [container],
    }
    if volumes:
        pod_spec["volumes"] = volumes
    if gpu:
        pod_spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    port = TRITON_PORTS["metrics"] if component == "triton" else SERVE_PORT
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(name, options, component, annotations),
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": labels_for(options, component)},
            # a new version comes up (and is ready) before an old pod is removed: no capacity dip
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels_for(options, component),
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                                             "prometheus.io/path": "/metrics"}},
                "spec": pod_spec,
            },
        },
    }


def _service(name: str, options: DeployOptions, component: str, ports: dict[str, int]) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, options, component),
            "spec": {"selector": labels_for(options, component),
                     "ports": [{"name": p, "port": n, "targetPort": p, "protocol": "TCP"} for p, n in ports.items()]}}


def _pdb(name: str, options: DeployOptions, component: str) -> dict:
    # one pod at a time may be evicted (node drains, upgrades); the rest keep serving
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(name, options, component),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels_for(options, component)}}}


def _hpa(name: str, deployment: str, options: DeployOptions, component: str, metrics: list[dict]) -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(name, options, component),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
                     "minReplicas": options.replicas, "maxReplicas": options.hpa_max, "metrics": metrics,
                     # scale up at once, scale down slowly: a replica costs an engine load to get back
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}}


def _pods_metric(metric: str, average: str) -> dict:
    return {"type": "Pods", "pods": {"metric": {"name": metric}, "target": {"type": "AverageValue",
                                                                              "averageValue": average}}}


def adapter_rules(component: str) -> dict:
    """prometheus-adapter's custom-metrics rule (its ``--config`` file) exposing the HPA's metric per pod."""
    overrides = {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    if component == "triton":
        # Triton's counters: cumulative queue microseconds and successful requests; their rates' ratio is
        # the mean queue time per request over the last minute (0 when idle, not NaN).
        query = ("sum(rate(nv_inference_queue_duration_us{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>) / "
                 "clamp_min(sum(rate(nv_inference_request_success{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>), 0.001)")
        rule = {"seriesQuery": 'nv_inference_queue_duration_us{namespace!="",pod!=""}',
                "resources": {"overrides": overrides},
                "name": {"matches": "^nv_inference_queue_duration_us$", "as": TRITON_QUEUE_METRIC},
                "metricsQuery": query}
    else:
        rule = {"seriesQuery": f'{SERVE_QUEUE_METRIC}{{namespace!="",pod!=""}}',
                "resources": {"overrides": overrides},
                "name": {"matches": f"^{SERVE_QUEUE_METRIC}$", "as": SERVE_QUEUE_METRIC},
                "metricsQuery": f"sum(avg_over_time({SERVE_QUEUE_METRIC}{{<<.LabelMatchers>>}}[1m])) by (<<.GroupBy>>)"}
    return {"rules": [rule]}


def adapter_configmap(options: DeployOptions, component: str) -> dict:
    import yaml

    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(f"{options.name}-prometheus-adapter-rules", options, component),
            "data": {"config.yaml": yaml.safe_dump(adapter_rules(component), sort_keys=False)}}


def triton_container(options: DeployOptions, image: str, flags: list[str], mounts: list[dict],
                     repo_path: str) -> dict:
    args = ["tritonserver", f"--model-repository={repo_path}", "--strict-readiness=true",
            f"--exit-timeout-secs={GRACEFUL_SHUTDOWN_S}",
            # a new version folder (NAME/2) is loaded beside the old one, which serves until it is ready
            "--model-control-mode=poll", "--repository-poll-secs=30", *flags]
    period = 10
    return {
        "name": "tritonserver", "image": image, "args": args,
        "ports": [{"name": p, "containerPort": n, "protocol": "TCP"} for p, n in TRITON_PORTS.items()],
        "resources": resources_for(options, gpu=True),
        "startupProbe": http_probe("/v2/health/ready", "http", period, math.ceil(options.startup_timeout_s / period)),
        "readinessProbe": http_probe("/v2/health/ready", "http", 5, 2),
        "livenessProbe": http_probe("/v2/health/live", "http", 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_S)]}}},
        "volumeMounts": [*mounts, {"name": "dshm", "mountPath": "/dev/shm"}],
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def triton_objects(options: DeployOptions, image: str, flags: list[str], annotations: dict) -> dict[str, dict]:
    """The Triton set, by file stem."""
    options.validate()
    volumes, mounts, repo_path = repo_volume(options)
    # the Python backend (dnx's preprocessing model) passes tensors through shared memory
    volumes = [*volumes, {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}]
    name = f"{options.name}-triton"
    container = triton_container(options, image, flags, mounts, repo_path)
    grace = GRACEFUL_SHUTDOWN_S + PRE_STOP_S + 10
    queue_us = str(int(options.target_queue_ms * 1000))
    return {
        "triton-deployment": _deployment(name, options, "triton", container, volumes, grace, annotations, gpu=True),
        "triton-service": _service(name, options, "triton", TRITON_PORTS),
        "triton-pdb": _pdb(name, options, "triton"),
        "triton-hpa": _hpa(name, name, options, "triton", [_pods_metric(TRITON_QUEUE_METRIC, queue_us)]),
        "prometheus-adapter-rules": adapter_configmap(options, "triton"),
    }


def serve_container(options: DeployOptions, image: str, artifact_path: str, mounts: list[dict]) -> dict:
    args = ["serve", artifact_path, "--host", "0.0.0.0", "--port", str(SERVE_PORT), "--backend", "onnxruntime",
            "--threads", str(options.cpu), "--max-batch", str(options.max_batch)]
    return {
        "name": "dnx-serve", "image": image, "args": args,
        "ports": [{"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"}],
        "resources": resources_for(options, gpu=False),
        "startupProbe": http_probe("/readyz", "http", 5, math.ceil(options.startup_timeout_s / 5)),
        "readinessProbe": http_probe("/readyz", "http", 5, 2),
        "livenessProbe": http_probe("/healthz", "http", 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_S)]}}},
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
    }


def serve_objects(options: DeployOptions, image: str, artifact_file: str, annotations: dict) -> dict[str, dict]:
    """The ``dnx serve`` set, by file stem; the artifact is read from the repository volume."""
    options.validate()
    volumes, mounts, repo_path = repo_volume(options)
    if not volumes:
        raise DeployError(f"dnx serve reads its artifact from a volume: use --repo pvc://CLAIM[/path], or --kserve "
                          f"(whose storage initializer downloads {options.repo.split(':')[0]}:// URIs)")
    name = f"{options.name}-serve"
    container = serve_container(options, image, f"{repo_path}/{artifact_file}", mounts)
    # uvicorn answers what is in flight for up to GRACEFUL_SHUTDOWN_S after SIGTERM; the kubelet must wait longer
    grace = GRACEFUL_SHUTDOWN_S + PRE_STOP_S + 10
    metrics = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                           "averageUtilization": 70}}},
               _pods_metric(SERVE_QUEUE_METRIC, str(options.target_queue_depth))]
    return {
        "serve-deployment": _deployment(name, options, "serve", container, volumes, grace, annotations, gpu=False),
        "serve-service": _service(name, options, "serve", {"http": SERVE_PORT}),
        "serve-pdb": _pdb(name, options, "serve"),
        "serve-hpa": _hpa(name, name, options, "serve", metrics),
        "prometheus-adapter-rules": adapter_configmap(options, "serve"),
    }


def dockerfile(pins: dict[str, str]) -> str:
    """A Dockerfile for the ``dnx serve`` image, every version pinned from the artifact's manifest.
    Build it from a dnx checkout at that version: ``docker build -f OUT/Dockerfile .``."""
    lines = [
        "# dnx serve on CPU: versions pinned from the artifact's manifest (the packages that exported and",
        "# certified it). Build from a dnx checkout at the same version: docker build -f Dockerfile <checkout>",
        f"FROM python:{pins['python']}-slim",
        "ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1",
    ]
    if "torch" in pins:
        lines.append(f"RUN pip install torch=={pins['torch']} --index-url https://download.pytorch.org/whl/cpu")
    extra = " ".join(f"{pkg}=={pins[key]}" for key, pkg in (("onnx", "onnx"), ("onnxruntime", "onnxruntime-gpu"))
                     if key in pins)
    lines += [
        "COPY . /src",
        f"RUN pip install '/src[serve]' {extra}".rstrip(),
        f"RUN python -c \"import dnx, sys; sys.exit(dnx.__version__ != '{pins['dnx']}')\"  # the checkout's version",
        "USER 1000",
        f"EXPOSE {SERVE_PORT}",
        'ENTRYPOINT ["dnx"]',
        'CMD ["serve", "--help"]',
        "",
    ]
    return "\n".join(lines)
