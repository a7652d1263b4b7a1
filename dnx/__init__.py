"""dnx: DenseNet from the paper to a deployed NVIDIA engine.

``import dnx`` stays light: torch, onnx, onnxruntime, tensorrt and matplotlib are imported by the
modules that need them, not here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from dnx.errors import DnxError, MissingDependencyError, NoDeviceError, VerificationError

try:
    __version__ = _version("dnx")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["DnxError", "MissingDependencyError", "NoDeviceError", "VerificationError", "__version__", "load"]


def load(artifact, **options):
    """Open a dnx artifact for classification: see :func:`dnx.runtime.classifier.load`."""
    from dnx.runtime.classifier import load as _load

    return _load(artifact, **options)
