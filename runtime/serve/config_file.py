"""``dnx serve --config FILE``: a TOML file holding serve flags, read and written here.

Keys are the flags' long names without the dashes (``max-batch = 16``, ``backend = "openvino"``),
plus ``artifact`` (a path relative to the file's folder unless absolute). The CLI puts the values in
click's default map, so a flag given on the command line overrides the file. An unknown key is
refused in one line that lists the known ones.
"""

from __future__ import annotations

import math
from pathlib import Path

from dnx.core.errors import DnxError
from dnx.core.fileio import atomic_path


def read_serve_config(path: str | Path, keys: dict[str, str]) -> dict:
    """The parameter values of the TOML file ``path``; ``keys`` maps flag names (``max-batch``) to
    parameter names (``max_batch``). Values are left for click to type-check."""
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DnxError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise DnxError(f"--config {path} is a folder; give a TOML file") from None
    except UnicodeDecodeError:
        raise DnxError(f"--config {path} is not a text file; give a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise DnxError(f"--config {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise DnxError(f"--config {path} cannot be read: {exc.strerror}") from None
    values = {}
    for key, value in data.items():
        if isinstance(value, dict):
            raise DnxError(f"--config {path}: [{key}] tables are not serve settings; write flat `name = value` lines")
        if key == "artifact":
            if not isinstance(value, str) or not value:
                raise DnxError(f"--config {path}: artifact must be a path string, got {value!r}")
            values["artifact"] = str(path.parent / value) if not Path(value).is_absolute() else value
        elif key.replace("_", "-") in keys:  # max_batch is read as max-batch too
            values[keys[key.replace("_", "-")]] = value
        else:
            raise DnxError(f"--config {path}: unknown key {key!r}; known: artifact, {', '.join(sorted(keys))}")
    return values


def _toml_value(value) -> str:
    # tomllib only reads; flat scalars are all a serve config holds, so writing them needs no extra package.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DnxError(f"a serve config value must be finite, got {value}")
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise DnxError(f"a serve config value must be a bool, number or string, got {value!r}")


def serve_config_text(settings: dict, comments: list[str] = ()) -> str:
    """TOML text of ``settings`` (flag name -> value; ``artifact`` first), headed by ``comments``."""
    lines = [f"# {c}" for c in comments]
    for key in sorted(settings, key=lambda k: (k != "artifact", k)):
        lines.append(f"{key} = {_toml_value(settings[key])}")
    return "\n".join(lines) + "\n"


def write_serve_config(path: str | Path, settings: dict, comments: list[str] = (), option: str = "-o") -> Path:
    """Write ``settings`` as a ``dnx serve --config`` file, atomically."""

    with atomic_path(path, option) as tmp:
        tmp.write_text(serve_config_text(settings, comments))
    return Path(path)
