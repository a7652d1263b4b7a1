"""`run_bench`: parity against PyTorch, unavailable backends, targets, data, tolerances."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from dnx.benchmarks import harness
from dnx.benchmarks.harness import BenchConfig, BackendResult, default_backends, run_bench
from dnx.benchmarks.parity_data import load_parity_data
from dnx.core.compare import DEFAULT_TOLERANCES, Tolerance, compare_logits
from dnx.core.errors import DnxError
from dnx.runtime.backends.base import UnavailableBackend

MODEL = "densenet_bc22_fmnist"  # 28x28 grey, ~70k parameters: a run takes seconds
FAST = dict(batches=(1, 2), iterations=3, warmup_s=0.0, samples=6)
no_cuda = pytest.mark.skipif(harness.cuda_available(), reason="checks behaviour on a machine without CUDA")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from dnx.export.onnx_export import ExportOptions, export_onnx
    from dnx.models import create_model

    path = tmp_path_factory.mktemp("onnx") / f"{MODEL}.onnx"
    export_onnx(create_model(MODEL), path, ExportOptions(verify=False))
    return path


def test_config_validation():
    with pytest.raises(DnxError, match="nothing to benchmark"):
        BenchConfig().validate()
    with pytest.raises(DnxError, match="did you mean onnxruntime-cpu"):
        BenchConfig(target=MODEL, backends=("onnxruntime-cpuu",)).validate()
    with pytest.raises(DnxError, match="not both"):
        BenchConfig(target=MODEL, iterations=3, duration_s=1.0).validate()
    with pytest.raises(DnxError, match="positive"):
        BenchConfig(target=MODEL, batches=(0,)).validate()
    with pytest.raises(DnxError, match="unknown model"):
        run_bench(BenchConfig(target="densenet122", **FAST))


def test_default_backends():
    assert default_backends(has_cuda=False, has_engine=False) == (
        "torch-cpu", "onnxruntime-cpu", "onnxruntime-cpu-int8")
    assert "tensorrt-cuda" in default_backends(has_cuda=True, has_engine=True)
    assert "onnxruntime-cpu" not in default_backends(has_cuda=True, has_engine=False)
    # an INT8 QDQ target is what onnxruntime-cpu runs: no second run of the same file as onnxruntime-cpu-int8
    assert default_backends(has_cuda=False, has_engine=False, target_precision="int8") == (
        "torch-cpu", "onnxruntime-cpu")
    # OpenVINO, where installed, joins the CPU defaults (not the GPU ones); an INT8 target drops openvino-cpu-int8 too
    assert default_backends(has_cuda=False, has_engine=False, has_openvino=True) == (
        "torch-cpu", "onnxruntime-cpu", "onnxruntime-cpu-int8", "openvino-cpu", "openvino-cpu-int8")
    assert default_backends(has_cuda=False, has_engine=False, target_precision="int8", has_openvino=True) == (
        "torch-cpu", "onnxruntime-cpu", "openvino-cpu")
    assert "openvino-cpu" not in default_backends(has_cuda=True, has_engine=False, has_openvino=True)


def test_default_tolerances_per_precision():
    config = BenchConfig(target=MODEL)
    assert config.tolerance("fp32").max_abs_diff == 1e-4
    assert config.tolerance("fp16").min_top1_agreement == 0.995
    assert config.tolerance("int8").min_top1_agreement == 0.99
    assert config.tolerance("unknown") == DEFAULT_TOLERANCES["fp32"]
    # a random-initialised model's top-1 is noise: its reduced precisions are judged by cosine
    assert config.tolerance("int8", "random-init:seed=0") == Tolerance(min_cosine=0.99)
    assert config.tolerance("fp16", "random-init:seed=0") == Tolerance(min_cosine=0.999)
    custom = BenchConfig(target=MODEL, tolerances={"int8": Tolerance(min_top1_agreement=0.5)})
    assert custom.tolerance("int8").min_top1_agreement == 0.5


def test_parity_verdicts():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((200, 10))
    ref[:, 0] += 10  # FP32 is sure of every image: each flip counts
    close = ref + 5e-5
    flipped = ref.copy()
    flipped[:3] = -flipped[:3]  # 3 of 200 samples change their top-1: 98.5% agreement
    fp32, int8, fp16 = (DEFAULT_TOLERANCES[p] for p in ("fp32", "int8", "fp16"))
    assert fp32.apply(compare_logits(ref, close))
    assert not fp32.apply(compare_logits(ref, ref + 2e-4))
    assert not int8.apply(compare_logits(ref, flipped))  # < 99%
    flipped_one = ref.copy()
    flipped_one[0] = -flipped_one[0]  # 99.5%
    assert int8.apply(compare_logits(ref, flipped_one)) and fp16.apply(compare_logits(ref, flipped_one))
    result = BackendResult("x", parity=[("a", int8.apply(compare_logits(ref, flipped_one))),
                                        ("b", int8.apply(compare_logits(ref, flipped)))])
    assert result.parity_passed is False
    assert BackendResult("y").parity_passed is None


@no_cuda
def test_model_target_runs_cpu_backends_and_reports_unavailable_ones():
    config = BenchConfig(target=MODEL, backends=("torch-cpu", "onnxruntime-cpu", "onnxruntime-cuda", "tensorrt-cuda",
                                                 "torch-cuda-fp16"), **FAST)
    steps = []
    result = run_bench(config, progress=lambda what, done, total: steps.append((what, done, total)))
    by_name = {b.backend: b for b in result.backends}
    assert [b.backend for b in result.backends] == list(config.backends)
    for name in ("torch-cpu", "onnxruntime-cpu"):
        b = by_name[name]
        assert b.status == "ok" and b.precision == "fp32" and b.parity_passed
        assert [e.batch for e in b.latency] == [1, 2]
        assert all(e.measurement.end_to_end.iterations == 3 for e in b.latency)
        assert [name for name, _ in b.parity] == ["random", "fashion-mnist test 1000"]  # the shipped test split
    assert by_name["onnxruntime-cpu"].parity[0][1].max_abs_diff <= 1e-4
    assert by_name["torch-cpu"].parity[0][1].max_abs_diff == 0.0  # the same module and device as the reference
    for name in ("onnxruntime-cuda", "torch-cuda-fp16"):
        assert by_name[name].status == "unavailable" and "CUDA" in by_name[name].reason
    assert by_name["tensorrt-cuda"].status == "unavailable"
    assert result.speedup("torch-cpu", 1) == pytest.approx(1.0)
    assert result.speedup("onnxruntime-cpu", 1) > 0 and result.speedup("onnxruntime-cuda", 1) is None
    assert steps[-1][1] == steps[-1][2]  # the progress callback reaches its total
    assert result.machine["cpu"] and result.machine["versions"]["torch"]


def test_configured_tolerance_turns_parity_into_a_failure():
    # max|diff| must be exactly 0: torch (same module) passes, onnxruntime (1e-7 rounding) fails.
    strict = {"fp32": Tolerance(max_abs_diff=0.0)}
    result = run_bench(BenchConfig(target=MODEL, backends=("torch-cpu", "onnxruntime-cpu"), tolerances=strict, **FAST))
    torch_result, ort_result = result.backends
    assert torch_result.parity_passed is True
    assert ort_result.parity_passed is False and ort_result.status == "ok"
    assert "max|diff|" in ort_result.parity[0][1].criterion


def test_onnx_target_builds_reference_from_its_manifest(exported):
    result = run_bench(BenchConfig(target=str(exported), backends=("onnxruntime-cpu",), **FAST))
    (b,) = result.backends
    assert b.status == "ok" and b.parity_passed and b.artifact == str(exported)
    assert result.model["name"] == MODEL and result.model["source"] == str(exported)


def test_labelled_data_gives_accuracy(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "set.npz"
    np.savez(data, images=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), labels=np.arange(5) % 10)
    result = run_bench(BenchConfig(target=MODEL, backends=("onnxruntime-cpu",), data=str(data), **FAST))
    assert [i["name"] for i in result.inputs] == ["random", "data:set.npz"]
    assert result.inputs[1]["labelled"] and result.inputs[1]["samples"] == 5
    comparison = dict(result.backends[0].parity)["data:set.npz"]
    assert comparison.accuracy is not None and comparison.reference_accuracy is not None


def test_unlabelled_image_folder(tmp_path):
    from PIL import Image

    from dnx.models import get_config

    for i in range(3):
        Image.fromarray(np.full((40, 30, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    case = load_parity_data(tmp_path, get_config(MODEL).preprocess, limit=2)
    assert case.labels is None and case.images.shape == (2, 1, 28, 28) and case.images.dtype == np.float32
    with pytest.raises(DnxError, match="does not exist"):
        load_parity_data(tmp_path / "missing", get_config(MODEL).preprocess, limit=2)


def test_workdir_reuses_the_export(tmp_path):
    config = BenchConfig(target=MODEL, backends=("onnxruntime-cpu",), workdir=str(tmp_path), **FAST)
    run_bench(config)
    onnx = tmp_path / f"{MODEL}.onnx"
    first = onnx.stat().st_mtime_ns
    result = run_bench(config)
    assert onnx.stat().st_mtime_ns == first
    assert result.backends[0].artifact == str(onnx)


def test_engine_target_uses_the_sidecar_and_degrades_without_gpu(exported, tmp_path):
    from dnx.schemas.manifest import read_manifest
    from dnx.core.hashing import sha256_file

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not a real engine")
    sidecar = {"schema": "dnx.engine-manifest/1", "precision": "fp16", "tensorrt_version": "10.8.0.43",
               "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"},
               "batch_profile": {"min_batch": 1, "opt_batch": 2, "max_batch": 2},
               "source_onnx": {"path": str(exported), "sha256": sha256_file(exported),
                               "manifest": read_manifest(exported).to_dict()}}
    (tmp_path / "model.engine.json").write_text(json.dumps(sidecar))
    result = run_bench(BenchConfig(engine=str(engine), backends=("onnxruntime-cpu", "tensorrt-cuda"), **FAST))
    ort, trt = result.backends
    assert ort.status == "ok" and ort.parity_passed  # the ONNX named by the engine's manifest
    if not harness.cuda_available():
        assert trt.status == "unavailable" and "CUDA" in trt.reason


def test_tensorrt_missing_is_unavailable_before_any_file_is_prepared(monkeypatch, tmp_path):
    """A GPU without TensorRT: the table's row says so (without importing tensorrt), and bench prepares nothing."""
    from types import SimpleNamespace

    from dnx.benchmarks import backends
    from dnx.runtime.backends import table

    monkeypatch.setattr(table, "cuda_available", lambda: True)
    monkeypatch.setattr(table, "find_spec", lambda name: None)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # an import would raise
    art = SimpleNamespace(workdir=tmp_path,
                          path_for=lambda kind: pytest.fail("prepared a file for a row that cannot run"))
    with pytest.raises(UnavailableBackend, match="^tensorrt-cuda unavailable: TensorRT is not installed"):
        backends.make_runner(table.TABLE["tensorrt-cuda"], art, BenchConfig(engine="x.engine"))


