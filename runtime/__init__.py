"""Runners for every backend behind one interface, the TensorRT builder, and the serving API."""

from dnx.runtime.backends.base import Runner, TensorMeta, UnavailableBackend

__all__ = ["Runner", "TensorMeta", "UnavailableBackend"]
