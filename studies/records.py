"""One record per trial, the Pareto front and the hypervolume: what every reader of a study starts from.

`record(trial)` is the only place a `FrozenTrial` is interpreted (docs/CONTRACT.md: the
`"attnas"` user attr; trials written by older attnas — user attrs spec/spec_id/spec_name/scores/
reused_from/error — are read too). The CLI (`front`, `pick`, `status`), the report and the dashboard
test all use `records`, `pareto_front` and `hypervolume` from here, so they cannot disagree; every
`--json` output is made of `TrialRecord.to_dict()`.

Non-dominated sorting and hypervolume come from moocore (a maintained C library with a public Python
API), not from optuna's private `_hypervolume`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from statistics import fmean
from types import MappingProxyType
from typing import Any

import moocore
import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from search_space.spec import ArchSpec, SpecError

from .config import StudyError
from .constraints import BUDGET_KEY, ELIGIBLE_KEY, constraint_values
from .queue import SURPLUS

ATTR = "attnas"
#: Study system attr `attnas:failure:<trial number>`: why a trial was failed when the trial could not say so
#: itself (its worker's heartbeat stopped; its own record did not fit on a full disk). See docs/CONTRACT.md.
FAILURE_KEY = "attnas:failure:"
#: Objective name -> True when it is maximised. values[0] top-1, values[1] GFLOPs, optional values[2].
MAXIMISE: dict[str, bool] = {"top1": True, "gflops": False, "params_m": False}
DEFAULT_OBJECTIVES: tuple[str, ...] = ("top1", "gflops", "params_m")
#: The shown front's cost tolerance (`same_cost`): the README's main job had four front members at
#: 0.137-0.139 GFLOPs (1.5% apart), networks that differ by where a cheap block sits, not by a cost.
GFLOPS_TOL = 0.02


class Status(StrEnum):
    """What became of a trial; the first five are the outcomes of a COMPLETE trial. SEED is one more run of
    another trial's architecture (`seeds = "auto"`, studies.seeding), told to Optuna as PRUNED."""

    TRAINED = "trained"
    OVER_BUDGET = "over_budget"
    REUSED = "reused"
    DIVERGED = "diverged"
    STOPPED = "stopped"
    SEED = "seed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    RUNNING = "running"
    QUEUED = "queued"


@dataclass(frozen=True)
class TrialRecord:
    """One trial as attnas understands it. `top1` is a measured top-1 (None when not trained), never
    the 0.0 that Optuna is told for an untrained trial; `feasible` means within the FLOP budget."""

    number: int
    status: Status
    state: str = "COMPLETE"  # Optuna's trial state name, as `optuna trials` shows it
    spec: ArchSpec | None = None
    spec_id: str | None = None
    spec_name: str = ""
    top1: float | None = None
    top5: float | None = None
    gflops: float | None = None
    gflops_fvcore: float | None = None
    params: int | None = None
    epochs: int = 0
    start_epoch: int = 0
    curve: tuple[float, ...] = ()
    seconds: float | None = None
    error: str | None = None
    reused_from: int | None = None
    feasible: bool = True
    artifacts: tuple[str, ...] = ()
    #: Top-1 of the same architecture under each seed (`seeds = k`, or its first run and the extra-seed
    #: runs merged by `with_seeds`; then `top1` is their mean), and results at other fidelities (issue 9/10).
    seeds: tuple[float, ...] = ()
    #: An extra-seed run (Status.SEED): the trial whose architecture it trains again, and its training seed.
    seed_of: int | None = None
    seed: int | None = None
    fidelity: Mapping[str, Any] | None = None
    #: The key of the shared trunk it started from (studies.trunks), None from scratch.
    trunk: str | None = None
    #: Who ran (or runs) it: studies.environment.identity() of the worker that started it (host, pid, Slurm).
    worker: Mapping[str, Any] | None = None
    #: The sampler's choices (trial.params) and their distributions as optuna JSON (for importances).
    choices: Mapping[str, Any] = field(default_factory=dict)
    distributions: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: The trial that retried this failed or interrupted one (same params), when there is one.
    retried_as: int | None = None

    @property
    def params_m(self) -> float | None:
        return None if self.params is None else self.params / 1e6

    @property
    def name(self) -> str:
        return self.spec_name or f"trial {self.number}"

    def objective(self, name: str) -> float | None:
        """The value of objective `name` ('top1', 'gflops', 'params_m') for this record."""
        return self.params_m if name == "params_m" else getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (no NaN, no tuples, spec as ArchSpec.to_dict()): the shape of every `--json`."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "distributions":
                continue
            value = getattr(self, f.name)
            if isinstance(value, ArchSpec):
                value = value.to_dict()
            out[f.name] = _plain(value)
        out["params_m"] = _plain(self.params_m)
        out["name"] = self.name
        return out


