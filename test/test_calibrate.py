"""The calibration fit of training/calibrate.py (odd, increasing, robust)."""

import numpy as np
import pytest

from nlml_hpe.model import check_calibration, odd_polynomial
from training.calibrate import fit_odd_polynomial, options


def test_fit_recovers_known_compression_despite_outliers():
    rng = np.random.default_rng(0)
    true = rng.uniform(-1.4, 1.4, 600)
    # MediaPipe-like reading: compressed at large angles, noisy, with a few failures.
    raw = true - 0.12 * true ** 3 + rng.normal(0, 0.01, true.shape)
    raw[:20] = rng.uniform(-1, 1, 20)
    coeffs = fit_odd_polynomial(raw, true, terms=3)
    assert coeffs is not None
    check_calibration(coeffs.astype(np.float32))
    grid = np.linspace(-1.2, 1.2, 50)
    reading = grid - 0.12 * grid ** 3
    err = np.abs(odd_polynomial(coeffs, reading) - grid)
    assert np.degrees(err).max() < 1.0, np.degrees(err).max()
    # Without calibration the reading is off by several degrees at the ends.
    assert np.degrees(np.abs(reading - grid)).max() > 10


def test_fit_refuses_a_decreasing_relation():
    x = np.linspace(-1, 1, 100)
    assert fit_odd_polynomial(x, -x, terms=3) is None


@pytest.mark.parametrize('bad', [{'angles': ['gaze']}, {'terms': 0}, {'yaw': [10, -10]},
                                 {'samples': -1}])
def test_bad_options_rejected(bad):
    with pytest.raises(ValueError):
        options({'calibrate': bad})
