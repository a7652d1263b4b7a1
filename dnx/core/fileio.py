"""Atomic artifact writes: the one way dnx writes a file (a test greps the code for others).

A file is written to a temporary name in the destination folder and renamed on success, so an
interrupted or failed run leaves nothing under the final name and no temporary file behind.
Outputs are checked before any work starts (:func:`check_writable`): only regular files are ever
replaced, never a device such as ``/dev/null``, and names the file system cannot hold are refused.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

from dnx.core.errors import DnxError

# The temporary name is ".NAME~XXXXXXXX" (mkstemp adds 8 random characters): 10 bytes longer than NAME.
_TMP_EXTRA = 10
_PATH_MAX = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096


def _limit(folder: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError):
        return default


def _umask() -> int:
    # /proc/self/status reads the umask without the set-and-restore race of os.umask (Linux >= 4.7)
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(path: str | Path, option: str = "-o", sidecar: bool = False) -> Path:
    """Fail early, before expensive work, when ``path`` (given with ``option``) cannot be written.

    ``sidecar``: the file also gets a ``PATH.json`` manifest beside it; that name is checked too, so a
    clash is found before the main file is written.
    """
    path = Path(path)
    if not str(path) or path.name in ("", ".", ".."):
        raise DnxError(f"{option} {str(path)!r} is not a file name; give one, e.g. {option} model.onnx")
    # before touching the file system, whose calls fail with ENAMETOOLONG on such a path
    if len(os.fsencode(str(path.absolute()))) + _TMP_EXTRA + 5 >= _PATH_MAX:
        raise DnxError(f"{option} path is longer than this system's {_PATH_MAX}-byte limit; choose a shorter path")
    folder = path.parent
    name_max = _limit(folder, "PC_NAME_MAX", 255)
    longest = len(os.fsencode(path.name)) + _TMP_EXTRA + (len(".json") if sidecar else 0)
    if longest > name_max:
        raise DnxError(f"{option} file name is {len(os.fsencode(path.name))} bytes; this file system allows "
                       f"{name_max - _TMP_EXTRA - (5 if sidecar else 0)} for an output here; choose a shorter name")
    if path.is_dir():
        raise DnxError(f"{option} {path} is a directory; give a file name")
    if path.exists() or path.is_symlink():
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise DnxError(f"{option} {path} cannot be used ({exc.strerror}); choose another {option}") from None
        if not stat.S_ISREG(mode):
            raise DnxError(f"{option} {path} exists and is not a regular file (a device, pipe or socket); "
                           f"dnx only replaces regular files: choose another {option}")
    if not folder.exists():
        raise DnxError(f"{option} {path}: folder {folder} does not exist; create it or choose another {option}")
    if not folder.is_dir():
        raise DnxError(f"{option} {path}: {folder} is not a folder; choose another {option}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DnxError(f"{option} {path}: cannot write to {folder} (permission denied); choose another {option}")
    if sidecar:
        check_writable(path.with_name(path.name + ".json"), option=f"{option}'s manifest")
    return path


# Errors of the write itself, whichever call in the block hit them (torch.save, onnx.save, write_text).
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def _os_error(exc: OSError, final: Path) -> DnxError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DnxError(f"no space left to write {final}; free some space or choose another folder")
    if exc.errno == errno.EROFS:
        return DnxError(f"cannot write {final}: read-only file system; choose another folder")
    return DnxError(f"cannot write {final}: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_path(final: str | Path, option: str = "-o") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` if the block succeeds.

    The file gets the mode a plain ``open()`` would give (0666 less the umask, not mkstemp's 0600).
    On any exception (including KeyboardInterrupt and the CLI's SIGTERM/SIGHUP) the temporary file is
    removed; a full disk or another OS refusal becomes a one-line DnxError.
    """
    final = check_writable(final, option)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}~", dir=final.parent)
    except OSError as exc:
        raise _os_error(exc, final) from None
    tmp_path = Path(tmp)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        try:
            yield tmp_path
        except OSError as exc:
            if exc.errno in _WRITE_ERRNOS:
                raise _os_error(exc, final) from None
            raise
        try:
            os.replace(tmp_path, final)
        except OSError as exc:
            raise _os_error(exc, final) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def write_json_atomic(path: str | Path, data: Any, option: str = "-o") -> None:
    with atomic_path(path, option) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_bytes_atomic(path: str | Path, data: bytes, option: str = "-o") -> None:
    with atomic_path(path, option) as tmp:
        tmp.write_bytes(data)