def test_engine_without_manifest_is_a_clear_error(tmp_path):
    engine = tmp_path / "bare.engine"
    engine.write_bytes(b"x")
    with pytest.raises(DnxError, match="no dnx manifest"):
        run_bench(BenchConfig(engine=str(engine), backends=("tensorrt-cuda",), **FAST))


def test_fixed_batch_onnx_times_only_its_batch(tmp_path):
    from dnx.export.onnx_export import ExportOptions, export_onnx
    from dnx.models import create_model

    path = tmp_path / "fixed.onnx"
    export_onnx(create_model(MODEL), path, ExportOptions(batch=2, verify=False))
    result = run_bench(BenchConfig(target=str(path), backends=("onnxruntime-cpu",), **FAST))
    (b,) = result.backends
    assert b.status == "ok" and b.parity_passed  # parity ran in chunks of exactly 2
    by_batch = {e.batch: e for e in b.latency}
    assert by_batch[2].measurement is not None
    assert by_batch[1].measurement is None and "fixed batch of 2" in by_batch[1].error


def test_int8_backend_calibrates_through_the_keyed_cache(tmp_path):
    from dnx.models import ASSETS

    calib = tmp_path / "calib.npz"
    shipped = np.load(ASSETS / "fashion_mnist_calib512.npz")
    np.savez(calib, images=shipped["images"][:32])
    work = tmp_path / "work"
    config = BenchConfig(target=MODEL, backends=("onnxruntime-cpu-int8",), workdir=str(work), calib_data=str(calib),
                         data=str(ASSETS / "fashion_mnist_test5k.npz"), **{**FAST, "samples": 200})
    first = run_bench(config).backends[0]
    assert first.ran and first.precision == "int8", first.reason
    verdicts = dict(first.parity)
    assert verdicts["data:fashion_mnist_test5k.npz"].passed  # INT8 tolerance: top-1 agreement >= 99%
    cache = next(work.glob("*.calib.json"))
    ranges, written = json.loads(cache.read_text())["ranges"], cache.stat().st_mtime_ns
    second = run_bench(config).backends[0]
    assert second.artifact == first.artifact and cache.stat().st_mtime_ns == written  # a cache hit
    # same path, other contents: the cache key (data fingerprint) changes, so it recalibrates
    np.savez(calib, images=shipped["images"][32:64])
    run_bench(config)
    assert json.loads(cache.read_text())["ranges"] != ranges


