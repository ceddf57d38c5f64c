"""What a study optimises, in one value: `Objectives` owns the directions, the metric names, the FLOP budget,
the feasibility decision, the constraint values and the objective values told to Optuna.

No other module compares GFLOPs to the budget: the worker asks `feasible` before any training and calls
`objectives.evaluate` without a budget, so the one decision is made here (see docs/CONTRACT.md for the
values and constraints every trial carries).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as typed

from .constraints import set_constraints

if TYPE_CHECKING:
    import optuna

BUDGET = "gflops_budget"  # gflops - max_gflops (<= 0 feasible); -1.0 without a budget
ELIGIBLE = "front_eligible"  # -1.0 while a trial may reach the front; +1.0 once it ended untrained
NO_BUDGET = -1.0


@typed(frozen=True, config=ConfigDict(extra="forbid"))
class Objectives:
    """values[0] = proxy top-1 (max), values[1] = GFLOPs at `resolution` (min), values[2] = params (M, min)."""

    params: bool = False
    resolution: int = Field(default=224, ge=16, le=2048)
    max_gflops: float | None = Field(default=None, gt=0)

    @property
    def directions(self) -> list[str]:
        return ["maximize", "minimize"] + (["minimize"] if self.params else [])

    @property
    def names(self) -> list[str]:
        """The metric names optuna-dashboard shows instead of "Objective 0/1"."""
        return ["top1", "gflops"] + (["params_m"] if self.params else [])

    def feasible(self, gflops: float) -> bool:
        """True when a spec of `gflops` may be trained: the one budget decision of attnas."""
        return self.max_gflops is None or float(gflops) <= self.max_gflops

    def constraints(self, gflops: float, *, eligible: bool = True) -> dict[str, float]:
        """The trial's constraint values (each <= 0 feasible), as Optuna and optuna-dashboard read them."""
        budget = NO_BUDGET if self.max_gflops is None else float(gflops) - self.max_gflops
        return {BUDGET: budget, ELIGIBLE: -1.0 if eligible else 1.0}

    def values(self, top1: float | None, gflops: float, params: int) -> list[float]:
        """What Optuna is told: top-1 (0.0 when not trained or not finite), GFLOPs, and params in millions."""
        top = float(top1) if top1 is not None and math.isfinite(top1) else 0.0
        return [top, float(gflops)] + ([params / 1e6] if self.params else [])

    def name_metrics(self, study: optuna.Study) -> None:
        """Set the metric names on a study (once, at creation)."""
        from optuna.exceptions import ExperimentalWarning  # lazy: studies.config is imported at CLI start

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            if study.metric_names != self.names:
                study.set_metric_names(self.names)

    def constrain(self, trial: optuna.Trial, gflops: float, *, eligible: bool = True) -> None:
        """Write the constraints of a fresh trial (before any training)."""
        set_constraints(trial, self.constraints(gflops, eligible=eligible))


def mark_ineligible(trial: optuna.Trial) -> None:
    """Turn `front_eligible` to +1.0 on a trial that ended without a real top-1 (diverged, stopped)."""
    set_constraints(trial, {ELIGIBLE: 1.0})
