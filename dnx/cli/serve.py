"""`dnx serve`: the HTTP classification service (FastAPI + uvicorn) over `dnx.load`."""

from __future__ import annotations

import click

from dnx.cli.group import cli
from dnx.cli.options import backend_options, decode_option, preprocess_options
from dnx.core.errors import DnxError, require
from dnx.runtime.backends.openvino_runner import HINTS as OV_HINTS
from dnx.runtime.runtime_precision import RUNTIME_PRECISIONS
from dnx.runtime.serve.config_file import read_serve_config
from dnx.runtime.serve.service import ServeConfig
from dnx.runtime.serve.supervisor import serve


def _load_config(ctx, param, value):
    """--config FILE: a TOML file of serve flags (``max-batch = 16``) read into click's default map, so a
    flag on the command line overrides the file; ``artifact`` may be given too (relative to the file)."""
    if value is None:
        return None

    keys = {opt.lstrip("-"): p.name for p in ctx.command.params if isinstance(p, click.Option)
            for opt in p.opts if opt.startswith("--") and p.name != "config"}
    ctx.default_map = {**(ctx.default_map or {}), **read_serve_config(value, keys)}
    return value


@cli.command("serve")
@click.option("--config", type=click.Path(), is_eager=True, expose_value=False, callback=_load_config,
              help="TOML file of serve flags (e.g. written by `dnx tune`); flags given here override it.")
@click.argument("artifact", type=click.Path(), required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=int, help="Port (0: any free port).")
@backend_options()
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(min=1),
              help="Largest micro-batch of concurrent requests (1: no batching).")
@click.option("--max-delay-ms", default=2.0, show_default=True, type=click.FloatRange(0, 10_000),
              help="How long the first request of a batch waits for others.")
@click.option("--max-queue", default=64, show_default=True, type=click.IntRange(min=1),
              help="Requests admitted at once; more are answered 503 with Retry-After.")
@click.option("--max-body-mb", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest request body; larger ones get 413.")
@click.option("--body-timeout-s", default=30.0, show_default=True, type=click.FloatRange(0, 3600, min_open=True),
              help="A request body must arrive within this; slower clients get 408.")
@click.option("--max-request-pixels", default=100_000_000, show_default=True, type=click.IntRange(min=1),
              help="Pixels of all images of one request together (read from their headers); more get 413.")
@click.option("--decode-threads", default=0, show_default=True, type=click.IntRange(min=0),
              help="Threads that decode and preprocess images beside inference (0: one per CPU core, at most 8).")
@click.option("--top-k", "default_top_k", default=5, show_default=True, type=click.IntRange(min=1),
              help="Predictions per image when the request has no ?top_k=.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Server processes, each with its own model copy.")
@click.option("--docs", is_flag=True, help="Serve /docs, /redoc and /openapi.json (Swagger UI loads from a CDN).")
@click.option("--allow-unverified", is_flag=True,
              help="Serve a dnx artifact whose parity certificate failed, is missing or no longer matches it.")
@click.option("--model-version", help="Version name /v1/model and the X-Model-Version header report "
                                      "(default: the artifact's sha256, first 12 hex digits).")
@click.option("--precision", type=click.Choice(RUNTIME_PRECISIONS), default="fp32", show_default=True,
              help="fp32: run the artifact as written; bf16: OpenVINO BF16 (AVX-512 BF16/AMX CPUs), checked "
                   "against the file on real data at load.")
@click.option("--ov-hint", type=click.Choice(OV_HINTS), default="latency", show_default=True,
              help="OpenVINO's performance hint (--backend openvino): latency = one stream, throughput = several.")
@preprocess_options()
@decode_option("the requests' images", default_text="the manifest's")
@click.option("--exif-orientation/--no-exif-orientation", default=True, show_default=True,
              help="Turn photos upright by their EXIF orientation tag.")
def serve_cmd(artifact, host, port, backend, device, threads, max_batch, max_delay_ms, max_queue, max_body_mb,
              body_timeout_s, max_request_pixels, decode_threads, default_top_k, workers, docs, allow_unverified,
              model_version, precision, ov_hint, preprocess, decode, exif_orientation) -> None:
    """Serve ARTIFACT (ONNX or engine) over HTTP: POST /v1/classify, GET /v1/model, /healthz, /readyz, /metrics.

    Stops gracefully on SIGINT/SIGTERM: requests in flight are answered, then it exits 0 (with
    --workers N, after every worker has stopped). A model that cannot be loaded: exit 1, one line.
    """

    if artifact is None:
        raise DnxError("give the ARTIFACT to serve (or an `artifact = ...` line in --config); see 'dnx serve --help'")
    for module in ("fastapi", "uvicorn", "prometheus_client", "multipart"):
        require(module, "serve", "dnx serve")
    config = ServeConfig(artifact=artifact, host=host, port=port, backend=backend, device=device, threads=threads,
                         max_batch=max_batch, max_delay_ms=max_delay_ms, max_queue=max_queue,
                         max_body_bytes=int(max_body_mb * 1024 * 1024), body_timeout_s=body_timeout_s,
                         max_request_pixels=max_request_pixels, decode_threads=decode_threads,
                         default_top_k=default_top_k, workers=workers, docs=docs, allow_unverified=allow_unverified,
                         model_version=model_version, decode=decode, exif_orientation=exif_orientation,
                         precision=precision, ov_hint=ov_hint,
                         preprocess=None if preprocess is None else {
                             "mean": list(preprocess.mean), "std": list(preprocess.std),
                             "image_size": preprocess.image_size})
    config.validate()  # option errors before the "loading" line
    click.echo(f"dnx serve: loading {artifact} ...", err=True)
    counts = serve(config)
    tally = f"; answered {counts['answered']} of {counts['received']} classify requests received"
    click.echo(f"dnx serve: stopped{tally}", err=True)
