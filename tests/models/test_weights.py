"""torchvision checkpoints load unchanged and compute what torchvision computes."""

from __future__ import annotations

import re

import pytest
import torch

from dnx.core.errors import DnxError
from dnx.models import create_model

torchvision = pytest.importorskip("torchvision", reason="torchvision is the reference oracle ([test] extra)")


@pytest.mark.parametrize("name", ["densenet121", "densenet169", "densenet201", "densenet161"])
def test_torchvision_weights_give_torchvision_outputs(name, tmp_path):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    ours = create_model(name, weights=path).model
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


def test_legacy_key_names_load(tmp_path):
    reference = torchvision.models.densenet121(weights=None).eval()
    # torchvision's original checkpoints: ``norm.1`` names and no num_batches_tracked buffers
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
              for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1." in k for k in legacy)
    path = tmp_path / "legacy.pth"
    torch.save(legacy, path)
    ours = create_model("densenet121", weights=path).model
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


def test_wrong_architecture_lists_mismatches(tmp_path):
    path = tmp_path / "d169.pth"
    torch.save(torchvision.models.densenet169(weights=None).state_dict(), path)
    with pytest.raises(DnxError, match=r"does not fit this architecture.*(unexpected|shape)"):
        create_model("densenet121", weights=path)


def test_pickled_code_is_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(DnxError, match="refused"):
        create_model("densenet121", weights=path)
    assert not marker.exists()


def test_safetensors_checkpoint_loads(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    reference = torchvision.models.densenet121(weights=None).eval()
    path = tmp_path / "d121.safetensors"
    st.save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    ours = create_model("densenet121", weights=path).model
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)
