"""The one exception family dnx raises for things a user can fix.

Library code raises these; only ``dnx.cli`` turns them into a one-line message and an exit code.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class DnxError(Exception):
    """A problem the user can fix (bad input, wrong file, wrong option). CLI exit code 1.

    ``param``: the argument (or arguments) of the library call the problem is about, by their Python
    names, each written in the message as that name (``threads must be >= 0, got -1``). The CLI
    writes the command's flag in their place (``--threads must be >= 0, got -1``).
    """

    exit_code = 1
    params: tuple[str, ...] = ()

    def __init__(self, *args: object, param: str | tuple[str, ...] | None = None) -> None:
        super().__init__(*args)
        self.params = (param,) if isinstance(param, str) else tuple(param or ())


class MissingDependencyError(DnxError):
    """An optional package or a device is missing. CLI exit code 2."""

    exit_code = 2


class NoDeviceError(MissingDependencyError):
    """No CUDA device where one is required. CLI exit code 2."""


class VerificationError(DnxError):
    """An artifact was produced but failed its numerical check."""


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional module or raise a MissingDependencyError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # also raised when sys.modules[module] is None
        what = f" (needed for {purpose})" if purpose else ""
        raise MissingDependencyError(
            f"{module} is not installed{what}: pip install 'dnx[{extra}]'"
        ) from exc
