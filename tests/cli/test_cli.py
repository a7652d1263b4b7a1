"""CLI contract: --help everywhere (even without optional packages), one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dnx.cli import cli


def run_dnx(*args: str, block: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, with ``block`` modules made unimportable."""
    code = (
        "import sys\n"
        f"for name in {list(block)!r}: sys.modules[name] = None\n"
        "from dnx.cli import main\n"
        f"main({list(args)!r})\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def _commands():
    return sorted(cli.commands)


@pytest.mark.parametrize("command", [None, *_commands()])
def test_help_works_without_optional_packages(command):
    args = ["--help"] if command is None else [command, "--help"]
    result = run_dnx(*args, block=("tensorrt", "onnxruntime", "matplotlib"))
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_version():
    from dnx.core.version import __version__

    result = run_dnx("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_models_json_lists_every_variant_with_counts():
    from dnx.models import list_models

    result = run_dnx("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(list_models())
    assert rows["densenet121"]["params"] == 7_978_856
    assert rows["densenet121"]["growth_rate"] == 32


def test_models_table_prints_params():
    result = run_dnx("models")
    assert result.returncode == 0, result.stderr
    assert "7,978,856" in result.stdout and "densenet_bc190_k40" in result.stdout
