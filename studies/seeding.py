"""`seeds = "auto"`: more seeds only where the front is undecided.

Every architecture is trained once. When the study's own slots are all done (no slot trial waiting or
running), `wanted` — a pure function of the records — names the trained trials whose place on the front a
95% test cannot settle yet, and `top_up` queues one more seed of each as a job: a WAITING trial with the
architecture's params and the user attr `queue.SEED_OF` = {"trial": N, "seed": s}. Workers claim it like
any queued trial (an atomic claim: trained once), a killed worker's job is retried like any trial (the retry
names it in `retry_history`, `queue.seed_jobs` follows that), and it takes no slot (`queue.planned`). Its
result is recorded on its own trial (outcome "seed", `seed_of` N) and `records.with_seeds` merges it into
trial N, so the front, its ± and its ties come from the seeds each trial has. Each finished job can make
more: the rule is applied again until nothing is undecided or every contender has `max_seeds` runs.

The rule (`undecided`). Each trained candidate (records.front_candidates) has a mean top-1 m and a standard
error se (`Noise`). Two trials are *separated* when |m_a − m_b| ≥ 1.96·sqrt(se_a² + se_b²): a two-sided
z-test at 95% on the difference of means — the very test `attnas front` marks "within noise of" with
(fidelity_stats.indistinguishable), so a trial stops getting seeds exactly when the front stops marking it
tied. Non-overlapping 95% intervals (|Δ| ≥ 1.96·(se_a + se_b)) were not chosen: they test at ~99.5% for equal
errors and would spend seeds on pairs the front already shows as separate. A trial is *clearly off the
front* when another, at most as costly (every cost within `records.GFLOPS_TOL`, as the shown front counts
cost), is separated from it and more accurate: it keeps one run. The others are *contenders*; a contender
that is not separated from another contender gets one more seed (at most one in flight per trial), until
separated or `max_seeds` runs were tried (a failed run counts, so a broken job is not queued forever).

The noise (`Noise`). One run's seed σ, pooled over every candidate with 2+ seeds (the root of the mean
within-architecture variance, fidelity_stats.pooled_sigma), divided by √(its runs). Pooled rather than each
trial's own: with 2 or 3 seeds a trial's own standard deviation has 1-2 degrees of freedom and is often near
0 by chance, which would declare a tie separated after one extra seed; seed noise is a property of the proxy
(benchmarks/RESULTS.md measures it per task), so all trials lend each other their degrees of freedom. Before
any trial has two runs the held-out set's binomial error is all that is known, and it can be far below the
seed noise (Fashion-MNIST); so while σ is unmeasured every member of the front gets a second run as well,
which is what measures σ.

Why a job is its own trial, told PRUNED, and Optuna's values stay the first seed's: Optuna cannot change a
COMPLETE trial's values, and writing every seed into trial N's attr would be a read-modify-write two
workers could race; a trial per job has the claim, heartbeat and retry machinery for free. PRUNED keeps the
job out of NSGA-II's and GP's data (they read COMPLETE trials only) and off Optuna's `best_trials`; TPE
ranks it with pruned trials. The sampler so learns from first seeds only, which is also what MO-ASHA judged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from . import queue
from .fidelity_stats import binomial_se, pooled_sigma
from .records import GFLOPS_TOL, MAXIMISE, TrialRecord, front_candidates, pareto_front, record, with_seeds
from .storage import StorageInfo

#: Two-sided 95%.
Z = 1.96


@dataclass(frozen=True)
class Noise:
    """A mean top-1's standard error: the pooled seed σ / √runs, else (σ unmeasured) one run's binomial error."""

    sigma: float | None  # one run's seed σ pooled over `pooled` trials with 2+ seeds; None before any
    images: int | None  # held-out images (their binomial error stands in while σ is unmeasured)
    pooled: int = 0

    def se(self, r: TrialRecord) -> float | None:
        if self.sigma is not None:
            return self.sigma / math.sqrt(max(1, len(r.seeds)))
        if r.top1 is not None and self.images:
            return binomial_se(r.top1, self.images)
        return None

    @property
    def source(self) -> str:
        return "seeds" if self.sigma is not None else "binomial"


def noise(pool: Iterable[TrialRecord], images: int | None) -> Noise:
    """The noise of a study's records: σ pooled over its trained trials with 2+ seeds."""
    seeded = {r.number: list(r.seeds) for r in pool if len(r.seeds) >= 2}
    sigma = pooled_sigma(seeded) if seeded else math.nan
    return Noise(sigma if math.isfinite(sigma) else None, images, len(seeded))


