"""Atomic artifact writes: a temporary file in the destination folder, renamed on success.

An interrupted or failed run leaves nothing under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from dnx.errors import DnxError


def check_writable(path: str | Path) -> Path:
    """Fail early, before expensive work, when ``path`` cannot be written."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DnxError(f"output {path} is a directory; give a file name")
    if not folder.exists():
        raise DnxError(f"output folder {folder} does not exist; create it or choose another -o")
    if not os.access(folder, os.W_OK):
        raise DnxError(f"cannot write to {folder}: permission denied; choose another -o")
    return path


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` if the block succeeds."""
    final = check_writable(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json_atomic(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
