"""Calibration data: image folders, .npy/.npz arrays or IDX files, streamed as model-ready batches.

Preprocessing is exactly the model's manifest's. Sample selection is deterministic (``seed``), and
only one batch is in memory at a time (``batch(i)`` loads its items on demand).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dnx.data.preprocess import IMAGE_SUFFIXES, load_image, preprocess_array, preprocess_image
from dnx.core.errors import DnxError
from dnx.models.registry import Preprocess
from dnx.data.datasets import read_idx


@dataclass
class CalibrationData:
    """A deterministic selection of calibration samples, loaded batch by batch."""

    source: str
    pre: Preprocess
    items: list  # file paths, or row indices into ``array``
    array: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)  # things the user should be told
    fingerprint: str = ""
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.items)

    def num_batches(self, batch_size: int) -> int:
        return (len(self.items) + batch_size - 1) // batch_size

    def batch(self, index: int, batch_size: int) -> np.ndarray:
        chunk = self.items[index * batch_size:(index + 1) * batch_size]
        if self.array is not None:
            return _array_rows_to_input(self.array[np.asarray(chunk)], self.pre)
        return np.stack([preprocess_image(load_image(p, self.pre), self.pre) for p in chunk])

    def batches(self, batch_size: int):
        for i in range(self.num_batches(batch_size)):
            yield self.batch(i, batch_size)


def _select(n_available: int, samples: int | None, seed: int, notes: list[str]) -> np.ndarray:
    if samples is None or samples >= n_available:
        if samples is not None and samples > n_available:
            notes.append(f"asked for {samples} samples but only {n_available} are available; using {n_available}")
        return np.arange(n_available)
    return np.sort(np.random.default_rng(seed).choice(n_available, size=samples, replace=False))


def _array_rows_to_input(rows: np.ndarray, pre: Preprocess) -> np.ndarray:
    """uint8 images (N,H,W[,C]) are preprocessed as `dnx bench`/`dnx eval` preprocess arrays;
    float32 rows (already checked to be (N,C,H,W) at the model's shape) are ready-made network inputs."""
    if rows.dtype == np.float32:
        return np.ascontiguousarray(rows)
    return preprocess_array(rows, pre)


def _check_array(arr: np.ndarray, path: Path, pre: Preprocess) -> None:
    want = (pre.in_channels, pre.image_size, pre.image_size)
    if arr.dtype == np.float32 and arr.ndim == 4 and arr.shape[1:] == want:
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:  # a NaN or Inf input would make every range it reaches NaN or Inf
            raise DnxError(f"{path} holds {bad} NaN or infinite value(s); calibration inputs must be finite")
        return
    if arr.dtype == np.uint8 and (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[3] in (1, 3))):
        return
    raise DnxError(
        f"{path}: array of shape {arr.shape} and dtype {arr.dtype} is not usable; give uint8 images "
        f"(N, H, W) or (N, H, W, 1|3), or float32 network inputs (N, {want[0]}, {want[1]}, {want[2]}) "
        "already normalised")


def _hash_rows(arr: np.ndarray, idx: np.ndarray) -> str:
    h = hashlib.sha256()
    for i in idx:
        h.update(np.ascontiguousarray(arr[i]).tobytes())
    return h.hexdigest()


def open_calibration_data(path: str | Path, pre: Preprocess, samples: int | None = 512,
                          seed: int = 0) -> CalibrationData:
    """Select up to ``samples`` items from ``path`` (deterministic for a given ``seed``)."""
    path = Path(path)
    notes: list[str] = []
    if not path.exists():
        raise DnxError(f"calibration data {path} does not exist")
    if samples is not None and samples < 1:
        raise DnxError(f"samples must be >= 1, got {samples}", param="samples")
    if path.is_file() and path.suffix in (".npy", ".npz"):
        return _open_array(path, pre, samples, seed, notes)
    if path.is_file() and "idx" in path.name:

        return _from_array(read_idx(path), path, pre, samples, seed, notes)
    if path.is_dir():
        # training images first: calibrating on a test split would leak it into the evaluation
        idx_files = sorted(path.glob("*images-idx3-ubyte*"), key=lambda p: (not p.name.startswith("train"), p.name))
        if idx_files:

            return _from_array(read_idx(idx_files[0]), idx_files[0], pre, samples, seed, notes)
        return _open_folder(path, pre, samples, seed, notes)
    raise DnxError(f"{path}: expected an image folder, a .npy/.npz array, or IDX files")


