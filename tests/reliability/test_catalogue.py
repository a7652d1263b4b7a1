"""The reliability catalogue (issue 14): bad and edge inputs across every command, one row each.

Every row asserts the exit code (0 ok, 1 user error, 2 missing dependency or device), the one-line
``dnx: ...`` message, that no traceback was shown or exception escaped, and that the case's folder
holds exactly the files the command should leave (no final file on failure, never a temporary one).
``D<n>`` in a row's id is the defect of issue 14 it keeps fixed.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from dnx.cli import cli

CALIB = Path(__file__).resolve().parents[2] / "dnx" / "assets" / "fashion_mnist_calib512.npz"
M = "{in}/m.onnx"
FAST_BENCH = ("--backends", "ort-cpu", "--batch", "1", "--iterations", "2", "--warmup", "0", "--samples", "4")


@dataclass
class Case:
    id: str
    args: tuple[str, ...]
    code: int
    message: str = ""  # regex searched in the one error line (or in stdout+stderr for code 0)
    files: tuple[str, ...] = ()  # what the case's folder holds afterwards
    setup: Callable[[Path], None] | None = None
    block: tuple[str, ...] = ()  # modules made unimportable for the run
    notes: str = ""  # regex that must appear in a "dnx: note:" line


def _mkdir(name: str) -> Callable[[Path], None]:
    return lambda out: (out / name).mkdir()


def _copy_model(out: Path, inputs: Path) -> None:
    (out / "m.onnx").write_bytes((inputs / "m.onnx").read_bytes())


CASES = [
    # -- the command line itself (D7: usage errors are one line, exit 1) --
    Case("version", ("--version",), 0, r"dnx, version"),
    Case("no-args-shows-help", (), 0, r"Usage: dnx"),
    Case("D7-unknown-command", ("frobnicate",), 1, r"^dnx: No such command 'frobnicate'; see 'dnx --help'$"),
    Case("D7-unknown-option", ("export", "densenet121", "--bogus"), 1, r"No such option.*see 'dnx export --help'"),
    Case("D7-missing-argument", ("export",), 1, r"Missing argument 'MODEL'; see 'dnx export --help'"),
    Case("D7-bad-choice", ("calibrate", M, "--data", str(CALIB), "--target", "fpga"), 1,
         r"Invalid value for '--target'.*see 'dnx calibrate --help'"),
    Case("D7-not-an-integer", ("export", "densenet121", "--opset", "seventeen"), 1, r"'--opset'.*not a valid integer"),
    Case("D7-out-of-range", ("bench", "densenet121", "--iterations", "0"), 1, r"'--iterations'"),
    Case("D7-missing-required-option", ("calibrate", M), 1, r"Missing option '--data'"),
    Case("models", ("models",), 0, r"densenet121"),
    Case("models-json", ("models", "--json"), 0, r'"name": "densenet121"'),
    # -- export --
    Case("export-ok", ("export", "densenet_bc22_fmnist", "-o", "m.onnx", "--no-verify"), 0, r"wrote m.onnx",
         files=("m.onnx", "m.onnx.json")),
    Case("export-unknown-model", ("export", "densenet999"), 1, r"densenet999"),
    Case("export-batch-zero", ("export", "densenet_bc22_fmnist", "--batch", "0"), 1, r"--batch"),
    Case("export-batch-word", ("export", "densenet_bc22_fmnist", "--batch", "many"), 1, r"--batch must be 'dynamic'"),
    Case("export-opset-too-old", ("export", "densenet_bc22_fmnist", "--opset", "9"), 1, r"--opset between 13 and 20"),
    Case("D3-image-size-huge", ("export", "densenet_bc22_fmnist", "--image-size", "100000"), 1,
         r"--image-size 100000 is larger than"),
    Case("export-image-size-tiny", ("export", "densenet121", "--image-size", "4"), 1, r"too small"),
    Case("export-num-classes-zero", ("export", "densenet_bc22_fmnist", "--num-classes", "0"), 1, r"--num-classes"),
    Case("D3-weights-empty", ("export", "densenet_bc22_fmnist", "--weights", "{in}/empty.pth"), 1, r"is empty"),
    Case("D3-weights-random-bytes", ("export", "densenet_bc22_fmnist", "--weights", "{in}/random.pth"), 1,
         r"cannot read .*random.pth as a PyTorch checkpoint"),
    Case("D15-weights-folder", ("export", "densenet_bc22_fmnist", "--weights", "{in}/folder.pth"), 1, r"is a folder"),
    Case("weights-missing", ("export", "densenet_bc22_fmnist", "--weights", "nope.pth"), 1, r"does not exist"),
    Case("D2-weights-int32", ("export", "densenet_bc22_fmnist", "--weights", "{in}/int32.pth"), 1,
         r"non-float tensors .*features\.conv0\.weight \(torch\.int32\)"),
    Case("weights-code-pickle-refused", ("export", "densenet_bc22_fmnist", "--weights", "{in}/pickle_code.pth"), 1,
         r"refused to load"),
    Case("weights-other-architecture", ("export", "densenet_bc22_fmnist", "--weights", "{in}/wrong_arch.pth"), 1,
         r"does not fit this architecture"),
    Case("D1-output-dev-null", ("export", "densenet_bc22_fmnist", "-o", "/dev/null"), 1, r"not a regular file"),
    Case("D10-output-folder-missing", ("export", "densenet_bc22_fmnist", "-o", "no/such/m.onnx"), 1,
         r"-o no/such/m.onnx: folder no/such does not exist"),
    Case("output-is-a-directory", ("export", "densenet_bc22_fmnist", "-o", "d"), 1, r"is a directory",
         files=("d",), setup=_mkdir("d")),
    Case("D3-output-name-255-bytes", ("export", "densenet_bc22_fmnist", "-o", "n" * 245 + ".onnx"), 1,
         r"file name is 250 bytes"),
    Case("D3-output-path-over-4096", ("export", "densenet_bc22_fmnist", "-o", "/tmp/" + "d/" * 2100 + "m.onnx"), 1,
         r"-o path is longer than this system.s 4096-byte limit"),
    Case("D12-sidecar-name-is-a-folder", ("export", "densenet_bc22_fmnist", "-o", "x.onnx", "--no-verify"), 1,
         r"x.onnx.json is a directory", files=("x.onnx.json",), setup=_mkdir("x.onnx.json")),
    Case("D8-simplify-without-onnxslim", ("export", "densenet_bc22_fmnist", "--simplify", "-o", "m.onnx"), 2,
         r"onnxslim is not installed \(needed for --simplify\): pip install 'dnx\[simplify\]'", block=("onnxslim",)),
    # -- convert --
    Case("convert-ok", ("convert", M, "-o", "h.onnx"), 0, r"wrote h.onnx", files=("h.onnx", "h.onnx.json")),
    Case("D4-convert-empty-onnx", ("convert", "{in}/empty.onnx", "-o", "h.onnx"), 1, r"holds no ONNX graph"),
    Case("convert-random-bytes", ("convert", "{in}/random.onnx", "-o", "h.onnx"), 1, r"not a readable ONNX file"),
    Case("convert-missing", ("convert", "nope.onnx"), 1, r"does not exist"),
    Case("D4-convert-two-inputs", ("convert", "{in}/two_inputs.onnx", "-o", "h.onnx"), 1, r"has 2 inputs \(a, b\)"),
    Case("D4-convert-foreign-says-unchecked", ("convert", "{in}/foreign.onnx", "-o", "h.onnx"), 0, r"wrote h.onnx",
         files=("h.onnx", "h.onnx.json"), notes=r"not checked against FP32"),
    Case("convert-fp16-again", ("convert", "{in}/foreign_fp16.onnx", "-o", "h.onnx"), 1, r"already holds FP16"),
    Case("convert-onto-its-source", ("convert", "m.onnx", "-o", "m.onnx"), 1, r"overwrite the source",
         files=("m.onnx",), setup=_copy_model),
    # -- calibrate --
    Case("calibrate-ok", ("calibrate", M, "--data", str(CALIB), "--samples", "16", "--target", "onnxruntime",
                          "-o", "q.onnx"), 0, r"wrote q.onnx", files=("q.onnx", "q.onnx.json", "q.onnx.calib.json")),
    Case("calibrate-foreign-needs-preprocessing", ("calibrate", "{in}/foreign.onnx", "--data", str(CALIB),
                                                   "-o", "q.onnx"),
         1, r"no dnx manifest.*pass --mean/--std/--image-size"),
    Case("D3-calibrate-std-zero", ("calibrate", "{in}/foreign.onnx", "--data", str(CALIB), "--mean", "0.5", "--std",
                                   "0", "--image-size", "28", "-o", "q.onnx"), 1, r"--std\[0\] must be > 0, got 0.0"),
    Case("D3-calibrate-image-size-contradicts-graph", ("calibrate", "{in}/fixed28.onnx", "--data", str(CALIB), "--mean",
                                                       "0.5", "--std", "0.5", "--image-size", "32", "-o", "q.onnx"),
         1, r"takes input of shape \[1, 1, 28, 28\].*height 32"),
    Case("D3-calibrate-two-inputs", ("calibrate", "{in}/two_inputs.onnx", "--data", str(CALIB), "--mean", "0.5",
                                     "--std", "0.5", "--image-size", "28", "-o", "q.onnx"), 1, r"has 2 inputs"),
    Case("D5-calibrate-fp16-without-manifest", ("calibrate", "{in}/foreign_fp16.onnx", "--data", str(CALIB), "--mean",
                                                "0.5", "--std", "0.5", "--image-size", "28", "-o", "q.onnx"),
         1, r"already holds FP16 weights; calibrate the FP32 export"),
    Case("D3-calibrate-corrupt-manifest", ("calibrate", "{in}/bad_manifest.onnx", "--data", str(CALIB), "-o", "q.onnx"),
         1, r"manifest embedded in .* is not valid JSON"),
    Case("calibrate-manifest-not-an-object", ("calibrate", "{in}/list_manifest.onnx", "--data", str(CALIB), "-o",
                                              "q.onnx"), 1, r"not a dnx manifest \(a JSON list"),
    Case("D3-calibrate-npy-nan", ("calibrate", M, "--data", "{in}/nan.npy", "-o", "q.onnx"), 1, r"1 NaN or infinite"),
    Case("D3-calibrate-npy-inf", ("calibrate", M, "--data", "{in}/inf.npy", "-o", "q.onnx"), 1, r"NaN or infinite"),
    Case("D15-calibrate-npz-without-images", ("calibrate", M, "--data", "{in}/no_images_key.npz", "-o", "q.onnx"), 1,
         r"no array named 'images' \(found: pixels\)"),
    Case("calibrate-corrupt-npz", ("calibrate", M, "--data", "{in}/corrupt.npz", "-o", "q.onnx"), 1, r"cannot read"),
    Case("calibrate-array-wrong-shape", ("calibrate", M, "--data", "{in}/wrong_shape.npy", "-o", "q.onnx"), 1,
         r"shape \(4, 5\).*not usable"),
    Case("calibrate-data-missing", ("calibrate", M, "--data", "nope", "-o", "q.onnx"), 1, r"does not exist"),
    Case("calibrate-folder-without-images", ("calibrate", M, "--data", "{in}/no_images", "-o", "q.onnx"), 1,
         r"has no images"),
    Case("D3-calibrate-skips-bomb-and-truncated", ("calibrate", M, "--data", "{in}/photos_with_bomb", "--target",
                                                   "onnxruntime", "-o", "q.onnx"), 0, r"on 6 samples",
         files=("q.onnx", "q.onnx.json", "q.onnx.calib.json"), notes=r"skipped 2 unreadable"),
    Case("D6-calibrate-16-bit-png", ("calibrate", M, "--data", "{in}/png16", "--target", "onnxruntime", "-o", "q.onnx"),
         0, r"on 4 samples", files=("q.onnx", "q.onnx.json", "q.onnx.calib.json")),
    Case("calibrate-idx-truncated", ("calibrate", M, "--data", "{in}/train-images-idx3-ubyte", "-o", "q.onnx"), 1,
         r"is truncated"),
    Case("calibrate-idx-bad-magic", ("calibrate", M, "--data", "{in}/bad-idx3-ubyte", "-o", "q.onnx"), 1,
         r"not an IDX file"),
    Case("calibrate-samples-zero", ("calibrate", M, "--data", str(CALIB), "--samples", "0", "-o", "q.onnx"), 1,
         r"--samples must be >= 1"),
    Case("D1-calibrate-cache-dev-null", ("calibrate", M, "--data", str(CALIB), "--cache", "/dev/null", "-o", "q.onnx"),
         1, r"--cache /dev/null exists and is not a regular file"),
    Case("D10-calibrate-default-cache-name-is-a-folder", ("calibrate", M, "--data", str(CALIB), "-o", "q.onnx"), 1,
         r"--cache q.onnx.calib.json is a directory", files=("q.onnx.calib.json",), setup=_mkdir("q.onnx.calib.json")),
    Case("calibrate-exclude-unknown", ("calibrate", M, "--data", str(CALIB), "--exclude", "NoSuchOp", "-o", "q.onnx"),
         1, r"--exclude NoSuchOp"),
    Case("calibrate-qdq-source", ("calibrate", "q.onnx", "--data", str(CALIB), "-o", "q2.onnx"), 1,
         r"already|Q/DQ", files=("q.onnx",),
         setup=lambda out: (out / "q.onnx").write_bytes(_qdq_model_bytes())),
    # -- inspect --
    Case("inspect-onnx", ("inspect", M), 0, r"ONNX, .* MB"),
    Case("inspect-onnx-json", ("inspect", M, "--json"), 0, r'"precision": "fp32"'),
    Case("D4-inspect-empty-onnx", ("inspect", "{in}/empty.onnx"), 1, r"holds no ONNX graph"),
    Case("D3-inspect-corrupt-manifest", ("inspect", "{in}/bad_manifest.onnx"), 1, r"is not valid JSON"),
    Case("D15-inspect-random-engine-no-layers", ("inspect", "{in}/random.engine", "--no-layers"), 1,
         r"no dnx manifest .*cannot tell whether it is an engine"),
    Case("inspect-engine-needs-tensorrt", ("inspect", "{in}/random.engine"), 2, r"--no-layers"),
    Case("inspect-engine-minimal-sidecar", ("inspect", "{in}/minimal.engine", "--no-layers"), 0,
         r"TensorRT 10.8.0 on \? \(compute capability 8.9\)"),
    Case("D15-inspect-engine-other-bytes", ("inspect", "{in}/other.engine", "--no-layers"), 1,
         r"not the engine its manifest describes"),
    Case("inspect-engine-bad-sidecar", ("inspect", "{in}/sidecar_bad.engine", "--no-layers"), 1, r"not valid JSON"),
    Case("inspect-unknown-kind", ("inspect", "{in}/a_file"), 1, r"cannot tell what it is"),
    Case("inspect-missing", ("inspect", "nope.onnx"), 1, r"does not exist"),
    # -- build (no GPU, no TensorRT here) --
    Case("build-needs-tensorrt", ("build", M, "-o", "m.engine"), 2, r"TensorRT|CUDA|GPU"),
    # -- bench --
    Case("bench-ok-csv", ("bench", M, *FAST_BENCH, "--csv", "r.csv"), 0, r"wrote CSV r.csv", files=("r.csv",)),
    Case("D1-bench-csv-dev-full", ("bench", M, *FAST_BENCH, "--csv", "/dev/full"), 1,
         r"--csv /dev/full exists and is not a regular file"),
    Case("D10-bench-json-folder-missing", ("bench", M, *FAST_BENCH, "--json", "no/r.json"), 1, r"--json no/r.json"),
    Case("D9-bench-foreign-onnx", ("bench", "{in}/foreign.onnx", *FAST_BENCH), 1,
         r"no dnx manifest, so there is no PyTorch model.*dnx bench MODEL"),
    Case("bench-unknown-backend", ("bench", M, "--backends", "ort-gpu"), 1, r"unknown backend"),
    Case("bench-bad-batch", ("bench", M, "--batch", "1,x"), 1, r"--batch"),
    Case("bench-plot-without-matplotlib", ("bench", M, *FAST_BENCH, "--plot", "p.png"), 2, r"dnx\[plot\]",
         block=("matplotlib",)),
    Case("bench-workdir-is-a-file", ("bench", M, *FAST_BENCH, "--workdir", "{in}/a_file"), 1, r"--workdir"),
    Case("bench-nothing", ("bench",), 1, r"nothing to benchmark"),
    # -- tune (its load and search: tests/benchmarks/test_tune.py) --
    Case("tune-rate-and-concurrency", ("tune", "densenet_bc22_fmnist", "--p99-ms", "100", "--rate", "5",
                                       "--concurrency", "2"), 1, r"--rate .* or --concurrency .*, not both"),
    Case("tune-source-missing", ("tune", "nope.onnx", "--p99-ms", "100"), 1, r"nope.onnx is not a file"),
    Case("tune-bad-space", ("tune", "densenet_bc22_fmnist", "--p99-ms", "100", "--workers", "1,two"), 1,
         r"--workers takes comma-separated numbers"),
    Case("tune-target-cpp", ("tune", "densenet_bc22_fmnist", "--p99-ms", "100", "--target", "cpp"), 2,
         r"--target cpp is not supported.*supported: --target serve"),
    Case("tune-bad-ov-hint", ("tune", "densenet_bc22_fmnist", "--p99-ms", "100", "--ov-hint", "fast"), 1,
         r"--ov-hint values must be latency or throughput"),
    # -- deploy (the manifests and replicas themselves: tests/deploy/) --
    Case("deploy-artifact-missing", ("deploy", "k8s", "nope.onnx", "--repo", "pvc://models", "-o", "{in}/k8s"), 1,
         r"nope.onnx"),
    Case("deploy-bad-repo", ("deploy", "k8s", "nope.onnx", "--repo", "ftp://x", "-o", "{in}/k8s"), 1, r"--repo"),
    # -- eval --
    Case("D10-eval-json-folder-missing", ("eval", "--json", "missing/dir/r.json"), 1,
         r"--json missing/dir/r.json: folder missing/dir does not exist; create it or choose another --json"),
    Case("D3-eval-workdir-is-a-file", ("eval", "--workdir", "{in}/a_file"), 1, r"--workdir .* is a file"),
    Case("eval-random-weights", ("eval", "densenet_bc22_fmnist", "--weights", "{in}/empty.pth"), 1, r"is empty"),
    Case("eval-data-missing", ("eval", "--data", "nope.npz"), 1, r"does not exist"),
    # -- train --
    Case("D14-train-no-test-split", ("train", "densenet_bc22_fmnist", "--data", "{in}/train64.npz", "--epochs", "1",
                                     "--batch-size", "32", "-o", "t.pth"), 0, r"wrote t.pth \(no test set\)",
         files=("t.pth", "t.pth.json"), notes=r"no test split"),
    Case("D3-train-label-count", ("train", "densenet_bc22_fmnist", "--data", "{in}/label_count.npz", "-o", "t.pth"), 1,
         r"64 images but 60 labels"),
    Case("D3-train-negative-labels", ("train", "densenet_bc22_fmnist", "--data", "{in}/negative_labels.npz", "-o",
                                      "t.pth"), 1, r"labels must be class indices >= 0, found -1"),
    Case("D14-train-one-class", ("train", "densenet_bc22_fmnist", "--data", "{in}/one_class.npz", "-o", "t.pth"), 1,
         r"one class"),
    Case("D14-train-one-class-folder", ("train", "densenet_bc22_fmnist", "--data", "{in}/one_class_folder", "-o",
                                        "t.pth"), 1, r"one class"),
    Case("train-data-missing", ("train", "densenet_bc22_fmnist", "--data", "nope", "-o", "t.pth"),
         1, r"does not exist"),
    Case("D1-train-output-device", ("train", "densenet_bc22_fmnist", "--data", "{in}/train64.npz", "-o", "/dev/null"),
         1, r"not a regular file"),
]


def _qdq_model_bytes() -> bytes:
    """A tiny graph holding a QuantizeLinear (a calibrated file is not a calibration source)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 28, 28])
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


