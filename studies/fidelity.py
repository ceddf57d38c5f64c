"""How far to trust a study's proxy: retrain its front (and a spread of other trials) longer, with seeds.

`attnas fidelity STUDY.toml` (studies/cli/fidelity.py) builds on this module:

- `prepare` makes a LINKED study `<name>-fidelity` in the same storage, whose stored attnas config is the
  parent's at a higher fidelity (`linked_config`: more epochs, optionally more images per class and a higher
  resolution), and queues one WAITING trial per (architecture, seed) with the architecture's params fixed
  (`study.enqueue_trial`). The linked study is an ordinary attnas study, so `attnas worker` / `attnas launch
  --slurm` on the linked study file it writes run its trials, and a killed worker costs one retry.
- Each queued trial carries its training seed in the user attr `SEED_ATTR`; the worker reads it with
  `trial_seed` (following a retry back to the trial that was queued) and keys its dedup index with
  `dedup_key(spec_id, seed)`, so the seeds of one architecture are separate trials, each trained once.
- `measure` compares the parent's proxy top-1 with the linked study's mean high-fidelity top-1 (statistics
  from studies.fidelity_stats) and returns the JSON stored as the parent's study user attr `STUDY_ATTR`,
  which the report draws.
- `front_noise` says which members of a front are indistinguishable within noise (seed standard error where
  a record has seeds, else the held-out set's binomial error), for the report and `attnas front`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import fmean, stdev
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import storage as st
from .config import SamplerConfig, StudyConfig, StudyError
from .fidelity_stats import (
    binomial_se,
    front_retention,
    indistinguishable,
    pooled_sigma,
    rank_agreement,
    runs_for_tau,
    seed_sigma,
    spread_and_noise,
    spread_to_noise,
)
from .records import (
    GFLOPS_TOL,
    Status,
    TrialRecord,
    data_summary,
    front_candidates,
    objectives_of,
    pareto_front,
    record,
    records,
)

if TYPE_CHECKING:  # for the annotation only: fidelity imports seeding inside its functions, as below
    from .seeding import Noise

SUFFIX = "-fidelity"
SEED_ATTR = "attnas.seed"  # trial user attr: the training seed of this trial (replaces the schedule's)
PAIR_ATTR = "attnas.pair"  # trial user attr of a linked trial: {"parent_trial", "spec_id", "seed"}
STUDY_ATTR = "attnas.fidelity"  # parent study user attr: what `measure` returned
PARENT_ATTR = "attnas.fidelity_of"  # linked study user attr: the parent study's name
DEFAULTS = {"extra": 8, "seeds": 3, "epochs_factor": 4.0}


@dataclass(frozen=True)
class Settings:
    """The higher fidelity: flags, else the study file's `[fidelity]` section, else DEFAULTS."""

    extra: int
    seeds: int
    epochs_factor: float
    images_per_class: int | None = None
    resolution: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"extra": self.extra, "seeds": self.seeds, "epochs_factor": self.epochs_factor,
                "images_per_class": self.images_per_class, "resolution": self.resolution}


def settings(config: StudyConfig, **flags: Any) -> Settings:
    """Merge flags (None = not given) over the `[fidelity]` section over DEFAULTS; validate them."""
    section = config.fidelity
    values: dict[str, Any] = {}
    for name in ("extra", "seeds", "epochs_factor", "images_per_class", "resolution"):
        given = flags.get(name)
        from_file = getattr(section, name, None) if section is not None else None
        values[name] = given if given is not None else from_file if from_file is not None else DEFAULTS.get(name)
    s = Settings(**values)
    if s.extra < 0:
        raise StudyError(f"--extra: {s.extra} must be 0 or more (other trained trials to retrain)")
    if s.seeds < 1:
        raise StudyError(f"--seeds: {s.seeds} must be at least 1 (2+ to measure seed noise)")
    if not s.epochs_factor > 0:
        raise StudyError(f"--epochs-factor: {s.epochs_factor} must be positive, e.g. 4")
    if s.images_per_class is not None and s.images_per_class < 1:
        raise StudyError(f"--images-per-class: {s.images_per_class} must be at least 1")
    if s.resolution is not None and not 8 <= s.resolution <= 1024:
        raise StudyError(f"--resolution: {s.resolution} must be between 8 and 1024")
    return s


