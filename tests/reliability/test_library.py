"""Library-level checks behind the catalogue's rows: modes, clean-up, verification, 16-bit images."""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest

from dnx.core.errors import DnxError
from dnx.core.fileio import atomic_path, check_writable, write_bytes_atomic


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_honour_the_umask(umask, tmp_path):
    """D11: artifacts get 0666 & ~umask, as open() would give, not mkstemp's 0600."""
    old = os.umask(umask)
    try:
        write_bytes_atomic(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("bug"), OSError(errno.EACCES, "denied")])
def test_failed_block_leaves_no_file(error, tmp_path):
    with pytest.raises(type(error)):
        with atomic_path(tmp_path / "a.onnx") as tmp:
            tmp.write_bytes(b"half")
            raise error
    assert list(tmp_path.iterdir()) == []


def test_disk_full_inside_the_block_is_a_dnx_error(tmp_path):
    with pytest.raises(DnxError, match=r"^no space left to write .*a.onnx; free some space"):
        with atomic_path(tmp_path / "a.onnx") as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_temporary_name_fits_beside_a_long_final_name(tmp_path):
    """D3: the temporary name adds 10 bytes; a name the check accepts must be writable."""
    name = "n" * (255 - 10)
    write_bytes_atomic(tmp_path / name, b"x")
    assert (tmp_path / name).read_bytes() == b"x"
    with pytest.raises(DnxError, match="choose a shorter name"):
        check_writable(tmp_path / (name + "n"))


def test_sidecar_clash_found_before_writing(tmp_path):
    """D12: PATH.json that cannot be written is found before PATH is."""
    (tmp_path / "x.onnx.json").mkdir()
    with pytest.raises(DnxError, match=r"x.onnx.json is a directory"):
        check_writable(tmp_path / "x.onnx", sidecar=True)
    check_writable(tmp_path / "x.onnx")  # without a sidecar the name itself is fine


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_devices_are_never_replaced(device):
    """D1: an existing output that is not a regular file is refused."""
    with pytest.raises(DnxError, match="not a regular file"):
        check_writable(device, "--csv")
    assert stat.S_ISCHR(os.stat(device).st_mode)


def test_constant_outputs_fail_verification(tmp_path):
    """D2: a network whose every logit is equal agrees with PyTorch to 0 difference and must still fail."""
    import torch

    from dnx.core.errors import VerificationError
    from dnx.schemas.manifest import read_manifest
    from dnx.export.onnx_export import export_onnx
    from dnx.models import create_model

    loaded = create_model("densenet_bc22_fmnist")
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.zero_()
    with pytest.raises(VerificationError, match=r"outputs are constant"):
        export_onnx(loaded, tmp_path / "zero.onnx")
    assert read_manifest(tmp_path / "zero.onnx").extra["verification"]["status"] == "failed"


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    """D6: a 16-bit greyscale PNG preprocesses like its 8-bit version (Pillow's convert clips it to 255)."""
    from PIL import Image

    from dnx.data.preprocess import load_image, preprocess_image
    from dnx.models import get_config

    pre = get_config("densenet_bc22_fmnist").preprocess
    eight = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert load_image(tmp_path / "deep.png").mode.startswith("I")
    np.testing.assert_allclose(preprocess_image(load_image(tmp_path / "deep.png"), pre),
                               preprocess_image(Image.fromarray(eight), pre), atol=1e-6)


def test_bomb_in_a_calibration_folder_is_skipped_and_counted(tmp_path, harness):
    """D3: a decompression bomb is one unreadable image among good ones, not the end of the run."""
    from PIL import Image

    from dnx.calibration.data import open_calibration_data
    from dnx.models import get_config

    for i in range(3):
        Image.fromarray(np.full((28, 28), i * 40, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "bomb.png").write_bytes(harness.bomb_png())
    data = open_calibration_data(tmp_path, get_config("densenet_bc22_fmnist").preprocess, samples=None)
    assert len(data) == 3 and data.skipped == 1
    assert "skipped 1 unreadable or corrupt image file(s)" in data.notes


def test_training_without_a_held_out_split_has_no_test_accuracy(tmp_path):
    """D14: accuracy on training images is never reported as test accuracy."""
    from dnx.data.datasets import has_split

    (tmp_path / "train" / "a").mkdir(parents=True)
    assert not has_split(tmp_path / "x.npz", "test") and not has_split(tmp_path, "test")
    (tmp_path / "test" / "a").mkdir(parents=True)
    assert has_split(tmp_path, "test")


@pytest.mark.parametrize("error", [ValueError("boom"), PermissionError(13, "Permission denied", "/x/y")])
def test_unexpected_errors_are_one_line_too(error, harness, monkeypatch, tmp_path):
    """A bug or an OS refusal dnx did not foresee: one line, exit 1, the traceback only with --debug."""
    import dnx.cli.models

    def broken():
        raise error

    monkeypatch.setattr(dnx.cli.models, "list_models", broken)  # the name `dnx models` calls
    result = harness.run_dnx(["models"], tmp_path)
    expected = ("dnx: internal error (a bug in dnx, please report it): ValueError: boom; rerun with --debug for "
                "the traceback\n" if isinstance(error, ValueError) else "dnx: Permission denied: /x/y\n")
    assert (result.code, result.stderr, result.escaped) == (1, expected, None)
    debug = harness.run_dnx(["--debug", "models"], tmp_path)
    assert debug.code == 1 and "Traceback (most recent call last)" in debug.stderr
