"""Reading a study back: trial rows, the Pareto front, the best architecture under a FLOP budget.

Pure data functions over an `optuna.Study` (no printing): the CLI renders them as tables, the report and
tests use them as they are. Objective values follow docs/INTERFACES.md: values[0] top-1, values[1] GFLOPs,
optional values[2] params in millions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from .config import StudyConfig, StudyError
from .constraints import feasible


@dataclass(frozen=True)
class Row:
    """One trial as the tables show it."""

    trial: int
    state: str
    name: str
    top1: float | None
    gflops: float | None
    params_m: float | None
    feasible: bool
    status: str
    spec: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def objective_values(config: StudyConfig, scores: dict[str, Any]) -> list[float]:
    """values[0] top-1 (0.0 when untrained: over budget or diverged), values[1] GFLOPs, [2] params (M)."""
    top1 = scores.get("top1")
    top1 = float(top1) if top1 is not None and math.isfinite(top1) else 0.0
    values = [top1, float(scores["gflops"])]
    if config.objectives.get("params"):
        values.append(float(scores["params"]) / 1e6)
    return values


def budget_constraint(config: StudyConfig, gflops: float) -> float:
    """gflops - budget (<= 0 feasible); -1.0 when there is no budget, so every trial sets the key."""
    budget = config.max_gflops
    return -1.0 if budget is None else float(gflops) - float(budget)


def row(trial: FrozenTrial) -> Row:
    scores = trial.user_attrs.get("scores") or {}
    params = scores.get("params")
    return Row(
        trial=trial.number,
        state=trial.state.name,
        name=trial.user_attrs.get("spec_name", "?"),
        top1=scores.get("top1"),
        gflops=scores.get("gflops"),
        params_m=params / 1e6 if params is not None else None,
        feasible=feasible(trial),
        status=scores.get("status", trial.user_attrs.get("error", "")) if scores or trial.user_attrs else "",
        spec=trial.user_attrs.get("spec"),
    )


def trial_rows(study: optuna.Study) -> list[Row]:
    return [row(t) for t in study.get_trials(deepcopy=False)]


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state, e.g. {'COMPLETE': 12, 'RUNNING': 3, 'WAITING': 5, 'FAIL': 1}."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def front_rows(study: optuna.Study) -> list[Row]:
    """The Pareto front of feasible, trained trials (top-1 up, GFLOPs down), by GFLOPs.

    Computed here rather than with study.best_trials so that over-budget and untrained trials (top-1
    recorded as 0.0) never appear on it, and reused copies of one spec appear once.
    """
    candidates: dict[str, Row] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        r = row(t)
        if r.feasible and r.top1 is not None and r.gflops is not None and r.status == "ok":
            key = t.user_attrs.get("spec_id", str(t.number))
            candidates.setdefault(key, r)
    rows = list(candidates.values())
    front = [r for r in rows if not any(_dominates(o, r) for o in rows)]
    return sorted(front, key=lambda r: (r.gflops, -(r.top1 or 0.0)))


def _dominates(a: Row, b: Row) -> bool:
    assert a.top1 is not None and b.top1 is not None and a.gflops is not None and b.gflops is not None
    no_worse = a.top1 >= b.top1 and a.gflops <= b.gflops
    return no_worse and (a.top1 > b.top1 or a.gflops < b.gflops)


def pick(study: optuna.Study, max_gflops: float, min_top1: float | None = None) -> Row:
    """The most accurate trained architecture within `max_gflops` (ties: fewer GFLOPs)."""
    rows = [r for r in front_rows(study) if r.gflops is not None and r.gflops <= max_gflops]
    if min_top1 is not None:
        rows = [r for r in rows if r.top1 is not None and r.top1 >= min_top1]
    if not rows:
        cheapest = min((r.gflops for r in front_rows(study) if r.gflops is not None), default=None)
        hint = f"the cheapest trained one needs {cheapest:.3f} GFLOPs" if cheapest else "no trial is trained yet"
        extra = f" and top-1 >= {min_top1}" if min_top1 is not None else ""
        raise StudyError(f"no architecture within {max_gflops} GFLOPs{extra} ({hint}); raise --max-gflops"
                         + (" or lower --min-top1" if min_top1 is not None else ""))
    return max(rows, key=lambda r: (r.top1 or 0.0, -(r.gflops or 0.0)))
