"""`dnx triton export`: every config.pbtxt parsed into Triton's own ModelConfig and checked against the artifact.

The preprocessing model (runtime/serve/triton_model.py) also runs for real in the tritonserver that
nvidia-pytriton bundles (its Python backend), against dnx's in-process preprocessing. The network
models themselves (onnxruntime_onnx, tensorrt_plan) cannot load here: the wheel ships only the
Python backend, so those configs are checked by parsing, not by a server.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed (dnx[triton])")

from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

from dnx.core.errors import DnxError  # noqa: E402
from dnx.runtime.artifact import open_artifact  # noqa: E402
from dnx.runtime.serve.repository import RepositoryOptions, export_repository  # noqa: E402


def parse(folder: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def dims(tensor) -> list[int]:
    return [int(d) for d in tensor.dims]


@pytest.fixture()
def fake_engine(tmp_path, fmnist_onnx):
    """A fake engine file (NOT TensorRT) with a hand-written dnx engine manifest for the fmnist ONNX."""
    from dnx.schemas.manifest import read_manifest
    from dnx.schemas.engine_manifest import ENGINE_SCHEMA

    engine = tmp_path / "fmnist_int8.engine"
    engine.write_bytes(b"not a real TensorRT plan")

    def write(min_batch=1, max_batch=16, certified=True, fixed_batch=None, version_compat=False):
        source = read_manifest(fmnist_onnx).to_dict()
        if not certified:
            source.pop("certificate", None)
        manifest = {"schema": ENGINE_SCHEMA, "artifact": "tensorrt-engine", "tensorrt_version": "10.16.1.11",
                    "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"}, "precision": "int8",
                    "batch_profile": {"min_batch": min_batch, "opt_batch": 8, "max_batch": max_batch},
                    "inputs": [{"name": "input", "shape": [fixed_batch or -1, 1, 28, 28], "dtype": "float32"}],
                    "outputs": [{"name": "logits", "shape": [fixed_batch or -1, 10], "dtype": "float32"}],
                    "version_compat": version_compat,
                    "source_onnx": {"path": str(fmnist_onnx), "manifest": source}}
        (tmp_path / "fmnist_int8.engine.json").write_text(json.dumps(manifest))
        return engine

    return write


def test_onnx_repository_configs_match_the_artifact(tmp_path, fmnist_onnx):
    art = open_artifact(fmnist_onnx)
    repo = tmp_path / "repo"
    options = RepositoryOptions(max_batch=16, instances=2, kind="cpu", preferred_batch=(4, 8), queue_delay_us=250)
    result = export_repository([fmnist_onnx], repo, options)
    assert result.models == ("fmnist", "fmnist_preprocess", "fmnist_image")
    assert sorted(p.name for p in repo.iterdir()) == ["fmnist", "fmnist_image", "fmnist_preprocess"]  # no temp left

    net = parse(repo / "fmnist")
    assert (net.name, net.platform, net.max_batch_size) == ("fmnist", "onnxruntime_onnx", 16)
    (inp,), (out,) = net.input, net.output
    assert inp.name == art.input_name and inp.data_type == model_config_pb2.TYPE_FP32
    assert dims(inp) == list(art.input_shape[1:]) == [1, 28, 28]
    assert (out.name, dims(out), out.data_type) == ("logits", [art.num_classes], model_config_pb2.TYPE_FP32)
    assert (repo / "fmnist" / out.label_filename).read_text().splitlines() == art.labels
    model_file = repo / "fmnist" / "1" / "model.onnx"
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == art.sha256
    assert list(net.dynamic_batching.preferred_batch_size) == [4, 8]
    assert net.dynamic_batching.max_queue_delay_microseconds == 250
    (group,) = net.instance_group
    assert (group.count, group.kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_CPU)
    assert [(w.batch_size, dims(w.inputs[art.input_name]), w.inputs[art.input_name].zero_data)
            for w in net.model_warmup] == [(1, [1, 28, 28], True), (16, [1, 28, 28], True)]
    assert not net.optimization.execution_accelerators.gpu_execution_accelerator
    assert net.parameters["dnx_sha256"].string_value == art.sha256
    assert json.loads((repo / "fmnist" / "dnx_manifest.json").read_text()) == art.manifest.to_dict()


def test_ensemble_wiring_connects_real_tensor_names(tmp_path, fmnist_onnx):
    art = open_artifact(fmnist_onnx)
    repo = tmp_path / "repo"
    export_repository([fmnist_onnx], repo, RepositoryOptions(kind="cpu"))
    configs = {p.name: parse(p) for p in repo.iterdir()}
    pre, ens, net = configs["fmnist_preprocess"], configs["fmnist_image"], configs["fmnist"]

    assert (pre.backend, pre.platform) == ("python", "")
    assert (repo / "fmnist_preprocess" / "1" / "model.py").read_text() == \
        (Path(__file__).parents[3] / "runtime" / "serve" / "triton_model.py").read_text()
    from dnx.models.registry import Preprocess

    assert Preprocess.from_dict(json.loads(pre.parameters["dnx_preprocess"].string_value)) == art.preprocess
    assert [(t.name, t.data_type, dims(t)) for t in pre.input] == [("IMAGE", model_config_pb2.TYPE_STRING, [1])]
    assert [(t.name, dims(t)) for t in pre.output] == [(art.input_name, [1, 28, 28])]

    assert ens.platform == "ensemble" and ens.max_batch_size == net.max_batch_size == pre.max_batch_size == 8
    assert not ens.instance_group and not ens.HasField("dynamic_batching")
    assert (repo / "fmnist_image" / "1").is_dir()  # Triton needs the version folder of an ensemble too
    steps = ens.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["fmnist_preprocess", "fmnist"]
    produced = {t.name for t in ens.input}
    for step in steps:  # each step reads only tensors that exist by then, under its model's real names
        model = configs[step.model_name]
        assert set(step.input_map) == {t.name for t in model.input}
        assert set(step.input_map.values()) <= produced
        assert set(step.output_map) <= {t.name for t in model.output}
        produced |= set(step.output_map.values())
    assert {t.name for t in ens.output} <= produced
    assert (ens.output[0].name, dims(ens.output[0])) == (net.output[0].name, dims(net.output[0]))
    assert (repo / "fmnist_image" / ens.output[0].label_filename).read_text().splitlines() == art.labels


def test_preprocess_config_is_exactly_the_generated_dict(fmnist_onnx):
    from dnx.runtime.serve.repository import ModelConfigBuilder, network_spec

    options = RepositoryOptions(kind="cpu")
    spec = network_spec(fmnist_onnx, options)
    assert ModelConfigBuilder(spec, options).preprocess() == {
        "name": "fmnist_preprocess", "backend": "python", "max_batch_size": 8,
        "input": [{"name": "IMAGE", "data_type": "TYPE_STRING", "dims": [1]}],
        "output": [{"name": "input", "data_type": "TYPE_FP32", "dims": [1, 28, 28]}],
        "dynamic_batching": {"max_queue_delay_microseconds": 100},
        "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
        "parameters": {"dnx_preprocess": {"string_value": json.dumps(spec.artifact.preprocess.to_dict())}}}


def test_tensorrt_accelerator_block(tmp_path, fmnist_onnx):
    repo = tmp_path / "repo"
    export_repository([fmnist_onnx], repo, RepositoryOptions(tensorrt_accelerator=True, ensemble=False))
    net = parse(repo / "fmnist")
    (acc,) = net.optimization.execution_accelerators.gpu_execution_accelerator
    assert (acc.name, dict(acc.parameters)) == ("tensorrt", {"precision_mode": "FP32"})
    assert net.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert sorted(p.name for p in repo.iterdir()) == ["fmnist"]
    with pytest.raises(DnxError, match="--kind gpu"):
        RepositoryOptions(tensorrt_accelerator=True, kind="cpu").validate()


def test_engine_repository_takes_batch_from_the_profile(tmp_path, fake_engine):
    engine = fake_engine(max_batch=16)
    repo = tmp_path / "repo"
    export_repository([engine], repo, RepositoryOptions(instances=3))
    net = parse(repo / "fmnist_int8")
    assert (net.platform, net.max_batch_size) == ("tensorrt_plan", 16)
    assert (repo / "fmnist_int8" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert [(t.name, dims(t)) for t in net.input] == [("input", [1, 28, 28])]
    assert [(t.name, dims(t)) for t in net.output] == [("logits", [10])]
    (group,) = net.instance_group
    assert (group.count, group.kind) == (3, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    assert net.parameters["dnx_precision"].string_value == "int8"
    assert parse(repo / "fmnist_int8_image").ensemble_scheduling.step[1].model_name == "fmnist_int8"

    with pytest.raises(DnxError, match="larger than .*optimization profile"):
        export_repository([engine], tmp_path / "r2", RepositoryOptions(max_batch=32))
    with pytest.raises(DnxError, match="runs only on a GPU"):
        export_repository([engine], tmp_path / "r3", RepositoryOptions(kind="cpu"))
    with pytest.raises(DnxError, match="min-batch 1"):
        export_repository([fake_engine(min_batch=2)], tmp_path / "r4", RepositoryOptions())
    assert not any((tmp_path / r).exists() for r in ("r2", "r3", "r4"))  # refused before anything was written


def test_fixed_batch_engine_is_served_unbatched_with_full_dims(tmp_path, fake_engine):
    # `dnx build` of a fixed-batch ONNX makes a profile of min = max = that batch; Triton serves such an
    # engine as max_batch_size 0 with the batch axis in dims (tensorrt_backend's non-batching branch).
    engine = fake_engine(min_batch=4, max_batch=4, fixed_batch=4)
    repo = tmp_path / "repo"
    export_repository([engine], repo, RepositoryOptions())
    net = parse(repo / "fmnist_int8")
    assert net.max_batch_size == 0 and not net.HasField("dynamic_batching")
    assert [(t.name, dims(t)) for t in net.input] == [("input", [4, 1, 28, 28])]
    assert [(t.name, dims(t)) for t in net.output] == [("logits", [4, 10])]
    assert dims(parse(repo / "fmnist_int8_image").input[0]) == [4, 1]
    with pytest.raises(DnxError, match=r"fixed batch of 4; Triton cannot batch it \(--max-batch 8\): re-export "
                                       r"with `dnx export \.\.\. --batch dynamic` and rebuild the engine"):
        export_repository([engine], tmp_path / "r2", RepositoryOptions(max_batch=8))


def test_version_compatible_engine_says_what_tritonserver_needs(tmp_path, fake_engine):
    from click.testing import CliRunner

    from dnx.cli import cli

    needed = "--backend-config=tensorrt,version-compatible=true"
    result = export_repository([fake_engine()], tmp_path / "plain", RepositoryOptions(ensemble=False))
    assert result.server_args == () and not (tmp_path / "plain" / "fmnist_int8" / "README.md").exists()
    assert "dnx_tritonserver_needs" not in parse(tmp_path / "plain" / "fmnist_int8").parameters

    engine = fake_engine(version_compat=True)
    result = export_repository([engine], tmp_path / "repo", RepositoryOptions(ensemble=False))
    assert result.server_args == (needed,)
    net = parse(tmp_path / "repo" / "fmnist_int8")
    assert net.parameters["dnx_tritonserver_needs"].string_value == needed
    assert needed in (tmp_path / "repo" / "fmnist_int8" / "README.md").read_text()
    out = CliRunner().invoke(cli, ["triton", "export", str(engine), "--repo", str(tmp_path / "cli")])
    assert out.exit_code == 0, out.output
    assert f"tritonserver --model-repository {tmp_path / 'cli'} {needed}" in out.output


def test_refuses_unverified_artifacts_unless_allowed(tmp_path, fake_engine):
    engine = fake_engine(certified=False)
    with pytest.raises(DnxError, match="no passed parity certificate.*--allow-unverified"):
        export_repository([engine], tmp_path / "repo", RepositoryOptions())
    assert not (tmp_path / "repo").exists()
    export_repository([engine], tmp_path / "repo", RepositoryOptions(allow_unverified=True, ensemble=False))
    assert parse(tmp_path / "repo" / "fmnist_int8").platform == "tensorrt_plan"


def test_refuses_artifacts_without_a_manifest(tmp_path, fmnist_onnx):
    import onnx

    proto = onnx.load(fmnist_onnx)
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, bare)
    with pytest.raises(DnxError, match="no dnx manifest"):
        export_repository([bare], tmp_path / "repo", RepositoryOptions())
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(DnxError, match="no manifest"):
        export_repository([engine], tmp_path / "repo", RepositoryOptions())


@pytest.mark.parametrize("name", ["bad/name", "-dash", ".hidden", "sp ace", "x" * 129])
def test_refuses_names_triton_rejects(tmp_path, fmnist_onnx, name):
    with pytest.raises(DnxError, match="not one Triton accepts"):
        export_repository([fmnist_onnx], tmp_path / "repo", RepositoryOptions(), names=[name])


def test_non_empty_repo_needs_force_and_force_keeps_other_models(tmp_path, fmnist_onnx):
    repo = tmp_path / "repo"
    (repo / "other_model" / "1").mkdir(parents=True)
    with pytest.raises(DnxError, match="not empty; pass --force"):
        export_repository([fmnist_onnx], repo, RepositoryOptions())
    export_repository([fmnist_onnx], repo, RepositoryOptions(force=True, max_batch=4))
    export_repository([fmnist_onnx], repo, RepositoryOptions(force=True, max_batch=2))
    assert parse(repo / "fmnist").max_batch_size == 2
    assert sorted(p.name for p in repo.iterdir()) == ["fmnist", "fmnist_image", "fmnist_preprocess", "other_model"]


def test_a_failed_write_leaves_no_model_folder(tmp_path, fmnist_onnx, monkeypatch):
    import dnx.runtime.serve.repository as repository

    repo = tmp_path / "repo"
    export_repository([fmnist_onnx], repo, RepositoryOptions(max_batch=4))
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(repository.shutil, "copyfile", full_disk)
    with pytest.raises(DnxError):
        export_repository([fmnist_onnx], repo, RepositoryOptions(max_batch=2, force=True))
    # the old repository is intact and no staging folder is left beside it
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in repo.iterdir()) == ["fmnist", "fmnist_image", "fmnist_preprocess"]


def test_cli_export_writes_and_refuses(tmp_path, fmnist_onnx):
    from click.testing import CliRunner

    from dnx.cli import cli

    repo = tmp_path / "repo"
    runner = CliRunner()
    ok = runner.invoke(cli, ["triton", "export", str(fmnist_onnx), "--repo", str(repo), "--kind", "cpu",
                             "--preferred-batch", "2,4", "--max-batch", "4", "--no-ensemble"])
    assert ok.exit_code == 0, ok.output
    assert list(parse(repo / "fmnist").dynamic_batching.preferred_batch_size) == [2, 4]
    again = runner.invoke(cli, ["triton", "export", str(fmnist_onnx), "--repo", str(repo)])
    assert again.exit_code != 0 and "--force" in str(again.exception)


# -- the preprocessing model, run by the real tritonserver bundled with nvidia-pytriton ---------------

@pytest.fixture(scope="module")
def bundled_tritonserver(tmp_path_factory, fmnist_onnx, servers):
    """The repository's fmnist_preprocess model loaded by PyTriton's tritonserver binary (Python backend)."""
    pytest.importorskip("pytriton", reason="nvidia-pytriton is not installed (dnx[triton])")
    import tritonclient.http as http

    work = tmp_path_factory.mktemp("tritonserver")
    repo = work / "repo"
    export_repository([fmnist_onnx], repo, RepositoryOptions(kind="cpu", max_batch=4))
    proc, port, log = servers.start_tritonserver(work, repo, "--model-control-mode=explicit",
                                                 "--load-model=fmnist_preprocess", "--exit-timeout-secs=2")
    client = http.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        servers.wait_ready(lambda: client.is_model_ready("fmnist_preprocess"), proc, log, "tritonserver", timeout=60)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)


def test_preprocessing_model_runs_in_real_triton_as_dnx_does(bundled_tritonserver, fmnist_onnx):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    import dnx
    from dnx.data.preprocess import bundled_photos

    photos = [p.read_bytes() for p in bundled_photos()[:3]]
    clf = dnx.load(fmnist_onnx, backend="onnxruntime", warmup=False)
    want = clf.preprocess(photos)
    image = http.InferInput("IMAGE", [len(photos), 1], "BYTES")
    image.set_data_from_numpy(np.array(photos, dtype=object).reshape(-1, 1))
    got = bundled_tritonserver.infer("fmnist_preprocess", [image]).as_numpy("input")
    assert got.shape == want.shape == (3, 1, 28, 28)
    np.testing.assert_allclose(got, want, rtol=0, atol=0)

    broken = http.InferInput("IMAGE", [1, 1], "BYTES")
    broken.set_data_from_numpy(np.array([[b"not an image"]], dtype=object))
    with pytest.raises(InferenceServerException, match="(?i)image"):
        bundled_tritonserver.infer("fmnist_preprocess", [broken])
    assert bundled_tritonserver.infer("fmnist_preprocess", [image]).as_numpy("input").shape == (3, 1, 28, 28)
