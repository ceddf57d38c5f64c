"""How far to trust a proxy: rank agreement with a higher fidelity, seed noise, and which front members tie.

Pure functions over plain numbers (no optuna, no torch), so `attnas fidelity`, the report and
`benchmarks/proxy_fidelity.py` compute every figure the same way. The statistics are the ones the NAS
literature reports for proxies (Kendall tau and Spearman rho between proxy and longer training), with
bootstrap intervals over architectures: with a dozen architectures a point estimate alone says little.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import fmean, stdev

import numpy as np

#: Bootstrap resamples for the intervals: 2000 keeps the 95% bounds stable to about 0.01.
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Interval:
    """A statistic with its bootstrap 95% interval (nan where it is undefined, e.g. all values tied)."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float | None]:
        return {k: (None if math.isnan(v) else v) for k, v in asdict(self).items()}


def interval_text(stat: Mapping[str, float | None]) -> str:
    """`+0.47 [+0.11, +0.79]` from an Interval's dict: "n/a" where the value is undefined, and the value alone
    where the interval is (fewer than 3 pairs), so a table of two architectures still prints."""
    if stat.get("value") is None:
        return "n/a"
    if stat.get("low") is None or stat.get("high") is None:
        return f"{stat['value']:+.2f}"
    return f"{stat['value']:+.2f} [{stat['low']:+.2f}, {stat['high']:+.2f}]"


def _nan_safe(fn, x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(fn(x, y).statistic)


def rank_agreement(proxy: Sequence[float], high: Sequence[float], *, seed: int = 0,
                   resamples: int = BOOTSTRAP) -> dict[str, Interval]:
    """Kendall tau and Spearman rho between two scorings of the same architectures, with 95% intervals.

    The bootstrap resamples architectures (pairs), which is what is uncertain: another set of trained
    architectures from the same space would rank differently.
    """
    x, y = np.asarray(proxy, dtype=float), np.asarray(high, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"rank_agreement: {len(x)} proxy values but {len(y)} high-fidelity values; pair them")
    from scipy import stats  # lazy: ~1.8 s to import, and every worker imports this module's neighbours

    rng = np.random.default_rng(seed)
    out = {}
    for name, fn in (("kendall_tau", stats.kendalltau), ("spearman_rho", stats.spearmanr)):
        value = _nan_safe(fn, x, y)
        draws = []
        for _ in range(resamples if len(x) >= 3 else 0):
            idx = rng.integers(0, len(x), len(x))
            draw = _nan_safe(fn, x[idx], y[idx])
            if not math.isnan(draw):
                draws.append(draw)
        low, high_ = (np.percentile(draws, [2.5, 97.5]) if draws else (math.nan, math.nan))
        out[name] = Interval(value, float(low), float(high_))
    return out


def seed_sigma(runs: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Each architecture's seed-to-seed standard deviation (nan with fewer than two seeds)."""
    return {key: (stdev(v) if len(v) >= 2 else math.nan) for key, v in runs.items()}


def pooled_sigma(runs: Mapping[str, Sequence[float]]) -> float:
    """The seed noise of one run, pooled over architectures (root of the mean within-architecture variance)."""
    variances = [stdev(v) ** 2 for v in runs.values() if len(v) >= 2]
    return math.sqrt(fmean(variances)) if variances else math.nan


def spread_to_noise(runs: Mapping[str, Sequence[float]]) -> float:
    """Spread of the architectures' mean top-1 over the seed sigma: below ~2, seeds reorder the ranking."""
    means = [fmean(v) for v in runs.values() if v]
    sigma = pooled_sigma(runs)
    if len(means) < 2 or not sigma or math.isnan(sigma):
        return math.nan
    return stdev(means) / sigma


def binomial_se(top1: float, images: int) -> float:
    """The held-out set's own sampling error of a top-1 fraction: sqrt(p(1-p)/n)."""
    return math.sqrt(max(top1 * (1 - top1), 0.0) / images) if images > 0 else math.nan


def front_retention(proxy_front: Sequence[str], high_front: Sequence[str]) -> tuple[int, int]:
    """How many of the proxy front's members (by spec id) are still on the high-fidelity front."""
    kept = set(proxy_front) & set(high_front)
    return len(kept), len(set(proxy_front))


def indistinguishable(members: Mapping[str, tuple[float, float]], z: float = 1.96) -> list[tuple[str, str]]:
    """Pairs of front members whose top-1 difference is within noise: |a - b| < z * sqrt(se_a² + se_b²).

    `members` maps a spec id (or name) to (mean top-1, standard error of that mean). Neighbours on a
    front differ in cost; this says when their accuracy difference is no evidence at all.
    """
    keys = sorted(members)
    pairs = []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            (ma, sa), (mb, sb) = members[a], members[b]
            noise = z * math.sqrt(sa**2 + sb**2)
            if abs(ma - mb) < noise:
                pairs.append((a, b))
    return pairs
