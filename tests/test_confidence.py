"""The "not sure" calibration: the isotonic fit, the threshold it gives, and the marks results carry."""
import math

import numpy as np
import pytest

from captioner.confidence import (caption_confidence, held_out_report, is_sure, isotonic_fit, split_report,
                                  threshold)


def test_isotonic_fit_pools_violators_and_is_monotone():
    xs, fitted = isotonic_fit([0.1, 0.2, 0.3, 0.4], [0.0, 1.0, 0.0, 1.0])
    assert xs.tolist() == [0.1, 0.2, 0.3, 0.4]
    assert fitted.tolist() == [0.0, 0.5, 0.5, 1.0]  # the 1, 0 pair is pooled into its mean
    rng = np.random.default_rng(0)
    x = rng.random(500)
    y = (rng.random(500) < x).astype(float)
    xs, fitted = isotonic_fit(x, y)
    assert np.all(np.diff(fitted) >= 0) and np.all(np.diff(xs) >= 0)
    assert fitted.mean() == pytest.approx(y.mean())  # pooling keeps the total


def test_threshold_is_where_the_fit_reaches_the_target():
    # Right iff confidence > 0.6: the fitted accuracy jumps from 0 to 1 there.
    confidence = np.linspace(0.01, 1.0, 100)
    quality = (confidence > 0.6).astype(float)
    t = threshold(confidence, quality, 0.5)
    assert 0.6 < t <= 0.62
    report = split_report(confidence, quality, t)
    assert report["sure quality"] == 1.0 and report["not sure quality"] == 0.0
    assert threshold(confidence, np.zeros(100), 0.5) == 1.0  # never good enough: everything is not sure
    with pytest.raises(ValueError):
        threshold([], [], 0.5)


def test_held_out_report_separates_on_unseen_halves():
    rng = np.random.default_rng(1)
    confidence = rng.random(400)
    quality = (rng.random(400) < confidence).astype(float)
    report = held_out_report(confidence, quality, [f"img{i // 2}" for i in range(400)], 0.5)
    assert report["sure quality"] > report["not sure quality"] + 0.2


def test_caption_confidence_and_marks():
    assert caption_confidence(2 * math.log(0.5), 1) == pytest.approx(0.5)  # one word and <end>, each at 0.5
    assert is_sure(0.4, None) is None
    assert is_sure(0.4, 0.5) is False and is_sure(0.5, 0.5) is True
