"""Figure 5's feature-reuse matrices: shapes, a known map from known weights, and ONNX/QDQ parity."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dnx.core.errors import DnxError
from dnx.models import ASSETS, create_model, get_config
from dnx.paper.reuse import feature_reuse, feature_reuse_report

SHIPPED = ASSETS / "densenet_bc22_fmnist.pth"
CALIB = ASSETS / "fashion_mnist_calib512.npz"


def _lower_triangle(n: int) -> np.ndarray:
    """Where a (target, source) pixel exists: target t (row t-1) reads sources 0..t-1; the last row all."""
    return np.tril(np.ones((n + 1, n + 1), dtype=bool))


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    from dnx.calibration.qdq import calibrate_qdq
    from dnx.export.onnx_export import ExportOptions, export_onnx

    root = tmp_path_factory.mktemp("reuse")
    fp32 = export_onnx(create_model("densenet_bc22_fmnist"), root / "m.onnx", ExportOptions(verify=False)).path
    int8 = calibrate_qdq(fp32, root / "m.int8.onnx", CALIB, samples=16).path
    return fp32, int8


def test_shipped_model_gives_one_lower_triangular_matrix_per_block():
    report = feature_reuse_report(SHIPPED)  # model read from the checkpoint's sidecar
    assert report.model == "densenet_bc22_fmnist"
    assert [b.last_target for b in report.fp32] == ["transition1", "transition2", "classifier"]
    for block in report.fp32:
        assert block.layer_read == "conv1" and block.matrix.shape == (4, 4)
        assert np.array_equal(~np.isnan(block.matrix), _lower_triangle(3))
        assert np.nanmin(block.matrix) > 0


def _known_weights(cfg, value):
    """The model's state dict with every weight Figure 5 reads set to +-value(block, target, source)."""
    net = cfg.build()
    state = {k: v.double().numpy().copy() for k, v in net.state_dict().items() if v.is_floating_point()}
    conv = "conv1" if cfg.bn_size else "conv2"
    k = cfg.growth_rate
    for b, layers in enumerate(cfg.block_config, start=1):
        keys = [f"features.denseblock{b}.denselayer{t}.{conv}.weight" for t in range(1, layers + 1)]
        keys.append("classifier.weight" if b == len(cfg.block_config) else f"features.transition{b}.conv.weight")
        for t, key in enumerate(keys, start=1):
            w = state[key]
            c0 = state[keys[0]].shape[1]
            bounds = [0, c0] + [c0 + s * k for s in range(1, t)]
            for s in range(t):
                sign = -1 if (s + t) % 2 else 1  # |w| must not care about sign
                w[:, bounds[s]:bounds[s + 1]] = sign * value(b, t, s)
    return state


def test_known_weights_give_the_known_map(tmp_path):
    import torch

    cfg = get_config("densenet_bc22_fmnist")
    def value(b, t, s):
        return 0.001 * (100 * b + 10 * t + s)

    state = _known_weights(cfg, value)
    path = tmp_path / "known.pth"
    torch.save({k: torch.from_numpy(v).float() for k, v in state.items()}, path)
    report = feature_reuse_report(path, model="densenet_bc22_fmnist")
    for b, block in enumerate(report.fp32, start=1):
        expected = np.full((4, 4), np.nan)
        for t in range(1, 5):
            for s in range(t):
                expected[t - 1, s] = value(b, t, s)
        np.testing.assert_allclose(block.matrix, expected, rtol=1e-6, atol=0)


def test_plain_densenet_reads_the_3x3_conv_and_has_one_row_per_layer():
    cfg = get_config("densenet40_k12")  # 12 layers per block, no bottleneck
    blocks = feature_reuse(cfg, _known_weights(cfg, lambda b, t, s: float(t + s)))
    assert [b.layer_read for b in blocks] == ["conv2"] * 3
    for block in blocks:
        assert block.matrix.shape == (13, 13)
        rows, cols = np.nonzero(~np.isnan(block.matrix))
        np.testing.assert_allclose(block.matrix[rows, cols], rows + 1 + cols, rtol=1e-6)


def test_fp32_onnx_gives_the_checkpoint_map_and_qdq_stays_close(onnx_files):
    fp32, int8 = onnx_files
    same = feature_reuse_report(SHIPPED, onnx_path=fp32)
    for d, f in zip(same.difference(), same.fp32):
        # the exporter folded norm2 into each conv1; dividing it out recovers the checkpoint's weights
        np.testing.assert_allclose(np.nan_to_num(d / f.matrix), 0, atol=1e-6)
    quant = feature_reuse_report(SHIPPED, onnx_path=int8)
    assert quant.onnx_precision == "int8"
    relative = np.concatenate([np.abs(d / f.matrix)[~np.isnan(d)] for d, f in zip(quant.difference(), quant.fp32)])
    # per-channel symmetric INT8: each weight moves by at most half a step (max|w| / 254)
    assert 0 < relative.max() < 0.01


def test_onnx_from_other_weights_is_refused(tmp_path):
    from dnx.export.onnx_export import ExportOptions, export_onnx

    other = export_onnx(create_model("densenet_bc22_fmnist", use_bundled=False), tmp_path / "r.onnx",
                        ExportOptions(verify=False)).path
    with pytest.raises(DnxError, match="exported from weights"):
        feature_reuse_report(SHIPPED, onnx_path=other)
    with pytest.raises(DnxError, match="is an ONNX file"):
        feature_reuse_report(other)


def test_wrong_model_is_one_clear_error():
    with pytest.raises(DnxError, match="check --model"):
        feature_reuse_report(SHIPPED, model="densenet121")


def test_cli_writes_json_and_plot(onnx_files, tmp_path):
    pytest.importorskip("matplotlib")
    _, int8 = onnx_files
    out = subprocess.run([sys.executable, "-m", "dnx.cli", "paper", "reuse", str(SHIPPED), "--onnx", str(int8),
                          "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")],
                         check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert [len(b["matrix"]) for b in data["blocks"]] == [4, 4, 4]
    assert data["blocks"][0]["matrix"][0][1] is None and data["onnx"]["precision"] == "int8"
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([sys.executable, "-m", "dnx.cli", "paper", "reuse", str(SHIPPED), "--plot",
                          str(tmp_path / "r.xyz")],
                         check=False, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "cannot write .xyz" in bad.stderr and not (tmp_path / "r.xyz").exists()


def test_the_old_name_dnx_reuse_runs_paper_reuse_with_a_notice(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dnx.cli", "reuse", str(SHIPPED), "--json", str(tmp_path / "r.json")],
                         check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "dnx: note: `dnx reuse` is now `dnx paper reuse`; the old name will be removed\n" in out.stderr
    assert [len(b["matrix"]) for b in json.loads((tmp_path / "r.json").read_text())["blocks"]] == [4, 4, 4]
    listed = subprocess.run([sys.executable, "-m", "dnx.cli", "--help"], check=True, capture_output=True, text=True,
                            timeout=300).stdout
    assert "reuse" not in listed.split("Commands:")[1]  # hidden: `dnx paper reuse` is the name to learn
