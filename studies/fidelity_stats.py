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


def spread_and_noise(runs: Mapping[str, Sequence[float]]) -> tuple[float, float]:
    """(s, sigma): the sd of the architectures' true mean top-1 and of single runs around them, by one-way ANOVA
    (the unbalanced estimator; architectures with one run count towards s only through their mean).

    Why apart from spread_to_noise: the spread of *measured* means holds their own noise, sigma^2 / runs; the
    true spread is what any proxy's rank agreement depends on (runs_for_tau)."""
    groups = [np.asarray(v, dtype=float) for v in runs.values() if len(v)]
    a, total = len(groups), sum(len(g) for g in groups)
    if a < 2 or total <= a:
        return math.nan, math.nan
    grand = np.concatenate(groups).mean()
    within = sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / (total - a)
    between = sum(len(g) * float(g.mean() - grand) ** 2 for g in groups) / (a - 1)
    n0 = (total - sum(len(g) ** 2 for g in groups) / total) / (a - 1)
    return math.sqrt(max(0.0, (between - within) / n0)), math.sqrt(within)


def spread_and_noise_of_repeats(repeats: Sequence[Mapping[str, float]]) -> tuple[float, float]:
    """(s, sigma) as spread_and_noise, from complete repeats of one proxy (each maps every architecture to its
    score in that repeat), by two-way ANOVA: each repeat's own shift of every architecture is taken out first.

    Why: a shared trunk, or a seed, can lift or sink every placement trained from it at once (two trunks of the
    known-answer task differ by 5 points on average); a ranking never sees that shift, so it is not noise, but
    one-way ANOVA counts it as such."""
    names = sorted(set.intersection(*(set(r) for r in repeats))) if repeats else []
    if len(repeats) < 2 or len(names) < 2:
        return math.nan, math.nan
    x = np.array([[r[n] for r in repeats] for n in names], dtype=float)  # architecture x repeat
    p, r = x.shape
    resid = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + x.mean()
    sigma2 = float((resid ** 2).sum()) / ((p - 1) * (r - 1))
    between = float(x.mean(1).var(ddof=1))
    return math.sqrt(max(0.0, between - sigma2 / r)), math.sqrt(sigma2)


def expected_taus(s: float, sigma: float, k: float) -> tuple[float, float]:
    """(Kendall tau against the true order, tau between two independent repeats) of the means of k runs each,
    under the normal model: true means spread s, runs sigma around them, and Greiner's tau = (2/pi) asin(rho)."""
    if s == 0:
        return 0.0, 0.0
    share = s * s / (s * s + sigma * sigma / k)
    return 2 / math.pi * math.asin(math.sqrt(share)), 2 / math.pi * math.asin(share)


def runs_for_tau(target: float, s: float, sigma: float, *, repeat: bool = False) -> float:
    """Runs per architecture at which expected_taus reaches `target` (against the true order, or between two
    repeats): how many seeds a ranking of these architectures needs. inf where they do not differ at all."""
    if math.isnan(s) or math.isnan(sigma):
        return math.nan
    rho = math.sin(math.pi * target / 2)
    share = rho if repeat else rho * rho
    return math.inf if s == 0 else sigma * sigma * share / (s * s * (1 - share))


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
