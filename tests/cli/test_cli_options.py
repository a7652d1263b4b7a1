"""The CLI's shared options (dnx/cli/options.py), its state and how library errors become flags.

Each shared option is declared once and built from the library's constants: every command that takes
it shows the same help, default and choices, and those follow the library's tables.
"""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from dnx.cli import cli, main
from dnx.cli.group import CliState, Command, error_message
from dnx.cli.options import THREADS_HELP
from dnx.core.errors import DnxError, MissingDependencyError
from dnx.models.registry import DECODE_MODES
from dnx.runtime.selection import BACKENDS, DEVICES

# --threads options that mean something else than the backend's intra-op threads
OTHER_THREADS = {"deploy k8s": "threads per pod", "tune": "values to search"}


def _commands(group: click.Group = cli, prefix: str = ""):
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from _commands(command, path + " ")
        else:
            yield path, command


COMMANDS = dict(_commands())


def _options(flag: str):
    return {path: p for path, c in COMMANDS.items() for p in c.params if flag in getattr(p, "opts", ())}


def test_every_command_is_a_dnx_command():
    assert all(isinstance(c, Command) for c in COMMANDS.values())


def test_intra_op_threads_is_one_option_everywhere():
    threads = {path: p for path, p in _options("--threads").items() if path not in OTHER_THREADS}
    assert set(threads) == {"bench", "eval", "serve", "train", "triton serve"}
    for path, p in threads.items():
        assert (p.help, p.default, p.type.min, p.show_default) == (THREADS_HELP, 0, 0, True), path
    assert set(OTHER_THREADS) <= set(_options("--threads"))


def test_backend_and_device_are_the_runtime_s_names():
    for flag, names in (("--backend", BACKENDS), ("--device", DEVICES)):
        options = _options(flag)
        assert set(options) == {"serve", "triton serve"}
        assert {(tuple(p.type.choices), p.default, p.help) for p in options.values()} == \
            {(tuple(names), "auto", options["serve"].help)}


def test_decode_choices_are_the_registry_s():
    options = _options("--decode")
    assert set(options) == {"calibrate", "eval", "serve"}
    assert all(tuple(p.type.choices) == DECODE_MODES for p in options.values())


def test_foreign_preprocessing_options_are_the_same_in_every_command():
    for flag in ("--mean", "--std", "--image-size"):
        options = _options(flag)
        assert {"calibrate", "serve"} <= set(options)
        shared = {path: p for path, p in options.items() if path != "export"}  # export's --image-size resizes
        assert len({(p.help, p.type.name) for p in shared.values()}) == 1, flag


def test_json_is_printed_or_a_file_checked_before_the_work():
    for path, p in _options("--json").items():
        if p.is_flag:
            assert p.help == "Print machine-readable JSON.", path
        else:
            assert p.callback is not None and p.callback.__qualname__.startswith("_writable"), path


def test_bench_help_states_the_library_s_tolerances():
    from dnx.core.compare import DECISIVE_MARGIN, DEFAULT_TOLERANCES

    text = COMMANDS["bench"].help
    for precision, tolerance in DEFAULT_TOLERANCES.items():
        assert precision in text
        if tolerance.min_top1_agreement not in (None, 1):
            assert f"top-1 agreement >= {tolerance.min_top1_agreement * 100:g}%" in text
    assert f"max|diff| <= {DEFAULT_TOLERANCES['fp32'].max_abs_diff:g}" in text
    assert f">= {DECISIVE_MARGIN:g}" in text


# -- library errors name parameters; the CLI writes the flags -----------------------------------

@click.command(cls=Command)
@click.option("--max-batch", type=int)
@click.option("--top-k", "default_top_k", type=int)
@click.argument("artifact")
def _fake(max_batch, default_top_k, artifact):
    """A command whose flags differ from the library's names."""


