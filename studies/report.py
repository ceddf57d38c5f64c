"""A study's report as one self-contained HTML page (plotly JS inline: it opens with no network).

Data functions here turn the study into rows; `studies.plots` only draws them. The Pareto front shown
is optuna's own (`Study.best_trials`, which skips infeasible trials when constraints are set), further
filtered by our feasibility reader so an infeasible trial can never be drawn as "on the front".
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from search_space.spec import STAGES
from studies import plots
from studies.constraints import feasible

IMPORTANCE_SEED = 0
#: Below this many completed trials fANOVA's numbers are noise (with one trial optuna returns them uniform).
MIN_IMPORTANCE_TRIALS = 5
OBJECTIVES = ("top1", "gflops")


@dataclass(frozen=True)
class TrialPoint:
    """One completed trial as the report shows it."""

    number: int
    name: str
    top1: float
    gflops: float
    params: int | None
    feasible: bool
    on_front: bool


def write_report(study: optuna.Study, path: Path) -> Path:
    """Write the report page for `study` to `path` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(study), encoding="utf-8")
    return path


def report_html(study: optuna.Study) -> str:
    points = trial_points(study)
    title = f"attnas study {html.escape(study.study_name)}"
    head = f"<h1>{title}</h1>\n<p>{html.escape(summary_line(study, points))}</p>"
    if not points:
        body = "<p><b>No completed trials yet</b>: nothing to plot. Run the study, then rebuild this report.</p>"
        return plots.page(title, [head, body])
    reference = reference_point(points)
    sections = [
        head,
        plots.figure_html(plots.pareto_figure(points), "pareto-plot", include_js=True),
        plots.table_html("Pareto front (feasible trials only)", front_rows(points)),
        plots.figure_html(plots.hypervolume_figure(hypervolume_rows(points, reference)), "hypervolume-plot"),
        f"<p>Hypervolume reference point: top-1 = {reference[0]:g}, GFLOPs = {reference[1]:.4g} "
        "(the largest GFLOPs observed × 1.1); only feasible trials count.</p>",
        importance_section(study),
        plots.figure_html(plots.stage_effect_figure(stage_effect_rows(study)), "stage-effect-plot"),
    ]
    return plots.page(title, sections)


def summary_line(study: optuna.Study, points: list[TrialPoint]) -> str:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    n_feasible = sum(p.feasible for p in points)
    return (
        f"{len(states)} trials: {len(points)} complete ({n_feasible} feasible), "
        f"{states.count(TrialState.PRUNED)} pruned, {states.count(TrialState.FAIL)} failed, "
        f"{states.count(TrialState.RUNNING)} running. Objectives: "
        f"{', '.join(d.name.lower() for d in study.directions)}."
    )


def trial_points(study: optuna.Study) -> list[TrialPoint]:
    """Completed trials with a top-1 and a GFLOPs value (from values, else from the recorded scores)."""
    front = {t.number for t in front_trials(study)}
    points = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        top1, gflops = objective_pair(trial)
        if top1 is None or gflops is None:
            continue
        ok = feasible(trial)
        points.append(TrialPoint(trial.number, spec_name(trial), top1, gflops, param_count(trial), ok,
                                 ok and trial.number in front))
    return points


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """optuna's Pareto front (constraint-aware in optuna 5), minus anything our reader calls infeasible."""
    best = study.best_trials if len(study.directions) > 1 else best_single(study)
    return [t for t in best if feasible(t)]


def best_single(study: optuna.Study) -> list[FrozenTrial]:
    """A single-objective study's 'front' is its best trial (none when no trial completed)."""
    try:
        return [study.best_trial]
    except ValueError:
        return []


def objective_pair(trial: FrozenTrial) -> tuple[float | None, float | None]:
    values = trial.values or []
    scores = trial.user_attrs.get("scores") or {}
    top1 = values[0] if values else scores.get("top1")
    gflops = values[1] if len(values) > 1 else scores.get("gflops")
    return top1, gflops


def spec_name(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get("spec_name") or f"trial {trial.number}")


def param_count(trial: FrozenTrial) -> int | None:
    """Parameters of the architecture: from the recorded scores, else the optional third objective (M)."""
    scores = trial.user_attrs.get("scores") or {}
    if scores.get("params") is not None:
        return int(scores["params"])
    values = trial.values or []
    return int(values[2] * 1e6) if len(values) > 2 else None


def front_rows(points: list[TrialPoint]) -> list[dict[str, Any]]:
    """The front's table, cheapest first."""
    front = sorted((p for p in points if p.on_front), key=lambda p: (p.gflops, -p.top1))
    return [
        {"name": p.name, "top-1": f"{p.top1:.4f}", "GFLOPs": f"{p.gflops:.3f}",
         "params (M)": "" if p.params is None else f"{p.params / 1e6:.2f}", "trial": p.number}
        for p in front
    ]


def reference_point(points: list[TrialPoint]) -> tuple[float, float]:
    """Hypervolume reference: top-1 = 0 (any accuracy counts), GFLOPs = 1.1 × the largest observed."""
    return 0.0, max(p.gflops for p in points) * 1.1


def hypervolume_rows(points: list[TrialPoint], reference: tuple[float, float]) -> list[dict[str, float]]:
    """Hypervolume of the feasible front after each completed trial (by trial number)."""
    from optuna._hypervolume import compute_hypervolume

    ref = np.array([-reference[0], reference[1]])
    rows, losses = [], []
    for p in sorted(points, key=lambda p: p.number):
        if p.feasible and -p.top1 < ref[0] and p.gflops < ref[1]:
            losses.append([-p.top1, p.gflops])
        volume = float(compute_hypervolume(np.array(losses), ref)) if losses else 0.0
        rows.append({"trial": p.number, "hypervolume": volume})
    return rows


def importance_rows(study: optuna.Study) -> tuple[list[dict[str, Any]], str | None]:
    """fANOVA importances (fixed seed) of each parameter for each objective, or why there are none."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n_complete < MIN_IMPORTANCE_TRIALS:
        return [], f"Parameter importances need {MIN_IMPORTANCE_TRIALS}+ completed trials ({n_complete} so far)."
    rows = []
    for index, objective in enumerate(OBJECTIVES[: len(study.directions)]):
        try:
            importances = get_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=IMPORTANCE_SEED),
                target=lambda t, i=index: t.values[i],
            )
        except (ValueError, RuntimeError) as exc:
            return [], f"Parameter importances need more trials ({exc})."
        rows += [{"objective": objective, "param": k, "importance": float(v)} for k, v in importances.items()]
    if not rows:
        return [], "Parameter importances need at least two completed trials with varying parameters."
    return rows, None


def importance_section(study: optuna.Study) -> str:
    rows, why_not = importance_rows(study)
    if why_not:
        return f"<h2>Parameter importances</h2><p>{html.escape(why_not)}</p>"
    return plots.figure_html(plots.importance_figure(rows), "importance-plot")


def stage_effect_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Mean top-1 and GFLOPs of completed trials per (stage, attention kind), from params `cN.kind`."""
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        top1, gflops = objective_pair(trial)
        if top1 is None or gflops is None:
            continue
        for stage in STAGES:
            kind = trial.params.get(f"{stage}.kind")
            if kind is not None:
                groups.setdefault((stage, str(kind)), []).append((top1, gflops))
    return [
        {"stage": stage, "kind": kind, "trials": len(pairs),
         "mean_top1": fmean(p[0] for p in pairs), "mean_gflops": fmean(p[1] for p in pairs)}
        for (stage, kind), pairs in sorted(groups.items())
        if all(math.isfinite(v) for pair in pairs for v in pair)
    ]
