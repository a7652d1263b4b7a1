"""Calibration data streams: formats, deterministic selection, bad input."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from dnx.calibration.data import open_calibration_data
from dnx.core.errors import DnxError
from dnx.models import get_config

RGB = get_config("densenet121").with_overrides(image_size=64).preprocess
GREY = get_config("densenet_bc22_fmnist").preprocess


def _photos(folder, n, mode="RGB", size=(80, 70)):
    rng = np.random.default_rng(0)
    (folder / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
        img = Image.fromarray(arr).convert(mode)
        path = folder / ("sub/deeper" if i % 2 else "sub") / f"img{i}.{['jpg', 'png', 'bmp', 'webp'][i % 4]}"
        img.save(path)
        paths.append(path)
    return paths


def test_folder_is_recursive_and_batches_have_model_shape(tmp_path):
    _photos(tmp_path, 10)
    data = open_calibration_data(tmp_path, RGB, samples=7, seed=0)
    assert len(data) == 7
    batches = list(data.batches(3))
    assert [b.shape for b in batches] == [(3, 3, 64, 64), (3, 3, 64, 64), (1, 3, 64, 64)]
    assert all(b.dtype == np.float32 for b in batches)


def test_selection_is_deterministic_per_seed(tmp_path):
    _photos(tmp_path, 12)
    a = open_calibration_data(tmp_path, RGB, samples=5, seed=0)
    b = open_calibration_data(tmp_path, RGB, samples=5, seed=0)
    c = open_calibration_data(tmp_path, RGB, samples=5, seed=1)
    assert a.items == b.items and a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    np.testing.assert_array_equal(a.batch(0, 5), b.batch(0, 5))


def test_corrupt_files_are_skipped_and_counted(tmp_path):
    _photos(tmp_path, 4)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = (tmp_path / "sub" / "img0.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 3])
    data = open_calibration_data(tmp_path, RGB, samples=None)
    assert len(data) == 4 and data.skipped == 2
    assert any("skipped 2" in n for n in data.notes)


def test_only_corrupt_files_fails(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"nope")
    with pytest.raises(DnxError, match="none of 1 image files could be read"):
        open_calibration_data(tmp_path, RGB)


def test_empty_folder_fails(tmp_path):
    with pytest.raises(DnxError, match="has no images"):
        open_calibration_data(tmp_path, RGB)


def test_grey_images_for_rgb_model_are_converted_and_said(tmp_path):
    _photos(tmp_path, 3, mode="L")
    data = open_calibration_data(tmp_path, RGB, samples=3)
    assert data.batch(0, 3).shape == (3, 3, 64, 64)
    assert any("converted 3" in n and "RGB" in n for n in data.notes)


def test_fewer_samples_than_asked_warns_and_continues(tmp_path):
    _photos(tmp_path, 3)
    data = open_calibration_data(tmp_path, RGB, samples=10)
    assert len(data) == 3 and any("only 3" in n for n in data.notes)


def test_npz_uint8_and_float_inputs(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (20, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=imgs)
    data = open_calibration_data(tmp_path / "a.npz", GREY, samples=8)
    assert data.batch(0, 8).shape == (8, 1, 28, 28)
    ready = np.random.default_rng(1).standard_normal((6, 1, 28, 28), dtype=np.float32)
    np.save(tmp_path / "b.npy", ready)
    data = open_calibration_data(tmp_path / "b.npy", GREY, samples=None)
    np.testing.assert_array_equal(np.concatenate(list(data.batches(4))), ready)
    # single-channel (N, H, W, 1) arrays are the same images as (N, H, W), at any size
    for size in (28, 32):
        grey = np.random.default_rng(2).integers(0, 255, (4, size, size), dtype=np.uint8)
        np.save(tmp_path / "c.npy", grey)
        np.save(tmp_path / "d.npy", grey[..., None])
        c, d = (np.concatenate(list(open_calibration_data(tmp_path / f, GREY, samples=None).batches(4)))
                for f in ("c.npy", "d.npy"))
        assert c.shape == (4, 1, 28, 28)
        np.testing.assert_array_equal(c, d)


@pytest.mark.parametrize("arr", [np.zeros((4, 3, 3, 3, 3), np.uint8), np.zeros((4, 28, 28), np.float64),
                                 np.zeros((4, 3, 28, 28), np.float32)])
def test_wrong_array_shape_or_dtype_fails(tmp_path, arr):
    np.save(tmp_path / "x.npy", arr)
    with pytest.raises(DnxError, match="is not usable"):
        open_calibration_data(tmp_path / "x.npy", GREY)


def test_idx_file(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (10, 28, 28), dtype=np.uint8)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBB3I", 0, 0, 8, 3, 10, 28, 28) + imgs.tobytes())
    data = open_calibration_data(tmp_path, GREY, samples=4)
    assert len(data) == 4 and data.batch(0, 4).shape == (4, 1, 28, 28)
