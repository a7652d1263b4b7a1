"""`dnx train`: a short real run writes a loadable checkpoint and its manifest."""

from __future__ import annotations

import json
import subprocess
import sys

from dnx.models import create_model
from dnx.core.hashing import sha256_file


def test_short_training_run_writes_loadable_checkpoint(tmp_path):
    out = tmp_path / "m.pth"
    result = subprocess.run([sys.executable, "-m", "dnx.cli", "train", "densenet_bc22_fmnist", "--data",
                             "dnx/assets/fashion_mnist_test5k.npz", "--limit", "256", "--epochs", "1",
                             "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "m.pth.json").read_text())
    assert manifest["sha256"] == sha256_file(out)
    assert manifest["history"]["train_images"] == 256 and len(manifest["history"]["epochs"]) == 1
    # an .npz holds one set: no held-out split, so no test accuracy (issue 14, defect 14)
    assert manifest["test_accuracy"] is None and "no test split" in result.stderr
    assert create_model("densenet_bc22_fmnist", weights=out).weights == manifest["sha256"]


def test_bad_dataset_path_is_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dnx.cli", "train", "densenet_bc22_fmnist", "--data",
                             str(tmp_path / "missing")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "does not exist" in result.stderr and "Traceback" not in result.stderr
