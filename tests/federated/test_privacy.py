"""RDP accounting: closed forms, a published figure, monotonicity, calibration."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federated.errors import PrivacyBudgetError, SettingsError
from federated.privacy import (
    DEFAULT_ORDERS,
    PrivacyLedger,
    calibrate_noise,
    epsilon,
    rdp_subsampled_gaussian,
)


@pytest.mark.parametrize("order", [2, 3, 10, 64])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 4.0])
def test_full_batch_is_the_plain_gaussian_mechanism(order: int, sigma: float) -> None:
    # Mironov 2017, Proposition 7: the Gaussian mechanism has RDP a / (2 sigma^2).
    assert rdp_subsampled_gaussian(1.0, sigma, order) == pytest.approx(order / (2 * sigma**2))


def test_order_two_matches_the_closed_form() -> None:
    # For a = 2 the sum has three terms: (1-q)^2 + 2q(1-q) + q^2 e^(1/sigma^2).
    q, sigma = 0.1, 1.3
    want = math.log((1 - q) ** 2 + 2 * q * (1 - q) + q**2 * math.exp(1 / sigma**2))
    assert rdp_subsampled_gaussian(q, sigma, 2) == pytest.approx(want)


def test_abadi_mnist_setting_matches_the_published_rdp_figure() -> None:
    # TensorFlow Privacy's tutorial setting (N=60000, batch 256, sigma 1.1, 60 epochs,
    # delta 1e-5) is reported as eps ~= 2.92 with the classic RDP conversion
    # eps = rdp - log(delta) / (a - 1). The tighter conversion we use must be lower.
    q, sigma, steps, delta = 256 / 60000, 1.1, 60 * 60000 // 256, 1e-5
    classic = min(
        steps * rdp_subsampled_gaussian(q, sigma, a) - math.log(delta) / (a - 1)
        for a in DEFAULT_ORDERS
    )
    assert classic == pytest.approx(2.92, abs=0.1)
    assert 2.3 < epsilon(q, sigma, steps, delta) < classic


@settings(max_examples=40, deadline=None)
@given(
    q=st.floats(0.001, 1.0),
    sigma=st.floats(0.5, 5.0),
    steps=st.integers(1, 500),
)
def test_epsilon_grows_with_steps_and_sampling_and_falls_with_noise(
    q: float, sigma: float, steps: int
) -> None:
    eps = epsilon(q, sigma, steps, 1e-5)
    assert eps >= 0
    assert epsilon(q, sigma, steps + 10, 1e-5) >= eps
    assert epsilon(min(1.0, q * 1.5), sigma, steps, 1e-5) >= eps
    assert epsilon(q, sigma * 1.5, steps, 1e-5) <= eps


@settings(max_examples=15, deadline=None)
@given(q=st.floats(0.01, 1.0), steps=st.integers(1, 300), target=st.floats(0.5, 10.0))
def test_calibrated_noise_meets_the_target_tightly(q: float, steps: int, target: float) -> None:
    sigma = calibrate_noise(q, steps, 1e-5, target)
    assert epsilon(q, sigma, steps, 1e-5) <= target
    assert epsilon(q, max(sigma - 0.01, 1e-3), steps, 1e-5) > target * 0.98


def test_no_noise_means_no_guarantee() -> None:
    assert math.isinf(epsilon(0.1, 0.0, 1, 1e-5))


def test_unreachable_target_is_a_clear_error() -> None:
    with pytest.raises(PrivacyBudgetError, match="no noise multiplier"):
        calibrate_noise(1.0, 10**9, 1e-5, 1e-6)


def test_bad_inputs_are_settings_errors() -> None:
    with pytest.raises(SettingsError, match="sampling rate"):
        rdp_subsampled_gaussian(1.5, 1.0, 2)
    with pytest.raises(SettingsError, match="delta"):
        epsilon(0.1, 1.0, 1, 0.0)


def test_ledger_reports_round_and_running_total() -> None:
    ledger = PrivacyLedger(sampling_rate=0.2, noise_multiplier=1.2, delta=1e-5)
    first_round, total_after_one = ledger.spend(6)
    second_round, total_after_two = ledger.spend(6)
    assert first_round == pytest.approx(second_round) == pytest.approx(total_after_one)
    # Composition in RDP is sub-additive in eps: two rounds cost less than twice one.
    assert total_after_one < total_after_two < 2 * total_after_one
    assert ledger.steps == 12
