"""`dnx serve`: the HTTP classification service (FastAPI + uvicorn) over `dnx.load`."""

from __future__ import annotations

import click

from dnx.cli.group import cli


@cli.command("serve")
@click.argument("artifact", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=int, help="Port (0: any free port).")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "openvino", "tensorrt"]), default="auto",
              show_default=True, help="Runtime backend (auto: see the README's rule).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(min=0), help="CPU intra-op threads (default: the backend's).")
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(min=1),
              help="Largest micro-batch of concurrent requests (1: no batching).")
@click.option("--max-delay-ms", default=2.0, show_default=True, type=click.FloatRange(0, 10_000),
              help="How long the first request of a batch waits for others.")
@click.option("--max-queue", default=64, show_default=True, type=click.IntRange(min=1),
              help="Requests admitted at once; more are answered 503 with Retry-After.")
@click.option("--max-body-mb", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest request body; larger ones get 413.")
@click.option("--top-k", "default_top_k", default=5, show_default=True, type=click.IntRange(min=1),
              help="Predictions per image when the request has no ?top_k=.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Server processes, each with its own model copy.")
@click.option("--allow-unverified", is_flag=True,
              help="Serve a dnx artifact whose parity certificate failed, is missing or no longer matches it.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="fp32: run the artifact as written; bf16: OpenVINO BF16 (AVX-512 BF16/AMX CPUs), checked "
                   "against the file on real data at load.")
@click.option("--mean", help="Per-channel mean, for ONNX files without a dnx manifest.")
@click.option("--std", help="Per-channel std, for ONNX files without a dnx manifest.")
@click.option("--image-size", type=int, help="Input size, for ONNX files without a dnx manifest.")
def serve_cmd(artifact, host, port, backend, device, threads, max_batch, max_delay_ms, max_queue, max_body_mb,
              default_top_k, workers, allow_unverified, precision, mean, std, image_size) -> None:
    """Serve ARTIFACT (ONNX or engine) over HTTP: POST /v1/classify, GET /v1/model, /healthz, /readyz, /metrics.

    Stops gracefully on SIGINT/SIGTERM: requests in flight are answered, then it exits 0.
    """
    from dnx.cli.common import manual_preprocess
    from dnx.errors import require
    from dnx.runtime.serve.http import ServeConfig, serve

    for module in ("fastapi", "uvicorn", "prometheus_client", "multipart"):
        require(module, "serve", "dnx serve")
    pre = manual_preprocess(mean, std, image_size)
    config = ServeConfig(artifact=artifact, host=host, port=port, backend=backend, device=device, threads=threads,
                         max_batch=max_batch, max_delay_ms=max_delay_ms, max_queue=max_queue,
                         max_body_bytes=int(max_body_mb * 1024 * 1024), default_top_k=default_top_k,
                         workers=workers, allow_unverified=allow_unverified, precision=precision,
                         preprocess=None if pre is None else {"mean": list(pre.mean), "std": list(pre.std),
                                                              "image_size": pre.image_size})
    config.validate()  # option errors before the "loading" line
    click.echo(f"dnx serve: loading {artifact} ...", err=True)
    counts = serve(config)
    tally = f"; answered {counts['answered']} of {counts['received']} classify requests received" if counts else ""
    click.echo(f"dnx serve: stopped{tally}", err=True)
