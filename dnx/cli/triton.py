"""`dnx triton export` (a Triton model repository) and `dnx triton serve` (dnx.load inside a real tritonserver)."""

from __future__ import annotations

import logging

import click

from dnx.cli.group import cli
from dnx.cli.options import backend_options
from dnx.core.errors import DnxError, require
from dnx.runtime.serve.repository import export_repository, RepositoryOptions
from dnx.runtime.serve.triton import serve, TritonServeConfig


def _sizes(value: str | None) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise DnxError(f"--preferred-batch takes comma-separated positive integers (4,8), got {value!r}") from exc
    return sizes


@cli.group("triton")
def triton_group() -> None:
    """Triton Inference Server: write a model repository, or serve an artifact in a real tritonserver."""


@triton_group.command("export")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option("--repo", required=True, type=click.Path(file_okay=False), help="Model repository folder to write.")
@click.option("--name", "names", multiple=True, help="Model name, once per artifact (default: each file's stem).")
@click.option("--max-batch", type=click.IntRange(min=1),
              help="max_batch_size (default: the engine profile's max; 8 for a dynamic-batch ONNX file).")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Model instances per device (instance_group count).")
@click.option("--kind", type=click.Choice(["gpu", "cpu"]), default="gpu", show_default=True,
              help="instance_group kind of the network (engines need gpu).")
@click.option("--preferred-batch", help="Dynamic batcher's preferred batch sizes, e.g. 4,8.")
@click.option("--queue-delay-us", default=100, show_default=True, type=click.IntRange(0, 10_000_000),
              help="Dynamic batcher's max_queue_delay_microseconds.")
@click.option("--trt-accelerator/--no-trt-accelerator", default=False, show_default=True,
              help="ONNX files: run through onnxruntime's TensorRT provider at the artifact's precision.")
@click.option("--ensemble/--no-ensemble", default=True, show_default=True,
              help="Also write NAME_preprocess (Python backend) and the image-in ensemble NAME_image.")
@click.option("--force", is_flag=True, help="Write into a non-empty --repo, replacing dnx's model folders there.")
@click.option("--allow-unverified", is_flag=True,
              help="Export artifacts whose parity certificate failed, changed or is missing.")
def export_cmd(artifacts, repo, names, max_batch, instances, kind, preferred_batch, queue_delay_us,
               trt_accelerator, ensemble, force, allow_unverified) -> None:
    """Write a Triton model repository for ARTIFACTS (ONNX files from `dnx export`, engines from `dnx build`)."""

    require("tritonclient.grpc.model_config_pb2", "triton", "dnx triton export")
    options = RepositoryOptions(max_batch=max_batch, instances=instances, kind=kind,
                                preferred_batch=_sizes(preferred_batch), queue_delay_us=queue_delay_us,
                                tensorrt_accelerator=trt_accelerator, ensemble=ensemble, force=force,
                                allow_unverified=allow_unverified)
    result = export_repository(artifacts, repo, options, list(names) or None)
    for name in result.models:
        click.echo(f"{result.repo / name}/config.pbtxt")
    needs = "".join(f" {arg}" for arg in result.server_args)  # e.g. what a version-compatible engine needs
    click.echo(f"serve it with: tritonserver --model-repository {result.repo}{needs}", err=True)


@triton_group.command("serve")
@click.argument("artifact", type=click.Path())
@click.option("--name", help="Model name (default: the file's stem); NAME_image takes encoded images.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--http-port", default=8000, show_default=True, type=int, help="KServe v2 HTTP port (0: any free).")
@click.option("--grpc-port", default=8001, show_default=True, type=int, help="KServe v2 gRPC port (0: any free).")
@click.option("--metrics-port", default=8002, show_default=True, type=int, help="Prometheus port (0: any free).")
@backend_options()
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(min=1),
              help="Largest batch Triton's dynamic batcher forms.")
@click.option("--dynamic-batching/--no-dynamic-batching", default=True, show_default=True)
@click.option("--queue-delay-us", default=100, show_default=True, type=click.IntRange(0, 10_000_000),
              help="How long the batcher waits to fill a batch.")
@click.option("--preferred-batch", help="Preferred batch sizes, e.g. 4,8.")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Model instances (parallel executions of the same loaded model).")
@click.option("--allow-unverified", is_flag=True,
              help="Serve an artifact whose parity certificate failed, changed or is missing.")
def serve_cmd(artifact, name, host, http_port, grpc_port, metrics_port, backend, device, threads, max_batch,
              dynamic_batching, queue_delay_us, preferred_batch, instances, allow_unverified) -> None:
    """Serve ARTIFACT with dnx.load inside a real Triton Inference Server (KServe v2 HTTP/gRPC).

    Stops cleanly on SIGINT/SIGTERM (exit 0), leaving no server process behind.
    """

    require("pytriton", "triton", "dnx triton serve")
    # PyTriton logs each failure with a traceback before raising it; dnx reports it once, as one line.
    logging.getLogger("pytriton").setLevel(logging.CRITICAL)
    config = TritonServeConfig(artifact=artifact, model_name=name, host=host, http_port=http_port,
                               grpc_port=grpc_port, metrics_port=metrics_port, backend=backend, device=device,
                               threads=threads, max_batch=max_batch, dynamic_batching=dynamic_batching,
                               queue_delay_us=queue_delay_us, preferred_batch=_sizes(preferred_batch),
                               instances=instances, allow_unverified=allow_unverified)

    served = []

    def ready(server) -> None:
        served.append(server)
        image = f", {server.image_model_name} (image bytes)" if server.image_model_name else ""
        click.echo(f"dnx triton serve: ready: model {server.model_name}{image} on http {server.url('http')}, "
                   f"grpc {server.url('grpc')}, metrics {server.url('metrics')} "
                   f"(backend {server.classifier.choice.backend})", err=True)

    click.echo(f"dnx triton serve: loading {artifact} ...", err=True)
    serve(config, on_ready=ready)
    left = served[0].left_behind if served else {}
    if any(left.values()):
        click.echo("dnx: note: tritonserver did not stop cleanly; removed what it left: "
                   + ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in left.items() if n), err=True)
    click.echo("dnx triton serve: stopped", err=True)