def linked_name(name: str) -> str:
    return name + SUFFIX


def linked_config(parent: StudyConfig, s: Settings, trials: int, storage_url: str) -> StudyConfig:
    """The parent's config at the higher fidelity, in the parent's storage, sampling nothing (random, seeded)."""
    schedule = replace(parent.schedule, epochs=max(1, round(parent.schedule.epochs * s.epochs_factor)))
    if schedule.auto_seeds:  # the linked study queues its own seeds per architecture; it adds none
        from trainer import single_run

        schedule = single_run(schedule, schedule.seed)
    data = parent.data
    if s.images_per_class is not None:
        data = replace(data, train_per_class=s.images_per_class)
    if s.resolution is not None:
        data = replace(data, resolution=s.resolution)
    return replace(parent, name=linked_name(parent.name), storage=storage_url, trials=max(1, trials),
                   schedule=schedule, data=data, sampler=SamplerConfig(name="random", seed=0), source=None)


def chosen(rs: Sequence[TrialRecord], objectives: Sequence[str], extra: int) -> list[TrialRecord]:
    """The proxy front plus `extra` other front candidates evenly spread over their top-1 range.

    Deterministic: the others are sorted by (top-1, trial number) and taken at evenly spaced ranks, so the
    lowest and highest are always among them (a rank correlation needs the range, not just the top).
    """
    front = [r for r in pareto_front(rs, objectives) if r.choices]
    on_front = {r.spec_id for r in front}
    rest = sorted((r for r in front_candidates(rs, objectives) if r.spec_id not in on_front and r.choices),
                  key=lambda r: (r.top1 or 0.0, r.number))
    if extra >= len(rest):
        return front + rest
    if extra == 0:
        return front
    if extra == 1:
        return [*front, rest[len(rest) // 2]]
    step = (len(rest) - 1) / (extra - 1)
    return front + [rest[round(i * step)] for i in range(extra)]


def seeds_of(config: StudyConfig, s: Settings) -> list[int]:
    """The training seeds: the parent schedule's seed and the next ones."""
    return [config.schedule.seed + k for k in range(s.seeds)]


def trial_seed(study: optuna.Study, trial: FrozenTrial) -> int | None:
    """The trial's own training seed (None for an ordinary trial): its user attr, or its queued ancestor's.

    A retry (studies.liveness.retry) copies only the params, but names the trials it retries in
    `retry_history`; the first of them is the trial `prepare` queued with the seed.
    """
    if SEED_ATTR in trial.user_attrs:
        return int(trial.user_attrs[SEED_ATTR])
    history = trial.system_attrs.get("retry_history") or []
    if not history:
        return None
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number in history:
        earlier = by_number.get(number)
        if earlier is not None and SEED_ATTR in earlier.user_attrs:
            return int(earlier.user_attrs[SEED_ATTR])
    return None


def dedup_key(spec_id: str, seed: int | None) -> str:
    """The worker's dedup key: the spec id, or spec id and seed for a trial with its own seed."""
    return spec_id if seed is None else f"{spec_id}:seed{seed}"


def pair_of(study: optuna.Study, trial: FrozenTrial) -> tuple[str, int] | None:
    """(spec id, seed) a linked trial stands for (a retry: its queued ancestor's)."""
    if PAIR_ATTR in trial.user_attrs:
        pair = trial.user_attrs[PAIR_ATTR]
        return str(pair["spec_id"]), int(pair["seed"])
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number in trial.system_attrs.get("retry_history") or []:
        earlier = by_number.get(number)
        if earlier is not None and PAIR_ATTR in earlier.user_attrs:
            pair = earlier.user_attrs[PAIR_ATTR]
            return str(pair["spec_id"]), int(pair["seed"])
    return None


@dataclass(frozen=True)
class Prepared:
    """What `prepare` made: the linked config (its file written), the parent study, and what was queued."""

    config: StudyConfig
    file: Path
    parent: optuna.Study
    architectures: int
    pairs: int
    queued: int
    done: int


def prepare(parent_config: StudyConfig, s: Settings) -> Prepared:
    """Create or resume the linked study and queue every (architecture, seed) pair not done or pending.

    A pair counts as pending while one of its trials is WAITING, RUNNING or COMPLETE; a pair whose trials all
    failed is queued again. The linked study's total is set to the trials it holds, so no worker ever tops it
    up with a sampled (unfixed) trial.
    """
    info = st.resolve(parent_config)
    storage = st.open_existing(info)
    parent = st.load(storage, parent_config.name)
    rs = records(parent)
    picks = chosen(rs, objectives_of(parent), s.extra)
    if len(picks) < 2:
        raise StudyError(f"study {parent_config.name!r} has {len(picks)} trained architecture(s) within budget; "
                         "fidelity needs 2+ (run more trials first)")
    seeds = seeds_of(parent_config, s)
    config = linked_config(parent_config, s, len(picks) * len(seeds), info.url)
    linked = st.create_or_resume(config, storage)
    linked.set_user_attr(PARENT_ATTR, parent.study_name)
    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    have = {pair_of(linked, t) for t in linked.get_trials(deepcopy=False) if t.state in live}
    queued = 0
    for r in picks:
        for seed in seeds:
            if (r.spec_id, seed) in have:
                continue
            linked.enqueue_trial(dict(r.choices), user_attrs={
                SEED_ATTR: seed, PAIR_ATTR: {"parent_trial": r.number, "spec_id": r.spec_id, "seed": seed}})
            queued += 1
    from .queue import planned

    config = replace(config, trials=planned(linked))
    st.create_or_resume(config, storage)  # stores the new total
    done = sum(1 for t in linked.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return Prepared(config, write_linked_file(parent_config, config), parent, len(picks),
                    len(picks) * len(seeds), queued, done)


def write_linked_file(parent: StudyConfig, config: StudyConfig) -> Path:
    """The linked study's file (YAML, which the study-file reader takes), for `attnas worker` / `launch`."""
    import yaml

    path = parent.folder / f"{config.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    content = json.loads(json.dumps(config.to_dict()))
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text("# written by `attnas fidelity`: the linked high-fidelity study (run it with attnas worker)\n"
                   + yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    tmp.replace(path)
    return path


# -- the numbers ------------------------------------------------------------------------------------------------
def high_runs(linked: optuna.Study) -> dict[str, dict[int, float]]:
    """spec id -> {seed: high-fidelity top-1} over the linked study's trained trials (first per pair)."""
    out: dict[str, dict[int, float]] = {}
    for trial in linked.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        r = record(trial)
        pair = pair_of(linked, trial)
        if r.status != Status.TRAINED or r.top1 is None or pair is None:
            continue
        out.setdefault(pair[0], {}).setdefault(pair[1], r.top1)
    return out


def holdout_images(config: StudyConfig | None) -> int | None:
    """Images in the held-out set: holdout_per_class × classes (the listed classes, else the dataset's)."""
    if config is None:
        return None
    classes = config.data.classes
    if isinstance(classes, tuple | list):
        return config.data.holdout_per_class * len(classes)
    try:
        from trainer.subsets import split_subset

        return len(split_subset(config.data.subset()).holdout)
    except Exception:  # the data is not on this machine (a report read elsewhere): no binomial error then
        return None


def study_holdout_images(study: optuna.Study) -> int | None:
    """The held-out set's size for reads, without touching the data: what the study stored when a worker
    started (records.DATA_ATTR), else holdout_per_class × the listed classes, else None (an older study with
    `classes = "all"` gains it the next time a worker or `attnas create` opens it)."""
    stored = data_summary(study)
    if stored and stored.get("holdout_images"):
        return int(stored["holdout_images"])
    config = st.stored_config(study)
    if config is not None and isinstance(config.data.classes, tuple | list):
        return config.data.holdout_per_class * len(config.data.classes)
    return None


def measure(parent: optuna.Study, linked: optuna.Study, images: int | None, s: Settings) -> dict[str, Any]:
    """Proxy vs high fidelity, JSON-ready: rank agreement, seed noise, front retention and ties."""
    objectives = objectives_of(parent)
    proxy = {r.spec_id: r for r in front_candidates(records(parent), objectives)}
    runs = {k: v for k, v in high_runs(linked).items() if k in proxy}
    proxy_front = [r.spec_id for r in pareto_front(proxy.values(), objectives) if r.spec_id in runs]
    means = {k: fmean(v.values()) for k, v in runs.items()}
    high = [replace(proxy[k], top1=means[k]) for k in runs]
    high_front = [r.spec_id for r in pareto_front(high, objectives)]
    top1s = {k: list(v.values()) for k, v in runs.items()}  # each architecture's runs, seeds dropped
    sigma = seed_sigma(top1s)
    keys = sorted(runs, key=lambda k: proxy[k].number)
    agreement = rank_agreement([proxy[k].top1 for k in keys], [means[k] for k in keys])
    kept, size = front_retention(proxy_front, high_front)
    members = {proxy[k].name: (means[k], standard_error(top1s[k], images)) for k in proxy_front}
    return {
        "linked_study": linked.study_name,
        "settings": s.to_dict(),
        "holdout_images": images,
        "architectures": [{
            "spec_id": k, "name": proxy[k].name, "trial": proxy[k].number, "gflops": proxy[k].gflops,
            "proxy_top1": proxy[k].top1, "runs": [runs[k][seed] for seed in sorted(runs[k])],
            "seeds": sorted(runs[k]), "mean_top1": means[k], "seed_sigma": finite(sigma[k]),
            "on_proxy_front": k in proxy_front, "on_high_front": k in high_front,
        } for k in keys],
        "kendall_tau": agreement["kendall_tau"].to_dict(),
        "spearman_rho": agreement["spearman_rho"].to_dict(),
        "seed_sigma": finite(pooled_sigma(top1s)),
        "spread_to_noise": finite(spread_to_noise(top1s)),
        **runs_to_rank(top1s),
        "front_kept": kept,
        "front_size": size,
        "indistinguishable": [list(p) for p in indistinguishable(members)],
    }


def runs_to_rank(runs: Mapping[str, Sequence[float]]) -> dict[str, float | None]:
    """The architectures' true spread (ANOVA) and how many runs of this training each needs for their means to
    rank them at Kendall tau 0.6 against the true order, and for two such rankings to agree at 0.7 (the normal
    model of fidelity_stats.expected_taus; None where there are no repeats, or no spread to rank).

    Why: tau says how well the proxy matched this training; this says how well this training itself can rank
    these architectures, and so how many seeds a final comparison of them needs."""
    return rank_numbers(*spread_and_noise(runs))


def rank_numbers(spread: float, sigma: float) -> dict[str, float | None]:
    """runs_to_rank's figures from a spread and noise however estimated (benchmarks/proxy_modes.py reads them
    off complete repeats, two-way)."""
    return {"true_spread": finite(spread), "runs_for_tau_0.6": finite(runs_for_tau(0.6, spread, sigma)),
            "runs_for_repeat_tau_0.7": finite(runs_for_tau(0.7, spread, sigma, repeat=True))}


def ranking_text(numbers: Mapping[str, Any]) -> str:
    """runs_to_rank's figures as the sentence `attnas fidelity` prints and the report shows ("" for numbers
    stored before they were measured)."""
    if "true_spread" not in numbers:
        return ""
    spread, k6, k7 = (numbers.get(k) for k in ("true_spread", "runs_for_tau_0.6", "runs_for_repeat_tau_0.7"))
    if spread is None:
        return "runs needed to rank them: n/a (needs 2+ seeds of some architecture)"
    if k6 is None or k7 is None:
        return (f"true spread between architectures {100 * spread:.2f} points: within seed noise, no number of "
                "runs ranks them")
    k6, k7 = max(k6, 1.0), max(k7, 1.0)  # under one: a single run already does
    return (f"true spread between architectures {100 * spread:.2f} points: ranking them at tau 0.6 takes "
            f"~{k6:.1f} run(s) of this training each, two rankings agreeing at tau 0.7 ~{k7:.1f} (normal model)")


def standard_error(runs: Sequence[float], images: int | None) -> float:
    """A mean top-1's standard error: over seeds with 2+ of them, else the held-out set's binomial error."""
    if len(runs) >= 2:
        return stdev(runs) / math.sqrt(len(runs))
    if images:
        return binomial_se(fmean(runs), images)
    return math.nan


def finite(value: float) -> float | None:
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def store(parent: optuna.Study, numbers: Mapping[str, Any]) -> None:
    parent.set_user_attr(STUDY_ATTR, dict(numbers))


# -- a front's noise ---------------------------------------------------------------------------------------------
def front_noise(front: Sequence[TrialRecord], images: int | None,
                pool: Sequence[TrialRecord] | None = None, model: Noise | None = None) -> dict[str, Any]:
    """Each front member's standard error and the pairs whose top-1 difference is within noise.

    The error is `seeding.Noise`'s, the one auto seeds decide with: the seed σ of one run pooled over the
    records of `pool` (default: the front) with 2+ seeds (`TrialRecord.seeds`: a `seeds = k` schedule's runs,
    or a trial's runs merged with its extra seeds), over √(the member's runs); before any record has two
    runs, the held-out set's binomial error (`images` = holdout_per_class × classes), which is all that is
    known about a single run. `model`: that noise model when the caller has built it already (it is the
    same for the same pool and images).
    """
    from .seeding import noise as noise_of

    model = model if model is not None else noise_of(pool if pool is not None else front, images)
    se: dict[int, float | None] = {}
    members: dict[str, tuple[float, float]] = {}
    for r in front:
        value = model.se(r) if r.top1 is not None else None
        se[r.number] = finite(value) if value is not None else None
        if value is not None and math.isfinite(value):
            members[f"#{r.number}"] = (float(r.top1 or 0.0), value)
    pairs = [(int(a[1:]), int(b[1:])) for a, b in indistinguishable(members)]
    ties: dict[int, list[int]] = {r.number: [] for r in front}
    for a, b in pairs:
        ties[a].append(b)
        ties[b].append(a)
    return {"se": se, "pairs": [list(p) for p in sorted(pairs)], "ties": {n: sorted(v) for n, v in ties.items()},
            "source": model.source, "holdout_images": images, "seed_sigma": model.sigma,
            "seed_sigma_trials": model.pooled}


def study_front_noise(study: optuna.Study, front: Sequence[TrialRecord] | None = None,
                      gflops_tol: float = GFLOPS_TOL,
                      rs: Sequence[TrialRecord] | None = None) -> dict[str, Any]:
    """`front_noise` of a stored study's front (default: its exact front), σ pooled over its trained
    trials, with its held-out size from the stored study file; and `near`: the trained trials on no front
    (not even folded into a member) that are still within noise of it, auto seeds' contenders
    (seeding.contest). Why: a front of one member reads as an answer, yet a tie off the front is as likely
    the better network; the user should see its number, not only the member's ±. `rs`: the study's records
    when the caller has read them already (a storage read of every trial, the costly part)."""
    from .seeding import contest
    from .seeding import noise as noise_of

    rs = records(study) if rs is None else rs
    objectives = objectives_of(study)
    exact = pareto_front(rs, objectives)
    front = exact if front is None else front
    pool = front_candidates(rs, objectives)
    images = study_holdout_images(study)
    model = noise_of(pool, images)
    contenders, _ = contest(pool, model, objectives, gflops_tol)
    on_front = {r.number for r in exact}
    return {**front_noise(front, images, pool, model), "near": sorted(contenders - on_front)}