HELP_CASES = [Case(f"help-{name}", (name, "--help"), 0, rf"Usage: dnx {name}") for name in sorted(cli.commands)]
HELP_CASES.append(Case("help-root", ("--help",), 0, r"Usage: dnx"))
# D7 for every command, including those added later: a usage error is one line, exit 1, with the hint
HELP_CASES += [Case(f"D7-usage-{name}", (name, "--no-such-option"), 1,
                    rf"^dnx: No such option '--no-such-option'; see 'dnx {name} --help'$")
               for name in sorted(cli.commands)]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("dnx: note:")]


def _expand(arg: str, inputs: Path) -> str:
    return arg.replace("{in}", str(inputs))


@pytest.mark.parametrize("case", CASES + HELP_CASES, ids=lambda c: c.id)
def test_case(case: Case, inputs: Path, tmp_path: Path, monkeypatch, harness) -> None:
    run_dnx, listing, out = harness.run_dnx, harness.listing, tmp_path
    if case.setup is _copy_model:
        _copy_model(out, inputs)
    elif case.setup is not None:
        case.setup(out)
    for name in case.block:
        monkeypatch.setitem(sys.modules, name, None)
    before_inputs = listing(inputs)
    result = run_dnx([_expand(a, inputs) for a in case.args], out)
    assert result.escaped is None, f"exception escaped main(): {result.escaped!r}"
    assert "Traceback" not in result.stderr + result.stdout
    assert result.code == case.code, f"exit {result.code}, expected {case.code}; stderr: {result.stderr}"
    if case.code == 0:
        assert re.search(case.message, result.stdout + result.stderr), result.stdout + result.stderr
        assert not _error_lines(result.stderr), result.stderr
    else:
        lines = _error_lines(result.stderr)
        assert len(lines) == 1 and lines[0].startswith("dnx: "), result.stderr
        assert re.search(case.message, lines[0]), lines[0]
    if case.notes:
        assert any(re.search(case.notes, line) for line in result.stderr.splitlines() if line.startswith("dnx: note:"))
    left = listing(out)
    assert left == set(case.files), f"left {sorted(left)}, expected {sorted(case.files)}"
    assert listing(inputs) == before_inputs, "a case wrote into the shared inputs"
    assert not (inputs / "PWNED").exists(), "a pickled payload ran"
    for dev in ("/dev/null", "/dev/full"):
        assert stat.S_ISCHR(os.stat(dev).st_mode), f"{dev} was replaced"


def test_catalogue_covers_every_command_and_defect():
    cases = CASES + HELP_CASES
    assert len({c.id for c in cases}) == len(cases) >= 60
    assert {c.args[0] for c in CASES if c.args and not c.args[0].startswith("-")} >= set(cli.commands) - {
        "serve", "triton", "paper", "reuse"}  # the serving and paper commands have their own suites
    defects = {int(m) for c in cases for m in re.findall(r"^D(\d+)-", c.id)}
    # D11 (umask) and D13 (signals) need a process or a umask: test_library.py and test_process.py
    assert defects | {11, 13} == set(range(1, 16))