def _open_array(path: Path, pre: Preprocess, samples, seed, notes) -> CalibrationData:
    try:
        if path.suffix == ".npy":
            arr = np.load(path, mmap_mode="r")
        else:
            with np.load(path) as z:
                if "images" not in z.files:
                    found = ", ".join(z.files[:5]) or "no arrays"
                    raise DnxError(f"{path} has no array named 'images' (found: {found}); save calibration "
                                   "images as np.savez(PATH, images=ARRAY), uint8 (N, H, W[, C])")
                arr = z["images"]
    except DnxError:
        raise
    except Exception as exc:  # noqa: BLE001  (numpy/zipfile raise many types for damaged files)
        raise DnxError(f"cannot read {path} as a numpy array: "
                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(arr, np.ndarray):
        raise DnxError(f"{path} does not hold an array")
    return _from_array(arr, path, pre, samples, seed, notes)


def _from_array(arr: np.ndarray, path: Path, pre: Preprocess, samples, seed, notes) -> CalibrationData:
    _check_array(arr, path, pre)
    if len(arr) == 0:
        raise DnxError(f"{path} holds no samples")
    if arr.dtype == np.uint8:
        channels = 1 if arr.ndim == 3 else arr.shape[3]
        if channels != pre.in_channels:
            notes.append(f"images have {channels} channel(s), the model takes {pre.in_channels}: converted")
    idx = _select(len(arr), samples, seed, notes)
    fp = hashlib.sha256(f"{path.name}|{pre}|{seed}|{_hash_rows(arr, idx)}".encode()).hexdigest()
    return CalibrationData(str(path), pre, list(idx), array=arr, notes=notes, fingerprint=fp)


def _open_folder(folder: Path, pre: Preprocess, samples, seed, notes) -> CalibrationData:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DnxError(f"{folder} has no images ({', '.join(IMAGE_SUFFIXES)}); point --data at a folder of photos")
    order = np.random.default_rng(seed).permutation(len(files))
    chosen, skipped, converted = [], 0, 0
    want = samples or len(files)
    h = hashlib.sha256()
    mode = "L" if pre.in_channels == 1 else "RGB"
    # Open candidates in a seeded order until enough readable images are found; corrupt or
    # truncated files are skipped and counted (only headers and pixels of chosen files are read).
    for i in order:
        if len(chosen) == want:
            break
        p = files[i]
        try:
            img = load_image(p)
        except DnxError:
            skipped += 1
            continue
        if img.mode != mode and not (mode == "RGB" and img.mode in ("RGBA", "P", "CMYK", "YCbCr")):
            converted += 1
        chosen.append(p)
        h.update(p.read_bytes())
        img.close()
    if skipped:
        notes.append(f"skipped {skipped} unreadable or corrupt image file(s)")
    if not chosen:
        raise DnxError(f"{folder}: none of {len(files)} image files could be read")
    if converted:
        notes.append(f"converted {converted} image(s) to {'greyscale' if mode == 'L' else 'RGB'} for a "
                     f"{pre.in_channels}-channel model")
    if samples is not None and len(chosen) < samples:
        notes.append(f"asked for {samples} samples but only {len(chosen)} readable images exist; using {len(chosen)}")
    chosen.sort()
    fp = hashlib.sha256(f"{pre}|{seed}|{h.hexdigest()}".encode()).hexdigest()
    return CalibrationData(str(folder), pre, chosen, notes=notes, fingerprint=fp, skipped=skipped)