@pytest.mark.parametrize("error, told", [
    (DnxError("max_batch must be >= 1, got 0", param="max_batch"), "--max-batch must be >= 1, got 0"),
    (DnxError("default_top_k must be >= 1", param="default_top_k"), "--top-k must be >= 1"),
    (DnxError("got min 2 > max_batch 1", param=("max_batch",)), "got min 2 > --max-batch 1"),
    (DnxError("must be positive", param="max_batch"), "--max-batch: must be positive"),
    (DnxError("artifact is a folder", param="artifact"), "ARTIFACT is a folder"),
    (DnxError("threads must be >= 0", param="threads"), "threads must be >= 0"),  # no such flag here
    (DnxError("max_batch_size is a Triton field", param="max_batch"), "--max-batch: max_batch_size is a Triton field"),
    (DnxError("plain message"), "plain message"),
])
def test_error_message_writes_the_command_s_flags(error, told):
    assert error_message(error, _fake) == told


def test_param_keeps_the_error_type_and_exit_code():
    error = MissingDependencyError("tensorrt is missing", param="precision")
    assert (error.exit_code, error.params, str(error)) == (2, ("precision",), "tensorrt is missing")
    assert DnxError("no parameter").params == ()


def _run(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return info.value.code, capsys.readouterr()


def test_a_library_parameter_error_names_the_flag(capsys, tmp_path):
    pytest.importorskip("fastapi")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    code, out = _run(capsys, "serve", str(model), "--port", "70000")
    assert (code, out.err) == (1, "dnx: --port must be from 0 to 65535, got 70000\n")


def test_foreign_preprocessing_is_checked_by_the_library_rule(capsys, tmp_path):
    code, out = _run(capsys, "calibrate", str(tmp_path / "m.onnx"), "--data", str(tmp_path), "--mean", "0.5",
                     "--std", "0.5", "--image-size", "5000")
    assert (code, out.err) == (1, "dnx: the preprocessing given: --image-size must be <= 4096, got 5000\n")
    code, out = _run(capsys, "serve", str(tmp_path / "m.onnx"), "--mean", "0.5,0.5", "--std", "0.5",
                     "--image-size", "28")
    assert (code, out.err) == (1, "dnx: the preprocessing given: --mean needs 1 or 3 values (one per input channel), "
                                 "got 2\n")


def test_the_library_names_its_own_parameters():
    import dnx

    with pytest.raises(DnxError, match="^threads must be a non-negative integer") as info:
        dnx.load("m.onnx", threads=-1)
    assert info.value.params == ("threads",)


# -- state on the click context ------------------------------------------------------------------

def test_no_module_level_state(capsys, tmp_path, monkeypatch):
    import dnx.cli.group as group

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DNX_DEBUG", raising=False)
    assert not [n for n, v in vars(group).items() if isinstance(v, dict) and not n.startswith("__")]
    code, out = _run(capsys, "--debug", "convert", "missing.onnx")
    assert code == 1 and "Traceback" in out.err
    code, out = _run(capsys, "convert", "missing.onnx")  # the next run starts from a fresh state
    assert (code, out.err) == (1, "dnx: ONNX file missing.onnx does not exist\n")
    assert CliState() == CliState(debug=False, command=None)


def test_debug_shows_the_cause_of_a_cli_error(capsys):
    code, out = _run(capsys, "--debug", "export", "densenet_bc22_fmnist", "--batch", "many")
    assert code == 1
    assert "invalid literal for int()" in out.err and "direct cause of the following exception" in out.err
    assert out.err.strip().splitlines()[-1] == "dnx: --batch must be 'dynamic' or a positive integer, got 'many'"


# -- startup -------------------------------------------------------------------------------------

HEAVY = ("torch", "onnx", "onnxruntime", "openvino", "tensorrt", "matplotlib")


def test_help_imports_no_heavy_package():
    """`dnx --help` (and a command's) stays fast: the heavy packages load inside the commands."""
    code = ("import sys\nfrom dnx.cli import main\n"
            "for args in (['--help'], ['serve', '--help'], ['bench', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            f"print('LOADED', *sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.splitlines()[-1] == "LOADED"
