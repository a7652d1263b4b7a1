"""Triton Python-backend model: encoded image bytes -> the network's float32 input, by dnx's preprocessing.

``dnx triton export`` copies this file as ``NAME_preprocess/1/model.py``. It runs inside Triton's
Python backend stub, whose interpreter must have dnx installed (``pip install dnx``), so the pixels
Triton feeds the network are exactly those ``dnx.load(...).predict`` computes. The preprocessing
(resize, crop, mean, std, channels) comes from the artifact's manifest, written by the exporter into
the config's ``dnx_preprocess`` parameter.

Input ``IMAGE`` (BYTES, one encoded image per batch row); output: the network's input tensor. A
request with an undecodable image gets an error response; the other requests of the batch are served.
"""

from __future__ import annotations

import json

import numpy as np


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        # Only the backend stub provides this module, so it is imported here, not at the top.
        import triton_python_backend_utils as pb_utils

        from dnx.models.registry import Preprocess

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        self.preprocess = Preprocess.from_dict(json.loads(config["parameters"]["dnx_preprocess"]["string_value"]))
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]

    def execute(self, requests: list) -> list:
        from dnx.data.preprocess import image_to_input
        from dnx.errors import DnxError

        responses = []
        for request in requests:  # one response per request, in order
            blobs = self.pb.get_input_tensor_by_name(request, self.input_name).as_numpy()
            try:
                pixels = np.stack([image_to_input(bytes(blob), self.preprocess) for blob in blobs.reshape(-1)])
            except DnxError as exc:
                responses.append(self.pb.InferenceResponse(error=self.pb.TritonError(str(exc))))
                continue
            pixels = pixels.reshape(blobs.shape[:-1] + pixels.shape[1:])  # (N, 1) rows -> (N, C, H, W)
            responses.append(self.pb.InferenceResponse([self.pb.Tensor(self.output_name, pixels)]))
        return responses
