"""Loading torchvision-format DenseNet checkpoints safely.

No download ever happens here: users bring their checkpoint files.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

from dnx.core.errors import DnxError
from dnx.core.hashing import sha256_file

# torchvision's original DenseNet checkpoints name layers ``norm.1``/``conv.2``; current code says
# ``norm1``/``conv2``. Same fix as torchvision's ``_load_state_dict``.
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")



def fix_legacy_keys(state_dict: dict[str, Any]) -> dict[str, Any]:
    fixed = {}
    for key, value in state_dict.items():
        if key.startswith("module."):  # saved from DataParallel / DDP
            key = key[len("module."):]
        m = _LEGACY_KEY.match(key)
        fixed[m.group(1) + m.group(2) if m else key] = value
    return fixed


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Read a state dict from .pth/.pt (weights_only unpickling) or .safetensors."""
    import torch

    path = Path(path)
    if path.is_dir():
        raise DnxError(f"--weights {path} is a folder; give the checkpoint file (.pth/.pt/.safetensors)")
    if not path.is_file():
        raise DnxError(f"weights file {path} does not exist")
    if path.stat().st_size == 0:
        raise DnxError(f"weights file {path} is empty")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise DnxError(f"{path} is a safetensors file: pip install safetensors") from None
        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise DnxError(f"cannot read {path} as safetensors: {exc}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch wraps the reason in boilerplate; keep the line that names it
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if not ln.startswith(("Weights only load failed", "Please file",
                                                                 "Check the documentation"))), "unsafe pickle")
        if "GLOBAL" not in str(exc):  # random or damaged bytes, not a pickle that names code
            raise DnxError(f"cannot read {path} as a PyTorch checkpoint: {reason}") from None
        raise DnxError(
            f"refused to load {path}: it carries pickled code or objects other than tensors "
            f"({reason}); re-save it as a plain state dict: torch.save(model.state_dict(), PATH)") from None
    except Exception as exc:  # noqa: BLE001  (torch.load raises IndexError, KeyError... on random bytes)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DnxError(f"cannot read {path} as a PyTorch checkpoint: {first}") from None
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if wrapper in obj and isinstance(obj[wrapper], dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DnxError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return obj


def load_weights(model, path: str | Path) -> str:
    """Load ``path`` into ``model`` strictly; return the file's sha256.

    A checkpoint for another architecture fails with its first mismatched keys and shapes.
    """
    state = fix_legacy_keys(read_state_dict(path))
    expected = model.state_dict()
    # Checkpoints older than BatchNorm's num_batches_tracked buffer lack it; it does not affect eval.
    for k in expected:
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = expected[k]
    # A cast from integers would load silently (and an all-zero network passes a tolerance on differences).
    not_float = [f"{k} ({state[k].dtype})" for k, v in expected.items()
                 if k in state and v.is_floating_point() and not state[k].is_floating_point()]
    if not_float:
        raise DnxError(f"{path} holds non-float tensors where the model has float weights ({len(not_float)}, "
                       f"first: {', '.join(not_float[:3])}); save the checkpoint with float weights")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches, first: {'; '.join(shapes[:3])}")
        if missing:
            parts.append(f"{len(missing)} missing keys, first: {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, first: {', '.join(unexpected[:3])}")
        raise DnxError(f"{path} does not fit this architecture ({' | '.join(parts)}); "
                       "check the model name and --num-classes")
    model.load_state_dict(state, strict=True)
    return sha256_file(path)
