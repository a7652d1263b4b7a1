"""The folders of a Triton model repository dnx writes: staged beside their final names, renamed into
place, and marked (``.dnx-model``) so that ``--force`` replaces only dnx's own folders, never the user's."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from dnx.core.errors import DnxError
from dnx.core.fileio import atomic_path, write_bytes_atomic

MARKER = ".dnx-model"  # in every model folder dnx writes: what --force may replace


class RepositoryError(DnxError):
    """An artifact or option a Triton repository cannot be made from."""


def check_repo(repo: Path, force: bool) -> None:
    if repo.exists() and not repo.is_dir():
        raise RepositoryError(f"--repo {repo} exists and is not a folder; choose another --repo")
    if repo.is_dir() and any(repo.iterdir()) and not force:
        raise RepositoryError(f"--repo {repo} exists and is not empty; pass --force to replace dnx's model folders "
                              "in it (other models are left alone) or choose an empty folder")
    repo.mkdir(parents=True, exist_ok=True)


def check_replaceable(repo: Path, names: Sequence[str]) -> None:
    """Refuse, before anything is written, to replace an entry of ``repo`` dnx did not write."""
    for name in names:
        final = repo / name
        if final.is_symlink() or (final.exists() and not (final.is_dir() and (final / MARKER).is_file())):
            what = "a folder" if final.is_dir() and not final.is_symlink() else "a file or link"
            raise RepositoryError(f"--force replaces only model folders dnx wrote, and {final} is {what} it did not "
                                  f"write (no {MARKER} in it); move it away or export under another --name")


def stage_model(repo: Path, name: str, files: dict[str, Path | bytes]) -> Path:
    """Write one model folder (relative path -> bytes, or a file to copy) under a temporary name beside its
    final one, with dnx's marker; returns that folder."""
    stage = Path(tempfile.mkdtemp(prefix=f".{name}~", dir=repo))
    try:
        marker = json.dumps({"written_by": "dnx triton export", "model": name}).encode() + b"\n"
        for rel, content in {**files, MARKER: marker}.items():
            target = stage / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                with atomic_path(target) as tmp:
                    shutil.copyfile(content, tmp)
            else:
                write_bytes_atomic(target, content)
        stage.chmod(0o755)  # mkdtemp's 0700 would hide the model from a server running as another user
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


def commit(repo: Path, staged: dict[str, Path]) -> None:
    """Rename each staged folder to its model name, replacing an old one (--force) only at the last step."""
    for name, stage in staged.items():
        final = repo / name
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}~old", dir=repo))
            final.rename(old / name)
        stage.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
