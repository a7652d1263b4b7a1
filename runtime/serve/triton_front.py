"""The models clients call in ``dnx triton serve``: ensembles that check each request before Triton batches.

PyTriton answers a batch as a whole: when the callable raises, every request of the batch gets the
error, as a Python traceback. So the network is bound as ``NAME_network`` and is fed only checked
requests, through two ensembles loaded with Triton's repository API once PyTriton's model is up:

    NAME        float32 input -> NAME_check (NaN/infinity refused, per request) -> NAME_network -> logits
    NAME_image  IMAGE bytes -> NAME_preprocess (dnx's decode and preprocessing, per request)
                -> NAME_network -> logits, label

The check and preprocess steps are Python-backend models running ``triton_model.py``, the file
``dnx triton export`` writes as ``NAME_preprocess``; they answer a bad request alone with one line and
INVALID_ARGUMENT (HTTP 400). The preprocess config is the exporter's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dnx.runtime.serve.repository import IMAGE_INPUT, ModelConfigBuilder, RepositoryOptions

NETWORK_SUFFIX = "_network"
LABEL_OUTPUT = "label"
_MODEL_PY = Path(__file__).with_name("triton_model.py")


def front_models(spec, options: RepositoryOptions, image_model: bool) -> dict[str, tuple[dict, dict[str, bytes]]]:
    """Model name -> (config dict, files) for the steps and ensembles, in the order they must load."""
    builder = ModelConfigBuilder(spec, options)
    network = spec.name + NETWORK_SUFFIX
    input_name, output_name = spec.artifact.input_name, spec.output_name
    model_py = {"1/model.py": _MODEL_PY.read_bytes()}
    batching = {"dynamic_batching": {"max_queue_delay_microseconds": 0}} if spec.max_batch else {}
    check = {"name": f"{spec.name}_check", "backend": "python", "max_batch_size": spec.max_batch,
             "input": [_tensor(input_name, spec.input_dtype, spec.input_dims)],
             "output": [_tensor("checked", spec.input_dtype, spec.input_dims)], **batching,
             "instance_group": [{"count": options.instances, "kind": "KIND_CPU"}],
             "parameters": {"dnx_check": {"string_value": "finite"}}}
    models = {check["name"]: (check, model_py),
              spec.name: (_ensemble(spec, input_name, [(check["name"], {input_name: input_name}, {"checked": "x"}),
                                                       (network, {input_name: "x"}, {output_name: output_name})],
                                    image=False), {})}
    if image_model:
        pre = builder.preprocess()
        models[pre["name"]] = (pre, model_py)
        models[builder.ensemble_name] = (_ensemble(spec, IMAGE_INPUT, [
            (pre["name"], {IMAGE_INPUT: IMAGE_INPUT}, {input_name: "x"}),
            (network, {input_name: "x"}, {output_name: output_name, LABEL_OUTPUT: LABEL_OUTPUT})], image=True), {})
    return models


def _tensor(name: str, dtype: str, dims) -> dict[str, Any]:
    return {"name": name, "data_type": dtype, "dims": list(dims)}


def _ensemble(spec, input_name: str, steps: list[tuple[str, dict, dict]], image: bool) -> dict[str, Any]:
    if image:  # served only when Triton may batch: dims leave out the batch axis
        inputs = [_tensor(IMAGE_INPUT, "TYPE_STRING", [1])]
        outputs = [_tensor(spec.output_name, spec.output_dtype, spec.output_dims),
                   _tensor(LABEL_OUTPUT, "TYPE_STRING", [1])]
    else:
        inputs = [_tensor(input_name, spec.input_dtype, spec.input_dims)]
        outputs = [_tensor(spec.output_name, spec.output_dtype, spec.output_dims)]
    return {"name": spec.name + ("_image" if image else ""), "platform": "ensemble", "max_batch_size": spec.max_batch,
            "input": inputs, "output": outputs,
            "ensemble_scheduling": {"step": [{"model_name": m, "model_version": -1, "input_map": i, "output_map": o}
                                             for m, i, o in steps]}}


def load_front_models(url: str, headers: dict[str, str], models: dict[str, tuple[dict, dict[str, bytes]]],
                      timeout_s: float) -> None:
    """Load ``models`` through the repository API of the server at ``url`` (config and files in the request)."""
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    with http.InferenceServerClient(url, network_timeout=timeout_s) as client:
        for name, (config, files) in models.items():
            # Triton needs a version folder even for an ensemble: give it a file to create one from.
            files = files or {"1/ensemble": b"steps in config.pbtxt\n"}
            try:
                client.load_model(name, headers=headers, config=json.dumps(config),
                                  files={f"file:{rel}": content for rel, content in files.items()})
            except InferenceServerException as exc:
                # Triton 2.51 polls an ensemble's steps in the model repository folder, where models loaded
                # through the API are not, and answers 500 although the ensemble loaded: believe readiness.
                if "failed to poll from model repository" not in str(exc) or not client.is_model_ready(name):
                    raise
