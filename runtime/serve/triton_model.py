"""Triton Python-backend model: encoded image bytes -> the network's float32 input, by dnx's preprocessing.

``dnx triton export`` copies this file as ``NAME_preprocess/1/model.py``. It runs inside Triton's
Python backend stub, whose interpreter must have dnx installed (``pip install dnx``), so the pixels
Triton feeds the network are exactly those ``dnx.load(...).predict`` computes. The preprocessing
(resize, crop, mean, std, channels) comes from the artifact's manifest, written by the exporter into
the config's ``dnx_preprocess`` parameter.

Input ``IMAGE`` (BYTES, one encoded image per batch row); output: the network's input tensor. A
request with an undecodable image gets an INVALID_ARGUMENT response (HTTP 400) of one line; the
other requests of the batch are served.

``dnx triton serve`` also runs this file with ``dnx_check`` = ``finite`` in place of ``dnx_preprocess``:
float32 network input in, the same tensor out, and a request holding NaN or infinity refused alone,
before Triton batches the network.
"""

from __future__ import annotations

import json

import numpy as np
from dnx.core.errors import DnxError
from dnx.data.preprocess import image_to_input
from dnx.models.registry import Preprocess


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        # Only the backend stub provides this module, so it is imported here, not at the top.
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        parameters = config["parameters"]
        self.preprocess = (Preprocess.from_dict(json.loads(parameters["dnx_preprocess"]["string_value"]))
                           if "dnx_preprocess" in parameters else None)
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:  # one response per request, in order
            data = self.pb.get_input_tensor_by_name(request, self.input_name).as_numpy()
            try:
                out = self._convert(data) if self.preprocess else self._check(data)
            except ValueError as exc:  # DnxError too: a bad request, answered alone
                responses.append(self.pb.InferenceResponse(error=self._invalid(str(exc))))
                continue
            responses.append(self.pb.InferenceResponse([self.pb.Tensor(self.output_name, out)]))
        return responses

    def _convert(self, blobs: np.ndarray) -> np.ndarray:
        try:
            pixels = np.stack([image_to_input(bytes(blob), self.preprocess) for blob in blobs.reshape(-1)])
        except DnxError as exc:
            raise ValueError(str(exc)) from None
        return pixels.reshape(blobs.shape[:-1] + pixels.shape[1:])  # (N, 1) rows -> (N, C, H, W)

    @staticmethod
    def _check(batch: np.ndarray) -> np.ndarray:
        if not np.isfinite(batch).all():
            raise ValueError("the input holds NaN or infinite values")
        return batch

    def _invalid(self, message: str):
        # INVALID_ARG (HTTP 400) where the backend has error codes (Triton 23.04 on); INTERNAL before
        code = getattr(self.pb.TritonError, "INVALID_ARG", None)
        return self.pb.TritonError(message, code) if code is not None else self.pb.TritonError(message)
