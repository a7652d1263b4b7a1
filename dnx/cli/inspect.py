"""`dnx inspect`: what an ONNX file or a TensorRT engine holds, and whether it is verified."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dnx.cli.common import make_console, print_notes
from dnx.cli.group import cli
from dnx.cli.options import json_print_option
from dnx.core.errors import DnxError, MissingDependencyError
from dnx.schemas.engine_manifest import ENGINE_SUFFIXES, is_engine_path, rebuild_command
from dnx.core.tables import new_table
from dnx.runtime.tensorrt.inspect import inspect_engine, inspect_onnx


def _print_onnx_summary(info: dict) -> None:
    def shape(t: dict) -> str:
        return f"{t['name']} [{','.join('N' if d is None else str(d) for d in t['shape'])}] {t['dtype']}"

    click.echo(f"{info['path']}: ONNX, {info['bytes'] / 1e6:.1f} MB, sha256 {info['sha256'][:12]}, opset "
               f"{info['opset'].get('ai.onnx', '?')}, producer {info['producer'] or '?'}")
    click.echo(f"inputs: {'; '.join(map(shape, info['inputs']))}")
    click.echo(f"outputs: {'; '.join(map(shape, info['outputs']))}")
    claimed = f" (manifest says {info['manifest_precision']})" if info["manifest_precision"] else " (no dnx manifest)"
    click.echo(f"precision: {info['precision']}{claimed}; {info['nodes']} nodes, {info['qdq_nodes']} Q/DQ")
    cert = (info["manifest"] or {}).get("certificate")
    if cert:
        data = cert.get("data") or {}
        click.echo(f"certificate: {cert['verdict']} vs {cert['reference']['what']} on {data.get('images')} images "
                   f"({data.get('what')}), {cert['backend']}, {cert['at']}: {cert.get('summary', '')}")
    click.echo("verified: yes" if info["unverified"] is None else f"verified: no, {info['unverified']}")
    table = new_table("operators", ("op", "count"), left=("op",))
    for op, n in info["ops"].items():
        table.add_row(op, str(n))
    dtypes = new_table("initializers", ("dtype", "tensors", "elements"), left=("dtype",))
    for dtype, d in info["initializers"].items():
        dtypes.add_row(dtype, str(d["tensors"]), f"{d['elements']:,}")
    console = make_console()
    console.print(table)
    console.print(dtypes)


def _print_engine_summary(info: dict) -> None:
    m = info["manifest"]
    click.echo(f"{info['path']}: TensorRT engine, {info['bytes'] / 1e6:.1f} MB, sha256 {info['sha256'][:12]}")
    if m is None:
        click.echo("no dnx manifest (not built by `dnx build`, or its .json sidecar is missing)")
    else:
        def f(dotted: str) -> str:  # a hand-edited or older sidecar may lack fields: show "?" for them
            value = m
            for key in dotted.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            return "?" if value is None else str(value)

        click.echo(f"built {f('built_at')} with TensorRT {f('tensorrt_version')} on {f('gpu.name')} "
                   f"(compute capability {f('gpu.compute_capability')}); hardware compat {f('hardware_compat')}, "
                   f"version compat {dict([(True, 'yes'), (False, 'no')]).get(m.get('version_compat'), '?')}")
        click.echo(f"precision {f('precision')}, batch {f('batch_profile.min_batch')}..{f('batch_profile.max_batch')} "
                   f"(opt {f('batch_profile.opt_batch')}); from {f('source_onnx.path')} "
                   f"(sha256 {f('source_onnx.sha256')[:12]}) via {f('built_graph.path')}")
        click.echo(f"rebuild: {f('build_command')}")
    for t in info.get("io", []):
        click.echo(f"{t['mode']}: {t['name']} {t['shape']} {t['dtype']}")
    layers = info.get("layers")
    if layers:
        click.echo(f"layers: {layers['count']}; output precision {layers['output_precision']}; "
                   f"types {dict(list(layers['types'].items())[:8])}")
    print_notes(info.get("warnings", []))


def _check_engine_manifest(path, info: dict) -> None:
    """Without TensorRT only the sidecar can say the file is an engine: refuse a file without one, or
    whose bytes are not the ones its sidecar recorded."""
    manifest = info["manifest"]
    if manifest is None:
        raise DnxError(f"{path} has no dnx manifest ({path.name}.json), so without TensorRT dnx cannot tell "
                       "whether it is an engine; inspect it with --layers on a machine with a GPU and TensorRT")
    if info["digest_problem"]:
        raise DnxError(f"{path} is not the engine its manifest describes ({info['digest_problem']}); rebuild it with "
                       f"`{manifest.get('build_command') or rebuild_command(None)}`")


@cli.command("inspect")
@click.argument("artifact", type=click.Path())
@click.option("--layers/--no-layers", default=True, show_default=True,
              help="Engines: TensorRT's per-layer report (needs a GPU and TensorRT); "
                   "--no-layers reads the manifest only.")
@json_print_option()
def inspect_cmd(artifact, layers, as_json) -> None:
    """Summarize an ONNX file (any machine) or a TensorRT engine (its layers need a GPU and TensorRT)."""
    path = Path(artifact)
    if path.suffix.lower() == ".onnx":
        info, show = inspect_onnx(path), _print_onnx_summary
    elif is_engine_path(path):
        if not path.is_file():
            raise DnxError(f"engine {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
        try:
            info, show = inspect_engine(path, layers=layers), _print_engine_summary
        except MissingDependencyError as exc:
            raise type(exc)(f"{exc}; `dnx inspect {path} --no-layers` shows its manifest on this machine") from exc
        if not layers:
            _check_engine_manifest(path, info)
    else:
        raise DnxError(f"{path}: cannot tell what it is; expected an .onnx file or an engine "
                       f"({'/'.join(ENGINE_SUFFIXES)})")
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        show(info)
