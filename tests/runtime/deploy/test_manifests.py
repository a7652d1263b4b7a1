"""`dnx deploy k8s`: the manifests for an engine and for an ONNX file, validated with kubernetes-validate
(strict, three Kubernetes minors) and the kserve SDK; the validator is shown live on broken objects."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys

import pytest

pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (dnx[deploy])")
if importlib.util.find_spec("kserve") is None:  # imported only in a child (it clashes with tritonclient)
    pytest.skip("the kserve SDK is not installed (dnx[deploy])", allow_module_level=True)
yaml = pytest.importorskip("yaml")

from dnx.runtime.deploy import images
from dnx.runtime.deploy.k8s import plan_k8s, write_plan
from dnx.runtime.deploy.manifests import DeployError, DeployOptions
from dnx.runtime.deploy.validate import KUBERNETES_VERSIONS, ManifestInvalid, validate_object
from dnx.runtime.serve.supervisor import GRACEFUL_S as GRACEFUL_SHUTDOWN_S

CLI = [sys.executable, "-c", "import sys; from dnx.cli import main; main(sys.argv[1:])"]


@pytest.fixture
def engine(tmp_path, fmnist_onnx):
    """A fake engine file (NOT TensorRT) with a dnx engine manifest: TensorRT 10.8, version-compatible."""
    from dnx.schemas.manifest import read_manifest
    from dnx.schemas.engine_manifest import ENGINE_SCHEMA

    path = tmp_path / "fmnist_fp16.engine"
    path.write_bytes(b"not a real TensorRT plan")

    def write(version="10.8.0.43", version_compat=True):
        manifest = {"schema": ENGINE_SCHEMA, "artifact": "tensorrt-engine", "tensorrt_version": version,
                    "version_compat": version_compat, "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"},
                    "precision": "fp16", "batch_profile": {"min_batch": 1, "opt_batch": 8, "max_batch": 16},
                    "inputs": [{"name": "input", "shape": [-1, 1, 28, 28], "dtype": "float32"}],
                    "outputs": [{"name": "logits", "shape": [-1, 10], "dtype": "float32"}],
                    "source_onnx": {"path": str(fmnist_onnx), "manifest": read_manifest(fmnist_onnx).to_dict()}}
        (tmp_path / "fmnist_fp16.engine.json").write_text(json.dumps(manifest))
        return path

    return write


def options(**changes) -> DeployOptions:
    base = dict(name="fmnist", repo="pvc://models/fmnist", replicas=3, memory_request_mib=1216,
                memory_source="given")
    return DeployOptions(**{**base, **changes})


def test_engine_set_is_triton_on_gpu_with_the_engines_release(engine, tmp_path):
    plan = plan_k8s(engine(), options(), gpu=True, kserve=True)
    assert plan.target == "triton"
    assert set(plan.objects) == {"triton-deployment", "triton-service", "triton-pdb", "triton-hpa",
                                 "prometheus-adapter-rules", "inferenceservice"}
    # version-compatible 10.8 runs on the newest 10.x release the table knows
    assert plan.image == "nvcr.io/nvidia/tritonserver:25.08-py3"
    pod = plan.objects["triton-deployment"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert "--backend-config=tensorrt,version-compatible=true" in c["args"]
    assert "--model-repository=/models/fmnist" in c["args"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # engine load
    assert pod["terminationGracePeriodSeconds"] > GRACEFUL_SHUTDOWN_S
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "models"
    ports = {p["name"]: p["port"] for p in plan.objects["triton-service"]["spec"]["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    hpa = plan.objects["triton-hpa"]["spec"]
    metric = hpa["metrics"][0]["pods"]
    rules = yaml.safe_load(plan.objects["prometheus-adapter-rules"]["data"]["config.yaml"])["rules"]
    assert metric["metric"]["name"] == rules[0]["name"]["as"]  # the HPA asks for what the adapter exposes
    assert "nv_inference_queue_duration_us" in rules[0]["metricsQuery"]
    assert metric["target"]["averageValue"] == "20000"  # 20 ms in Triton's microseconds
    isvc = plan.objects["inferenceservice"]["spec"]["predictor"]["triton"]
    assert isvc["runtimeVersion"] == "25.08-py3" and isvc["storageUri"] == "pvc://models/fmnist"
    assert sorted({c.split("@")[1] for c in plan.checks}) == sorted([*KUBERNETES_VERSIONS, "kserve-sdk"])

    written = write_plan(plan, tmp_path / "out")
    assert (tmp_path / "out" / "model-repository" / "fmnist" / "config.pbtxt").is_file()
    for path in written:
        if path.suffix == ".yaml":
            validate_object(yaml.safe_load(path.read_text()))  # the files on disk, not only the dicts


def test_exact_engine_needs_its_own_release_and_names_the_fix(engine):
    assert plan_k8s(engine("10.3.0.26", False), options(), gpu=True, kserve=False).image.endswith(":24.08-py3")
    with pytest.raises(images.ImageError, match=r"TensorRT 10.16.1.11.*--image"):
        plan_k8s(engine("10.16.1.11", False), options(), gpu=True, kserve=False)
    plan = plan_k8s(engine("10.16.1.11", False), options(image="registry.local/tritonserver:custom"), gpu=True,
                    kserve=False)
    assert plan.image == "registry.local/tritonserver:custom"
    no_compat = plan.objects["triton-deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(a.startswith("--backend-config") for a in no_compat)


def test_engine_without_gpu_is_refused(engine):
    with pytest.raises(DeployError, match="add --gpu"):
        plan_k8s(engine(), options(), gpu=False, kserve=False)


def test_onnx_set_is_dnx_serve_with_pinned_dockerfile(fmnist_onnx):
    plan = plan_k8s(fmnist_onnx, options(), gpu=False, kserve=True)
    assert plan.target == "serve"
    assert set(plan.objects) == {"serve-deployment", "serve-service", "serve-pdb", "serve-hpa",
                                 "prometheus-adapter-rules", "inferenceservice"}
    pod = plan.objects["serve-deployment"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["terminationGracePeriodSeconds"] >= GRACEFUL_SHUTDOWN_S + 5
    assert c["resources"]["requests"]["memory"] == "1216Mi"
    assert c["args"][:2] == ["serve", f"/models/fmnist/{fmnist_onnx.name}"]
    metrics = plan.objects["serve-hpa"]["spec"]["metrics"]
    assert {m["type"] for m in metrics} == {"Resource", "Pods"}
    assert metrics[1]["pods"]["metric"]["name"] == "dnx_queue_depth"
    docker = plan.texts["Dockerfile"]
    from dnx.schemas.manifest import read_manifest

    m = read_manifest(fmnist_onnx)
    assert f"FROM python:{m.python}-slim" in docker and f"onnx=={m.onnx_version}" in docker
    assert f"torch=={m.torch_version.split('+')[0]}" in docker and "onnxruntime-gpu==" in docker
    container = plan.objects["inferenceservice"]["spec"]["predictor"]["containers"][0]
    assert container["name"] == "kserve-container"
    assert {"name": "STORAGE_URI", "value": "pvc://models/fmnist"} in container["env"]
    assert "Pod@1.29.0" in plan.checks  # the predictor container checked as a Kubernetes container


def test_onnx_on_gpu_is_triton_onnxruntime(fmnist_onnx):
    plan = plan_k8s(fmnist_onnx, options(repo="s3://bucket/repo"), gpu=True, kserve=True)
    c = plan.objects["triton-deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert "--model-repository=s3://bucket/repo" in c["args"]
    assert plan.image == f"nvcr.io/nvidia/tritonserver:{images.DEFAULT_TRITON_RELEASE}-py3"


def test_dnx_serve_without_a_volume_says_what_to_use(fmnist_onnx):
    with pytest.raises(DeployError, match=r"pvc://CLAIM"):
        plan_k8s(fmnist_onnx, options(repo="s3://bucket/repo"), gpu=False, kserve=False)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_validator_is_live_on_broken_objects(fmnist_onnx, version):
    plan = plan_k8s(fmnist_onnx, options(), gpu=False, kserve=True)
    deployment = copy.deepcopy(plan.objects["serve-deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(ManifestInvalid, match=r"paht"):
        validate_object(deployment, (version,))
    deployment = copy.deepcopy(plan.objects["serve-deployment"])
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(ManifestInvalid, match=r"spec/replicas"):
        validate_object(deployment, (version,))
    hpa = copy.deepcopy(plan.objects["serve-hpa"])
    del hpa["spec"]["maxReplicas"]
    with pytest.raises(ManifestInvalid, match="maxReplicas"):
        validate_object(hpa, (version,))


def test_the_kserve_check_is_live(fmnist_onnx):
    isvc = plan_k8s(fmnist_onnx, options(), gpu=False, kserve=True).objects["inferenceservice"]
    assert validate_object(isvc)[0] == "InferenceService@kserve-sdk"
    broken = copy.deepcopy(isvc)
    broken["spec"]["predictor"]["minReplica"] = 2
    with pytest.raises(ManifestInvalid, match="minReplica"):
        validate_object(broken)
    broken = copy.deepcopy(isvc)
    broken["spec"]["predictor"]["containers"][0]["resources"]["limits"]["memory"] = ["1Gi"]
    with pytest.raises(ManifestInvalid):
        validate_object(broken)


def test_options_are_checked():
    with pytest.raises(DeployError, match="DNS-1123"):
        options(name="Bad_Name").validate()
    with pytest.raises(DeployError, match="--repo"):
        options(repo="/local/path").validate()


def test_cli_measures_memory_and_writes_validated_files(fmnist_onnx, tmp_path):
    out = tmp_path / "k8s"
    r = subprocess.run([*CLI, "deploy", "k8s", str(fmnist_onnx), "--repo", "pvc://models", "-o", str(out),
                        "--replicas", "3", "--kserve"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "deploy.json").read_text())
    assert summary["memory_source"].startswith("measured: dnx serve peak RSS")
    peak = float(summary["memory_source"].split("(VmHWM) ")[1].split(" MiB")[0])
    assert summary["memory_request_mib"] >= peak * 1.25 and summary["memory_request_mib"] % 64 == 0
    deployment = yaml.safe_load((out / "serve-deployment.yaml").read_text())
    assert deployment["spec"]["replicas"] == 3
    assert "validated 6 objects against 1.29.0, 1.33.0, 1.37.0" in r.stderr
    again = subprocess.run([*CLI, "deploy", "k8s", str(fmnist_onnx), "--repo", "pvc://models", "-o", str(out),
                            "--memory-mib", "512"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "is not empty; pass --force" in again.stderr and "Traceback" not in again.stderr
    bad = subprocess.run([*CLI, "deploy", "k8s", str(fmnist_onnx), "--repo", "models", "-o", str(tmp_path / "x"),
                          "--memory-mib", "512"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "--repo must be" in bad.stderr and not (tmp_path / "x").exists()