def records(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> list[TrialRecord]:
    """Every trial of `study` as a record, by trial number, with the failure reasons and retries the study
    holds about it (a failed trial's reason may live in the study's attrs: see FAILURE_KEY), and each
    trial's extra-seed runs merged into it. A withdrawn surplus slot (never started: studies.queue) is none.
    `trials`: the study's trials when the caller has read them already (the costly part on a database)."""
    trials = [t for t in (study.get_trials(deepcopy=False) if trials is None else trials)
              if not t.system_attrs.get(SURPLUS)]
    reasons = failure_reasons(study) if any(t.state == TrialState.FAIL for t in trials) else {}
    retries = {t.system_attrs["failed_trial"]: t.number for t in trials if "failed_trial" in t.system_attrs}
    return with_seeds([record(t, reasons.get(t.number), retries.get(t.number)) for t in trials])


def with_seeds(rs: Sequence[TrialRecord]) -> list[TrialRecord]:
    """`rs` with each trained trial's extra-seed runs (Status.SEED records naming it in `seed_of`) merged in:
    `seeds` holds every run's top-1 (its own first) and `top1` their mean, so the front, its ± and its ties
    come from the seeds each trial has. The SEED records stay as they are (they are never front candidates).
    A seed that diverged makes the architecture diverged, as with `seeds = k` (trainer.mean_result)."""
    extra: dict[int, dict[int, TrialRecord]] = {}
    for r in sorted(rs, key=lambda r: r.number):
        if r.status == Status.SEED and r.seed_of is not None:
            extra.setdefault(r.seed_of, {}).setdefault(r.seed if r.seed is not None else -r.number, r)
    return [_merged(r, [runs[k] for k in sorted(runs)]) if r.status == Status.TRAINED
            and (runs := extra.get(r.number)) else r for r in rs]


def _merged(r: TrialRecord, runs: Sequence[TrialRecord]) -> TrialRecord:
    diverged = next((s for s in runs if s.top1 is None), None)
    if diverged is not None:
        return replace(r, status=Status.DIVERGED, top1=None, seeds=(),
                       error=f"its seed {diverged.seed} (trial {diverged.number}) diverged")
    top1s = (r.seeds or ((r.top1,) if r.top1 is not None else ())) + tuple(s.top1 or 0.0 for s in runs)
    top5s = [v for v in (r.top5, *(s.top5 for s in runs)) if v is not None]
    return replace(r, top1=fmean(top1s), seeds=top1s,
                   top5=fmean(top5s) if len(top5s) == len(runs) + 1 else r.top5)


def failure_reasons(study: optuna.Study) -> dict[int, str]:
    """Trial number -> the reason stored for it in the study system attrs (`FAILURE_KEY`)."""
    attrs = study._storage.get_study_system_attrs(study._study_id)
    return {int(k[len(FAILURE_KEY):]): str(v) for k, v in attrs.items() if k.startswith(FAILURE_KEY)}


def record(trial: FrozenTrial, failure: str | None = None, retried_as: int | None = None) -> TrialRecord:
    """The one function that reads a FrozenTrial (the contract's attr, else the legacy attrs); `failure` and
    `retried_as` are what the study holds about it (`records` passes them)."""
    data = _attnas_data(trial)
    if failure and not data.get("error"):
        data = {**data, "error": failure}
    status = status_of(trial, data)
    trained_top1 = _number(data.get("top1"))
    constraints = constraint_values(trial)
    return TrialRecord(
        number=trial.number,
        status=status,
        state=trial.state.name,
        spec=_spec(data.get("spec")),
        spec_id=data.get("spec_id"),
        spec_name=str(data.get("spec_name") or ""),
        top1=trained_top1 if status in (Status.TRAINED, Status.REUSED, Status.STOPPED, Status.SEED) else None,
        top5=_number(data.get("top5")),
        gflops=_number(data.get("gflops")),
        gflops_fvcore=_number(data.get("gflops_fvcore")),
        params=round(data["params"]) if data.get("params") is not None else None,
        epochs=int(data.get("epochs") or 0),
        start_epoch=int(data.get("start_epoch") or 0),
        curve=tuple(float(v) for v in data.get("curve") or ()),
        seconds=_number(data.get("seconds")),
        error=data.get("error"),
        reused_from=data.get("reused_from"),
        feasible=status != Status.OVER_BUDGET and _within_budget(constraints),
        artifacts=tuple(str(a) for a in data.get("artifacts") or ()),
        seeds=tuple(float(v) for v in data.get("seeds") or ()),
        seed_of=_whole(data.get("seed_of")),
        seed=_whole(data.get("seed")),
        fidelity=MappingProxyType(dict(data["fidelity"])) if data.get("fidelity") else None,
        trunk=data.get("trunk"),
        worker=MappingProxyType(dict(data["worker"])) if isinstance(data.get("worker"), Mapping) else None,
        choices=MappingProxyType(dict(trial.params)),
        distributions=MappingProxyType(
            {k: optuna.distributions.distribution_to_json(d) for k, d in trial.distributions.items()}
        ),
        retried_as=retried_as if status in (Status.FAILED, Status.INTERRUPTED) else None,
    )


def status_of(trial: FrozenTrial, data: Mapping[str, Any]) -> Status:
    """docs/CONTRACT.md's status table: WAITING queued, RUNNING running, FAIL failed/interrupted, PRUNED stopped
    (or seed, for an extra-seed run), COMPLETE the recorded outcome (a COMPLETE trial with no attnas outcome,
    e.g. foreign, is trained)."""
    if trial.state in (TrialState.PRUNED, TrialState.COMPLETE) and data.get("outcome") == Status.SEED:
        return Status.SEED
    if trial.state == TrialState.WAITING:
        return Status.QUEUED
    if trial.state == TrialState.RUNNING:
        return Status.RUNNING
    if trial.state == TrialState.FAIL:
        return Status.INTERRUPTED if data.get("error") == "interrupted" else Status.FAILED
    if trial.state == TrialState.PRUNED:
        return Status.STOPPED
    outcome = data.get("outcome")
    return Status(outcome) if outcome in Status.__members__.values() else Status.TRAINED


def _attnas_data(trial: FrozenTrial) -> Mapping[str, Any]:
    """The contract's attr; else the legacy attrs; else (a trial attnas did not write) its told values."""
    attrs = trial.user_attrs
    if isinstance(attrs.get(ATTR), Mapping):
        return attrs[ATTR]
    if "scores" in attrs or "spec_id" in attrs or "error" in attrs:
        return _legacy(attrs)
    values = trial.values or []
    return {"top1": values[0] if values else None, "gflops": values[1] if len(values) > 1 else None,
            "params": values[2] * 1e6 if len(values) > 2 else None}


def _legacy(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Trials of older attnas: spec/spec_id/spec_name, scores{status 'ok'|'over_budget'|'diverged'}."""
    scores = dict(attrs.get("scores") or {})
    outcome = {"ok": "trained", "over_budget": "over_budget", "diverged": "diverged"}.get(scores.get("status"))
    if attrs.get("reused_from") is not None:
        outcome = "reused"
    return {**scores, "spec": attrs.get("spec"), "spec_id": attrs.get("spec_id"),
            "spec_name": attrs.get("spec_name"), "reused_from": attrs.get("reused_from"),
            "error": attrs.get("error"), "artifacts": attrs.get("artifacts"), "outcome": outcome}


def _within_budget(constraints: Mapping[str, float]) -> bool:
    """The FLOP-budget constraint <= 0; a legacy positional list (no names) counts as the budget."""
    if BUDGET_KEY in constraints:
        return constraints[BUDGET_KEY] <= 0.0
    return all(v <= 0.0 for k, v in constraints.items() if k != ELIGIBLE_KEY)


def _spec(data: Any) -> ArchSpec | None:
    if not isinstance(data, Mapping):
        return None
    try:
        return ArchSpec.from_dict(dict(data))
    except (SpecError, TypeError, KeyError):
        return None  # a spec of a grammar this attnas does not know: the record still shows its name


def _whole(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _plain(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, tuples -> lists, mappings -> dicts, enums -> their value."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# -- the front and its hypervolume ---------------------------------------------------------------------------
def objectives_of(study: optuna.Study) -> tuple[str, ...]:
    """The study's objective names: its metric names when set, else the contract's order by count."""
    names = study.metric_names
    if names and all(n in MAXIMISE for n in names):
        return tuple(names)
    return DEFAULT_OBJECTIVES[: len(study.directions)]


def front_candidates(rs: Iterable[TrialRecord], objectives: Sequence[str] = ("top1", "gflops")) -> list[TrialRecord]:
    """What may be on the front: trained, within budget, every objective known; one per spec_id (the first)."""
    seen: set[str] = set()
    out = []
    for r in sorted(rs, key=lambda r: r.number):
        if r.status != Status.TRAINED or not r.feasible or any(r.objective(o) is None for o in objectives):
            continue
        key = r.spec_id or f"#{r.number}"
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def pareto_front(rs: Iterable[TrialRecord], objectives: Sequence[str] = ("top1", "gflops")) -> list[TrialRecord]:
    """The non-dominated candidates, cheapest first (ties: higher top-1, then lower trial number).

    Records with identical objective values are all kept (neither dominates the other), as Optuna's
    `best_trials` and optuna-dashboard keep them, so the three agree trial for trial.
    """
    candidates = front_candidates(rs, objectives)
    if not candidates:
        return []
    points = np.array([[r.objective(o) for o in objectives] for r in candidates], dtype=float)
    keep = moocore.is_nondominated(points, maximise=[MAXIMISE[o] for o in objectives], keep_weakly=True)
    front = [r for r, k in zip(candidates, keep, strict=True) if k]
    return sorted(front, key=_front_order)


def shown_front(rs: Iterable[TrialRecord], objectives: Sequence[str] = ("top1", "gflops"),
                gflops_tol: float = GFLOPS_TOL) -> list[TrialRecord]:
    """The front a user is shown: `pareto_front` less the members folded into another by `same_cost`."""
    front = pareto_front(rs, objectives)
    shown = same_cost(front, objectives, gflops_tol)
    return [r for r in front if r.number in shown]


def same_cost(front: Sequence[TrialRecord], objectives: Sequence[str] = ("top1", "gflops"),
              gflops_tol: float = GFLOPS_TOL) -> dict[int, list[int]]:
    """Shown front member -> the members of `front` folded into it (their costs within `gflops_tol` of its).

    Why: costs that differ by a rounding (an SE block's 0.001 GFLOPs) are no choice a user can make, yet the
    exact front lists every such network as its own member, however much less accurate. So members whose
    every cost (GFLOPs, and params when it is an objective) is within a relative `gflops_tol` compete on
    top-1 only. Taken greedily from the most accurate member down: it is shown, and each less accurate
    member whose costs are within the tolerance of its own (its cost <= theirs × (1 + gflops_tol)) is
    folded into it. So no two
    shown members are within the tolerance of each other, and a folded member is never more accurate than
    the one it is shown under. The records' values stay exact; 0 shows the exact front.
    """
    check_tolerance(gflops_tol)
    costs = [o for o in objectives if not MAXIMISE[o]]
    order = sorted(front, key=lambda r: (-(r.top1 or 0.0), *_front_order(r)))
    out: dict[int, list[int]] = {}
    placed: set[int] = set()
    for r in order:
        if r.number in placed:
            continue
        placed.add(r.number)
        out[r.number] = folded = []
        for m in order:
            if m.number not in placed and all(
                    (r.objective(c) or 0.0) <= (m.objective(c) or 0.0) * (1 + gflops_tol) for c in costs):
                placed.add(m.number)
                folded.append(m.number)
    return out


def check_tolerance(gflops_tol: float) -> None:
    if not (isinstance(gflops_tol, int | float) and 0 <= gflops_tol < 1):
        raise StudyError(f"--gflops-tol: {gflops_tol!r} must be in [0, 1), e.g. 0.02 (0 shows the exact front)")


def _front_order(r: TrialRecord) -> tuple[float, float, int]:
    return (r.gflops if r.gflops is not None else math.inf, -(r.top1 or 0.0), r.number)


def reference_point(rs: Iterable[TrialRecord], objectives: Sequence[str] = ("top1", "gflops")) -> tuple[float, ...]:
    """Hypervolume reference: 0 for maximised objectives, 1.1 × the largest candidate value for minimised."""
    candidates = front_candidates(rs, objectives)
    return tuple(
        0.0 if MAXIMISE[o] else 1.1 * max((r.objective(o) or 0.0 for r in candidates), default=0.0)
        for o in objectives
    )


def hypervolume(rs: Iterable[TrialRecord], reference: Sequence[float],
                objectives: Sequence[str] = ("top1", "gflops")) -> float:
    """The hypervolume the front of `rs` dominates up to `reference` (points beyond it count nothing)."""
    front = pareto_front(rs, objectives)
    maximise = [MAXIMISE[o] for o in objectives]
    inside = [
        [r.objective(o) for o in objectives] for r in front
        if all((v > ref) if up else (v < ref)
               for v, ref, up in zip((r.objective(o) for o in objectives), reference, maximise, strict=True))
    ]
    if not inside:
        return 0.0
    return float(moocore.hypervolume(np.array(inside, dtype=float), ref=list(reference), maximise=maximise))


def hypervolume_history(rs: Sequence[TrialRecord], reference: Sequence[float],
                        objectives: Sequence[str] = ("top1", "gflops")) -> list[dict[str, float]]:
    """Hypervolume of the front after each finished trial, by trial number."""
    done = sorted((r for r in rs if r.status not in (Status.QUEUED, Status.RUNNING)), key=lambda r: r.number)
    return [{"trial": r.number, "hypervolume": hypervolume(done[: i + 1], reference, objectives)}
            for i, r in enumerate(done)]


def pick(rs: Iterable[TrialRecord], max_gflops: float, min_top1: float | None = None) -> TrialRecord:
    """The most accurate front record within `max_gflops` (ties: fewer GFLOPs), else a one-line error."""
    front = pareto_front(rs)
    within = [r for r in front if r.gflops is not None and r.gflops <= max_gflops]
    if min_top1 is not None:
        within = [r for r in within if r.top1 is not None and r.top1 >= min_top1]
    if within:
        return max(within, key=lambda r: (r.top1 or 0.0, -(r.gflops or 0.0), -r.number))
    cheapest = min((r.gflops for r in front if r.gflops is not None), default=None)
    hint = "no trial is trained yet" if cheapest is None else f"the cheapest trained one needs {cheapest:.3f} GFLOPs"
    extra = f" and top-1 >= {min_top1}" if min_top1 is not None else ""
    fix = "raise --max-gflops" + (" or lower --min-top1" if min_top1 is not None else "")
    raise StudyError(f"no architecture within {max_gflops} GFLOPs{extra} ({hint}); {fix}")


#: What a failed trial without any stored reason says: every attnas path that fails a trial records why, so
#: only a write that could not reach the storage at all (or a trial failed by plain Optuna) leaves none.
UNRECORDED = ("no error recorded: its worker could not write one (its storage full or unreachable) or was not "
              "attnas; see that worker's log")


def failure_text(r: TrialRecord) -> str:
    """Why a failed or interrupted trial ended, on one line, and the trial that retried it."""
    text = " ".join((r.error or UNRECORDED).split())
    return text + (f"; retried as trial {r.retried_as}" if r.retried_as is not None else "")


def counts(rs: Iterable[TrialRecord]) -> dict[str, int]:
    """Records per status, in the Status enum's order (statuses with no trial left out)."""
    tally = {s.value: 0 for s in Status}
    for r in rs:
        tally[r.status.value] += 1
    return {k: v for k, v in tally.items() if v}


# -- how the study was made: stored once, read here ----------------------------------------------------------
#: Study user attr with what reads need of the data (classes, train and held-out images; studies.worker).
DATA_ATTR = "attnas.data"


def environments(study: optuna.Study) -> list[dict[str, Any]]:
    """Each worker's environment record (studies.environment, stored when it joined), by worker number."""
    from .environment import ENV_KEY

    attrs = study._storage.get_study_system_attrs(study._study_id)
    envs = [dict(v) for k, v in attrs.items() if k.startswith(ENV_KEY) and isinstance(v, Mapping)]
    return sorted(envs, key=lambda e: (e.get("worker") is None, e.get("worker") or 0))


def setups(envs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Workers grouped by setup (versions, commit, Python, device and its name, CPU instruction set, threads): one
    row per distinct setup with its workers and hosts, and the keys on which the rows differ (what may stop a
    rerun matching)."""
    from .environment import MATCHING

    keys = ("attnas", "commit", "dirty", "python", "torch", "torchvision", "optuna", "device", "device_name",
            "cpu_capability", "threads")
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for env in envs:
        key = tuple(repr(env.get(k)) for k in keys)
        row = rows.setdefault(key, {**{k: env.get(k) for k in keys}, "workers": [], "hosts": [],
                                    "started": env.get("started")})
        row["workers"].append(env.get("worker"))
        if env.get("host") not in row["hosts"]:
            row["hosts"].append(env.get("host"))
    listed = list(rows.values())
    differ = [k for k in keys if len({repr(r[k]) for r in listed}) > 1]
    return {"workers": len(envs), "rows": listed, "differ": differ,
            "mixed": [k for k in differ if k in MATCHING]}


def data_summary(study: optuna.Study) -> dict[str, Any] | None:
    """What the study stored of its data when a worker started (DATA_ATTR), or None for an older study."""
    stored = study.user_attrs.get(DATA_ATTR)
    return dict(stored) if isinstance(stored, Mapping) else None
