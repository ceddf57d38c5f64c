"""Transitional: reading a study moved to `studies.records` (records, pareto_front, pick, counts).

What is left here is only what modules owned by others still import (studies/run.py: the objective
values and the budget constraint the worker tells; studies/cli/run.py: per-state counts;
tests/studies/test_studies_run.py: front_rows). Each delegates to records; delete this file once
those importers use `studies.records` and the typed `Objectives` (issue 7 item 3).
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from .config import StudyConfig
from .records import TrialRecord, objectives_of, pareto_front, records


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


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per Optuna state, e.g. {'COMPLETE': 12, 'WAITING': 5} (per attnas status: records.counts)."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def front_rows(study: optuna.Study) -> list[TrialRecord]:
    """records.pareto_front of the study's records."""
    return pareto_front(records(study), objectives_of(study))
