"""dnx: DenseNet from the paper to a deployed NVIDIA engine.

``import dnx`` stays light: torch, onnx, onnxruntime, tensorrt and matplotlib are imported by the
modules that need them, not here.
"""

from __future__ import annotations

from dnx.core.errors import DnxError, MissingDependencyError, NoDeviceError, VerificationError
from dnx.core.version import __version__


__all__ = ["DnxError", "MissingDependencyError", "NoDeviceError", "VerificationError", "__version__", "load"]


def load(artifact, **options):
    """Open a dnx artifact for classification: see :func:`dnx.runtime.classifier.load`."""
    from dnx.runtime.classifier import load as _load

    return _load(artifact, **options)
