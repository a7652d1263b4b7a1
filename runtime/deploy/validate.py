"""Offline validation of every object dnx writes.

Core Kubernetes kinds are checked with ``kubernetes-validate`` (the API server's OpenAPI schemas,
shipped in the wheel) in strict mode, so an unknown or misspelled field fails, against each of
:data:`KUBERNETES_VERSIONS`. An InferenceService is a KServe custom resource no schema there knows:
it is parsed into the ``kserve`` SDK's model classes (which reject unknown and missing required
fields), and each container it holds is checked as a Kubernetes container.
"""

from __future__ import annotations

from typing import Any

from dnx.core.errors import require
from dnx.runtime.deploy.kserve_isvc import isolated
from dnx.runtime.deploy.manifests import ManifestInvalid

# The oldest minor still common on managed clusters, and the newest the validator ships.
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0", "1.37.0")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def validate_object(obj: dict[str, Any], versions: tuple[str, ...] = KUBERNETES_VERSIONS) -> list[str]:
    """Raise :class:`ManifestInvalid` unless ``obj`` is valid for every version; returns what was checked."""
    if obj.get("kind") == "InferenceService":
        return validate_inference_service(obj, versions)
    require("kubernetes_validate", "deploy", "validating Kubernetes manifests")
    import kubernetes_validate

    checked = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            raise ManifestInvalid(f"{obj.get('kind')} {obj.get('metadata', {}).get('name')} is invalid for "
                                  f"Kubernetes {version} at {where or '(root)'}: {_first_line(exc)}") from None
        except kubernetes_validate.SchemaNotFoundError:
            raise ManifestInvalid(f"Kubernetes {version} has no schema for {obj.get('apiVersion')} "
                                  f"{obj.get('kind')}") from None
        checked.append(f"{obj['kind']}@{version}")
    return checked


def validate_inference_service(obj: dict[str, Any], versions: tuple[str, ...] = KUBERNETES_VERSIONS) -> list[str]:
    checked = ["InferenceService@kserve-sdk"]
    for i, container in enumerate(isolated("containers", obj)):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"check-{i}"},
               "spec": {"containers": [container]}}
        checked += validate_object(pod, versions)
    return checked
