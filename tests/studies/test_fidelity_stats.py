"""Proxy-fidelity statistics on constructed cases whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from studies.fidelity_stats import (
    binomial_se,
    expected_taus,
    front_retention,
    indistinguishable,
    interval_text,
    pooled_sigma,
    rank_agreement,
    runs_for_tau,
    seed_sigma,
    spread_and_noise,
    spread_and_noise_of_repeats,
    spread_to_noise,
)


def test_identical_ranks_agree_perfectly_with_a_degenerate_interval() -> None:
    proxy = [0.61, 0.70, 0.65, 0.80, 0.72, 0.55]
    high = [p + 0.1 for p in proxy]  # same order, other scale
    agreement = rank_agreement(proxy, high, resamples=300)
    for stat in agreement.values():
        assert stat.value == pytest.approx(1.0)
        assert stat.low == pytest.approx(1.0) and stat.high == pytest.approx(1.0)


def test_reversed_ranks_give_minus_one() -> None:
    proxy = [0.1, 0.2, 0.3, 0.4, 0.5]
    agreement = rank_agreement(proxy, proxy[::-1], resamples=300)
    assert agreement["kendall_tau"].value == pytest.approx(-1.0)
    assert agreement["spearman_rho"].value == pytest.approx(-1.0)
    assert agreement["kendall_tau"].high == pytest.approx(-1.0)


def test_pure_noise_gives_tau_near_zero_and_an_interval_holding_zero() -> None:
    rng = np.random.default_rng(1)
    proxy, high = rng.normal(size=200), rng.normal(size=200)
    agreement = rank_agreement(proxy, high, resamples=500)
    tau = agreement["kendall_tau"]
    assert abs(tau.value) < 0.1
    assert tau.low < 0 < tau.high
    assert tau.high - tau.low < 0.3  # 200 pairs pin it down


def test_all_tied_values_are_undefined_not_a_number_made_up() -> None:
    agreement = rank_agreement([0.5, 0.5, 0.5], [0.1, 0.2, 0.3], resamples=50)
    assert math.isnan(agreement["kendall_tau"].value)
    assert agreement["kendall_tau"].to_dict()["value"] is None


def test_interval_text_prints_what_is_defined() -> None:
    """Two architectures have a tau but no bootstrap interval; known_answer.py crashed printing one."""
    two = rank_agreement([0.60, 0.61], [0.62, 0.59], resamples=50)["kendall_tau"].to_dict()
    assert two["low"] is None and interval_text(two) == "-1.00"
    six = rank_agreement([0.61, 0.70, 0.65, 0.80, 0.72, 0.55], [0.71, 0.80, 0.75, 0.90, 0.82, 0.65], resamples=50)
    assert interval_text(six["kendall_tau"].to_dict()) == "+1.00 [+1.00, +1.00]"
    assert interval_text(rank_agreement([0.5, 0.5, 0.5], [0.1, 0.2, 0.3])["kendall_tau"].to_dict()) == "n/a"


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="pair them"):
        rank_agreement([0.1, 0.2], [0.1])


def test_seed_noise_and_spread_ratio() -> None:
    runs = {"a": [0.70, 0.72], "b": [0.80, 0.82], "c": [0.90, 0.92], "single": [0.5]}
    sigmas = seed_sigma(runs)
    assert sigmas["a"] == pytest.approx(math.sqrt(0.0002))
    assert math.isnan(sigmas["single"])
    assert pooled_sigma(runs) == pytest.approx(math.sqrt(0.0002))
    # means 0.71, 0.81, 0.91, 0.5 -> spread far above the seed noise
    assert spread_to_noise(runs) > 10
    noisy = {"a": [0.70, 0.80], "b": [0.72, 0.78]}
    assert spread_to_noise(noisy) < 1


def test_binomial_error_front_retention_and_ties_within_noise() -> None:
    assert binomial_se(0.75, 1000) == pytest.approx(math.sqrt(0.75 * 0.25 / 1000))
    assert front_retention(["a", "b", "c"], ["b", "c", "d"]) == (2, 3)
    members = {"a": (0.80, 0.005), "b": (0.805, 0.005), "c": (0.90, 0.005)}
    assert indistinguishable(members) == [("a", "b")]


def test_the_normal_model_reads_spread_and_noise_off_runs_and_predicts_kendall_tau() -> None:
    """ANOVA recovers the spread and the noise it was drawn with; the model's tau matches simulated proxies
    (Greiner's relation), and runs_for_tau inverts it."""
    rng = np.random.default_rng(0)
    means = 2.0 * rng.standard_normal(300)
    runs = {f"p{i}": list(m + 3.0 * rng.standard_normal(4 + i % 5)) for i, m in enumerate(means)}  # unbalanced
    s, sigma = spread_and_noise(runs)
    assert abs(s - 2.0) < 0.25 and abs(sigma - 3.0) < 0.1
    for k in (1, 4):
        proxy = means + 3.0 / np.sqrt(k) * rng.standard_normal(len(means))
        other = means + 3.0 / np.sqrt(k) * rng.standard_normal(len(means))
        truth_tau, repeat_tau = expected_taus(2.0, 3.0, k)
        tau_truth = rank_agreement(proxy, means, resamples=0)["kendall_tau"].value
        tau_repeat = rank_agreement(proxy, other, resamples=0)["kendall_tau"].value
        assert abs(tau_truth - truth_tau) < 0.05 and abs(tau_repeat - repeat_tau) < 0.05
    assert expected_taus(2.0, 3.0, runs_for_tau(0.6, 2.0, 3.0))[0] == pytest.approx(0.6)
    assert expected_taus(2.0, 3.0, runs_for_tau(0.7, 2.0, 3.0, repeat=True))[1] == pytest.approx(0.7)
    assert runs_for_tau(0.6, 0.0, 3.0) == float("inf")
    assert math.isnan(runs_for_tau(0.6, *spread_and_noise({"a": [0.5], "b": [0.6]})))  # no repeats: no sigma


def test_repeats_shifted_as_a_whole_leave_the_spread_and_noise_of_a_ranking() -> None:
    """Each repeat lifts or sinks every architecture at once (a trunk): one-way ANOVA calls that noise, the
    two-way estimate takes it out and reads the spread and noise the runs were drawn with."""
    rng = np.random.default_rng(2)
    means = 2.0 * rng.standard_normal(300)
    repeats = [{f"p{i}": m + shift + 1.5 * rng.standard_normal() for i, m in enumerate(means)}
               for shift in (0.0, 5.0, -4.0)]
    s, sigma = spread_and_noise_of_repeats(repeats)
    assert abs(s - 2.0) < 0.25 and abs(sigma - 1.5) < 0.1
    one_way = spread_and_noise({n: [r[n] for r in repeats] for n in repeats[0]})[1]
    assert one_way > 3.0  # the shifts, counted as noise
    assert all(math.isnan(v) for v in spread_and_noise_of_repeats(repeats[:1]))  # one repeat: no noise to read
