"""The top-1 verdict judges a precision on the images where FP32 is sure; near-ties are reported apart."""

from __future__ import annotations

import numpy as np
import pytest

from dnx.core.compare import DECISIVE_MARGIN, DEFAULT_TOLERANCES, MIN_DECISIVE, compare_logits, reference_margins


def _logits(sure: int, near: int) -> np.ndarray:
    """``sure`` images with class 0 far ahead (margin ~1), then ``near`` with classes 0 and 1 tied within 0.01."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((sure + near, 10)) - 5
    ref[:sure, 0] = 10
    ref[sure:, 0], ref[sure:, 1] = 3.0, 2.98
    return ref


def _swap01(logits: np.ndarray, rows) -> np.ndarray:
    out = logits.copy()
    out[rows, 0], out[rows, 1] = logits[rows, 1], logits[rows, 0]
    return out


def test_reference_margins():
    m = reference_margins(np.array([[0.0, 0.0, -50.0], [10.0, 0.0, 0.0]]))
    e = np.exp(-10)
    assert m[0] == pytest.approx(0.0) and m[1] == pytest.approx((1 - e) / (1 + 2 * e), abs=1e-9)
    assert reference_margins(np.zeros((3, 1))).tolist() == [1.0, 1.0, 1.0]  # one output: nothing to flip


def test_near_tie_flips_are_reported_not_judged():
    ref = _logits(sure=100, near=100)
    test = _swap01(ref, slice(100, 200))  # every near-tie flips: 50% agreement overall
    c = DEFAULT_TOLERANCES["int8"].apply(compare_logits(ref, test))
    assert c.top1_flips == 100 and c.near_tie_flips == 100 and c.decisive_flips == 0
    assert c.decisive_samples == 100 and c.decisive_margin == DECISIVE_MARGIN
    assert c and "where FP32 is sure" in c.criterion
    assert "0 sure + 100 near-tie" in c.top1_text


def test_flips_where_fp32_is_sure_fail_at_the_precision_threshold():
    ref = _logits(sure=100, near=100)
    one = DEFAULT_TOLERANCES["int8"].apply(compare_logits(ref, _swap01(ref, [0])))
    two = DEFAULT_TOLERANCES["int8"].apply(compare_logits(ref, _swap01(ref, [0, 1])))
    assert one and one.decisive_flips == 1  # 100 sure images at 99%: one flip allowed
    assert not two and "98.00% (2 flips) where FP32 is sure" in two.criterion
    assert not DEFAULT_TOLERANCES["fp16"].apply(compare_logits(ref, _swap01(ref, [0])))  # 99.5%: none


def test_too_few_sure_images_count_every_flip():
    ref = _logits(sure=MIN_DECISIVE - 1, near=200)
    c = DEFAULT_TOLERANCES["int8"].apply(compare_logits(ref, _swap01(ref, [-1, -2, -3])))
    assert not c.judges_decisive and not c
    assert f"FP32 sure of only {MIN_DECISIVE - 1} images: every flip counts" in c.criterion
