"""`dnx deploy k8s`: Kubernetes (and KServe) manifests for an artifact, validated before they are written."""

from __future__ import annotations

import click

from dnx.cli.group import cli
from dnx.cli.options import output_option
from dnx.core.errors import require
from dnx.runtime.deploy.k8s import default_name, plan_k8s, write_plan
from dnx.runtime.deploy.manifests import DeployOptions
from dnx.runtime.deploy.memory import measure_serve_memory


@cli.group("deploy")
def deploy_group() -> None:
    """Deploy past one machine: manifests for Kubernetes and KServe."""


@deploy_group.command("k8s")
@click.argument("artifact", type=click.Path())
@click.option("--repo", required=True,
              help="Where the pods read the model: pvc://CLAIM[/path] (a volume), or s3:// gs:// https:// "
                   "(Triton and KServe read those directly).")
@output_option("Folder to write.", folder=True, long="--out", dest="out", required=True)
@click.option("--replicas", default=2, show_default=True, type=click.IntRange(min=1),
              help="Replicas (and the autoscaler's minimum).")
@click.option("--max-replicas", type=click.IntRange(min=1), help="Autoscaler's maximum (default: 4 x --replicas).")
@click.option("--gpu", is_flag=True,
              help="Triton on GPU nodes (required for engines; ONNX files: onnxruntime backend).")
@click.option("--kserve", is_flag=True, help="Also write a KServe InferenceService.")
@click.option("--name", help="Kubernetes name stem (default: from the artifact's file name).")
@click.option("--namespace", help="Namespace to put in every object (default: none, kubectl's current).")
@click.option("--image", help="Container image (default: tritonserver of the engine's TensorRT release, or "
                              "dnx-serve:VERSION built from the written Dockerfile).")
@click.option("--memory-mib", type=click.IntRange(min=64),
              help="Memory request per pod; default: measured (dnx serve started here, peak RSS read from /proc).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="dnx serve: CPU threads per pod (its CPU request).")
@click.option("--startup-timeout-s", default=600, show_default=True, type=click.IntRange(min=10),
              help="How long the startupProbe waits for the model to load.")
@click.option("--target-queue-ms", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Triton autoscaler target: mean queue time per request.")
@click.option("--force", is_flag=True, help="Write into a non-empty -o folder.")
@click.option("--allow-unverified", is_flag=True,
              help="Deploy an artifact whose parity certificate failed or is missing.")
def k8s_cmd(artifact, repo, out, replicas, max_replicas, gpu, kserve, name, namespace, image, memory_mib, threads,
            startup_timeout_s, target_queue_ms, force, allow_unverified) -> None:
    """Write Deployment, Service, PodDisruptionBudget, HPA (+ prometheus-adapter rule, Dockerfile or Triton
    model repository, InferenceService) for ARTIFACT into OUT; each is validated first."""

    require("yaml", "deploy", "dnx deploy k8s")
    require("kubernetes_validate", "deploy", "dnx deploy k8s")
    options = DeployOptions(name=name or default_name(artifact), repo=repo, replicas=replicas,
                            max_replicas=max_replicas, namespace=namespace, image=image,
                            memory_request_mib=memory_mib or 1024,
                            memory_source="given with --memory-mib" if memory_mib else "default", cpu=threads,
                            startup_timeout_s=startup_timeout_s, target_queue_ms=target_queue_ms).validate()

    def measure(path):
        click.echo(f"dnx deploy: measuring dnx serve's memory on {path.name} ...", err=True)
        return measure_serve_memory(path, threads=threads)

    plan = plan_k8s(artifact, options, gpu=gpu, kserve=kserve, allow_unverified=allow_unverified, measure=measure)
    for path in write_plan(plan, out, force=force):
        click.echo(str(path))
    versions = sorted({c.split("@")[1] for c in plan.checks})
    click.echo(f"dnx deploy: {plan.target} on {plan.image} ({plan.image_reason}); memory request "
               f"{plan.options.memory_request_mib} MiB ({plan.options.memory_source}); validated "
               f"{len(plan.objects)} objects against {', '.join(versions)}", err=True)