def test_openvino_backends_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("openvino", reason="OpenVINO is an optional extra: pip install 'dnx[openvino]'")
    pytest.importorskip("nncf", reason="openvino-cpu-int8 calibrates with NNCF: pip install 'dnx[openvino]'")
    from dnx.models import ASSETS
    from dnx.runtime.backends.openvino_runner import cpu_capabilities

    config = BenchConfig(target=MODEL, backends=("openvino-cpu", "openvino-cpu-int8"), workdir=str(tmp_path),
                         ov_precision="fp32", calib_data=str(ASSETS / "fashion_mnist_calib512.npz"),
                         data=str(ASSETS / "fashion_mnist_test5k.npz"), **{**FAST, "samples": 200})
    cpu, int8 = run_bench(config).backends
    assert cpu.ran and cpu.precision == "fp32" and cpu.parity_passed, cpu.reason
    assert int8.ran and int8.precision == "int8", int8.reason
    assert dict(int8.parity)["data:fashion_mnist_test5k.npz"].passed  # top-1 agreement >= 99%
    assert json.loads(next(tmp_path.glob("*.int8.*.onnx.json")).read_text())["calibration"]["target"] == "openvino"
    if "BF16" not in cpu_capabilities():
        bf16 = run_bench(BenchConfig(target=MODEL, backends=("openvino-cpu",), ov_precision="bf16", **FAST)).backends[0]
        assert bf16.status == "unavailable" and "no BF16 support" in bf16.reason
    monkeypatch.setitem(sys.modules, "openvino", None)
    gone = run_bench(BenchConfig(target=MODEL, backends=("openvino-cpu",), **FAST)).backends[0]
    assert gone.status == "unavailable" and "dnx[openvino]" in gone.reason


def test_default_parity_is_real_data_and_random_never_decides_int8(fmnist_int8_onnx, broken_int8_onnx):
    """Default flags on dnx's trained model: every precision passes on the shipped test split; a Q/DQ file
    whose weight scales were multiplied by 10 still FAILs there."""
    result = run_bench(BenchConfig(target=str(fmnist_int8_onnx), backends=("onnxruntime-cpu",), **FAST))
    (b,) = result.backends
    random_case, real_case = (c for _, c in b.parity)
    assert b.precision == "int8" and real_case.samples == 1000 and real_case.accuracy is not None
    assert random_case.passed is None and "numeric only" in random_case.criterion
    assert real_case.passed and real_case.top1_flips <= 10 and b.parity_passed is True

    (b,) = run_bench(BenchConfig(target=str(broken_int8_onnx), backends=("onnxruntime-cpu",), **FAST)).backends
    assert b.parity_passed is False and "top-1 agreement" in dict(b.parity)["fashion-mnist test 1000"].criterion