def contest(candidates: Sequence[TrialRecord], noise: Noise, objectives: Sequence[str] = ("top1", "gflops"),
            gflops_tol: float = GFLOPS_TOL, z: float = Z) -> tuple[set[int], set[int]]:
    """(numbers of the contenders, numbers of the contenders not separated from another contender): the
    module's rule, once for `undecided` and for benchmarks that ask whether a trial is within noise of the
    front (benchmarks/known_answer.py --search)."""
    if len(candidates) < 2:
        return {r.number for r in candidates}, set()
    top1 = np.array([r.top1 or 0.0 for r in candidates])
    se = np.array([noise.se(r) or 0.0 for r in candidates])
    costs = np.array([[r.objective(o) or 0.0 for o in objectives if not MAXIMISE[o]] for r in candidates])
    # cheap[i, j]: j is at most as costly as i (every cost within the tolerance)
    cheap = np.all(costs[None, :, :] <= costs[:, None, :] * (1 + gflops_tol), axis=2)
    gap = z * np.sqrt(se[:, None] ** 2 + se[None, :] ** 2)
    diff = top1[None, :] - top1[:, None]  # diff[i, j] = m_j - m_i
    np.fill_diagonal(cheap, False)
    off = np.any(cheap & (diff >= gap), axis=1)
    tied = np.abs(diff) < gap
    np.fill_diagonal(tied, False)
    contender = ~off
    open_ = contender & np.any(tied & contender[None, :], axis=1)
    return ({r.number for r, c in zip(candidates, contender, strict=True) if c},
            {r.number for r, o in zip(candidates, open_, strict=True) if o})


def undecided(candidates: Sequence[TrialRecord], noise: Noise, objectives: Sequence[str] = ("top1", "gflops"),
              gflops_tol: float = GFLOPS_TOL, z: float = Z) -> set[int]:
    """Numbers of the contenders that are not separated from another contender (the module's rule)."""
    return contest(candidates, noise, objectives, gflops_tol, z)[1]


def wanted(rs: Sequence[TrialRecord], attempts: Mapping[int, int], busy: Iterable[int], noise: Noise,
           max_seeds: int, objectives: Sequence[str] = ("top1", "gflops"),
           gflops_tol: float = GFLOPS_TOL, rule: Callable[..., set[int]] | None = None) -> list[int]:
    """Trials that need one more seed now: undecided (or, while σ is unmeasured, on the front with one run),
    with no seed in flight (`busy`) and fewer than `max_seeds` runs tried (1 + `attempts`). `rule` (default
    `undecided`, same signature) lets benchmarks/search_odds.py --rule weigh other rules against this one."""
    candidates = front_candidates(rs, objectives)
    need = (rule or undecided)(candidates, noise, objectives, gflops_tol)
    if noise.sigma is None:
        need |= {r.number for r in pareto_front(candidates, objectives) if len(r.seeds) < 2}
    busy = set(busy)
    return sorted(n for n in need if n not in busy and 1 + attempts.get(n, 0) < max_seeds)


@dataclass(frozen=True)
class Jobs:
    """The extra-seed jobs of a study: seeds tried per trial, trials with one in flight, and whether the
    study's own slots are all done (seeds are decided only then)."""

    tried: dict[int, set[int]]
    busy: set[int]
    search_done: bool


def jobs(trials: Sequence[FrozenTrial], fresh: bool = True) -> Jobs:
    """Read the jobs from the trials; `fresh` False: empty slots stay queued (the space is exhausted)."""
    seeds = queue.seed_jobs(list(trials))
    tried: dict[int, set[int]] = {}
    busy: set[int] = set()
    for owner, seed in seeds.values():
        tried.setdefault(owner, set()).add(seed)
    live = (TrialState.WAITING, TrialState.RUNNING)
    for t in trials:
        if t.number in seeds and t.state in live:
            busy.add(seeds[t.number][0])
    done = not any(t.state == TrialState.RUNNING or (t.state == TrialState.WAITING and (fresh or t.params))
                   for t in trials if t.number not in seeds)
    return Jobs(tried, busy, done)


def plan(trials: Sequence[FrozenTrial], images: int | None, max_seeds: int, objectives: Sequence[str],
         fresh: bool = True) -> list[int]:
    """`wanted` for a study's trials (nothing while its own slots are not all done)."""
    found = jobs(trials, fresh)
    if not found.search_done:
        return []
    rs = with_seeds([record(t) for t in trials])
    attempts = {n: len(s) for n, s in found.tried.items()}
    return wanted(rs, attempts, found.busy, noise(front_candidates(rs, objectives), images), max_seeds, objectives)


@dataclass(frozen=True)
class Outlook:
    """Where a study's auto seeds stand, for `attnas status`. A seeding phase queues jobs a round at a time, so
    "2 queued" alone reads as nearly done when the front may still want dozens of runs: `more` says how many at
    most, as the records stand now (a finished seed moves means, so trials can be reopened or settled)."""

    max_seeds: int
    search_done: bool  # the study's own slots are done: seeds are decided only then
    done: int  # extra-seed runs finished (any outcome)
    in_flight: int  # extra-seed jobs queued or running
    undecided: tuple[int, ...]  # trials the rule would seed now or once their seed in flight is back
    more: int  # runs the undecided trials may still get beyond those in flight, at most
    sigma: float | None  # the pooled seed σ the rule uses (None: not measured yet)
    pooled: int  # trials it is pooled over


def outlook(trials: Sequence[FrozenTrial], images: int | None, max_seeds: int, objectives: Sequence[str],
            fresh: bool = True, rs: Sequence[TrialRecord] | None = None) -> Outlook:
    """The study's `Outlook`: the same rule as `plan`, with in-flight seeds counted instead of skipped. `rs`: the
    trials' records when the caller has them already (`attnas status` does)."""
    found = jobs(trials, fresh)
    # one seed per job, a retry keeping its job's seed, and at most one job in flight per trial (top_up)
    in_flight = len(found.busy)
    done = sum(len(s) for s in found.tried.values()) - in_flight
    rs = with_seeds([record(t) for t in trials]) if rs is None else rs
    model = noise(front_candidates(rs, objectives), images)
    attempts = {n: len(s) for n, s in found.tried.items()}
    # max_seeds + 1 keeps the trials whose last seed is in flight (undecided until it is back); then only
    # those and the ones with room for another seed
    need = wanted(rs, attempts, (), model, max_seeds + 1, objectives) if found.search_done else []
    need = [n for n in need if 1 + attempts.get(n, 0) < max_seeds or n in found.busy]
    more = sum(max(0, max_seeds - 1 - attempts.get(n, 0)) for n in need)
    return Outlook(max_seeds, found.search_done, done, in_flight, tuple(need), more, model.sigma, model.pooled)


def outlook_text(o: Outlook) -> str:
    """One line for `attnas status`."""
    head = f"auto seeds (up to {o.max_seeds} runs a trial):"
    if not o.search_done:
        return f"{head} they begin when the study's own trials are done"
    sigma = (f"seed σ {100 * o.sigma:.2f} pts pooled over {o.pooled} trial(s)" if o.sigma is not None
             else "seed σ not measured yet")
    if not o.undecided and not o.in_flight:
        return (f"{head} settled after {o.done} extra run(s): every front contender is separated or has its "
                f"runs; {sigma}")
    names = ", ".join(str(n) for n in o.undecided)
    return (f"{head} {o.done} extra run(s) done, {o.in_flight} queued or running; {len(o.undecided)} trial(s) "
            f"undecided ({names or '-'}), at most {o.more} more run(s) as the records stand; {sigma}")


def top_up(info: StorageInfo, storage: optuna.storages.BaseStorage, study: optuna.Study, first_seed: int,
           max_seeds: int, images: int | None, objectives: Sequence[str], fresh: bool = True) -> int:
    """Queue one seed job per trial `plan` names; how many were queued.

    Planned once without a lock (the usual answer is nothing) and again under the queue's lock before
    queueing, so two workers deciding at once queue each job once.
    """
    if not plan(study.get_trials(deepcopy=False), images, max_seeds, objectives, fresh):
        return 0
    with queue.lock(info, storage, study.study_name):
        trials = study.get_trials(deepcopy=False)
        want = plan(trials, images, max_seeds, objectives, fresh)
        tried = jobs(trials, fresh).tried
        by_number = {t.number: t for t in trials}
        for number in want:
            owner = by_number[number]
            seed = max(tried.get(number, set()) | {first_seed}) + 1
            study.add_trial(optuna.trial.create_trial(
                state=TrialState.WAITING, params=owner.params, distributions=owner.distributions,
                user_attrs={queue.SEED_OF: {"trial": number, "seed": seed}}))
    return len(want)
