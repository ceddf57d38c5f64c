"""A study's report: `report_data` computes everything the page shows; `studies.plots` only draws it.

`attnas report --json` prints `report_data` as it is, so scripts read exactly what the page draws.
Only trained trials (records.Status.TRAINED) make the Pareto plot, its axes, the per-stage effects and
the parameter importances: over-budget trials are drawn apart on a strip at their GFLOPs, and trials
that diverged, failed or were reused never count as a top-1 of 0. Front members carry their noise
(`studies.fidelity.front_noise`: the seed σ pooled over trials with seeds, over √ each member's runs, else the
held-out set's binomial error) and which other members they cannot be told apart from; the front is the
shown one (`records.shown_front`: members within `gflops_tol` of a more accurate one's cost folded into it,
listed as its `same_cost`); a study measured by `attnas
fidelity` gains its proxy-vs-high-fidelity section (the parent study's `attnas.fidelity` user attr).
Trials MO-ASHA stopped (studies.stopping) never reach the front, so the learning-curves section is
where they show: their top-1 per epoch up to the rung that stopped them, beside the trials trained to
the end, with the rung epochs marked.
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

import optuna

from search_space.registry import kinds
from search_space.spec import STAGES
from studies import plots, stopping
from studies.config import StudyConfig
from studies.fidelity import STUDY_ATTR, front_noise, ranking_text, study_holdout_images
from studies.provenance import random_baseline, run_summary
from studies.records import (
    GFLOPS_TOL,
    MAXIMISE,
    Status,
    TrialRecord,
    counts,
    data_summary,
    environments,
    front_candidates,
    hypervolume_history,
    objectives_of,
    pareto_front,
    records,
    reference_point,
    same_cost,
)

IMPORTANCE_SEEDS = (0, 1, 2)
#: Below this many trained trials fANOVA's numbers are noise (with one trial optuna returns them uniform).
MIN_IMPORTANCE_TRIALS = 5
#: Padding around the trained trials' range on the Pareto plot's axes (a fraction of the range).
AXIS_PAD = 0.06


def write_report(study: optuna.Study, path: Path, budget: float | None = None,
                 gflops_tol: float = GFLOPS_TOL) -> Path:
    """Write the report page for `study` to `path` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(study_report_data(study, budget, gflops_tol)), encoding="utf-8")
    return path


def study_report_data(study: optuna.Study, budget: float | None = None, gflops_tol: float = GFLOPS_TOL
                      ) -> dict[str, Any]:
    """`report_data` for a stored study; the budget defaults to the one in its stored study file."""
    from studies.storage import stored_config
    from studies.trunks import cost_rows

    config = stored_config(study)
    if budget is None:
        budget = config.max_gflops if config is not None else None
    rs = records(study)
    fidelity = study.user_attrs.get(STUDY_ATTR)
    run = run_summary(rs, config, environments(study), data_summary(study), fidelity, random_baseline(study, config))
    data = report_data(rs, objectives=objectives_of(study), study_name=study.study_name, budget=budget,
                       holdout=study_holdout_images(study), fidelity=fidelity,
                       rungs=configured_rungs(config), rung_records=stopping.rung_records(study),
                       schedule_epochs=config.schedule.epochs if config is not None else None, run=run,
                       gflops_tol=gflops_tol)
    return {**data, "trunks": cost_rows(study, rs)}  # shared trunks' cost, amortised over their trials


def configured_rungs(config: StudyConfig | None) -> tuple[int, ...]:
    """The rung epochs the study's file asks for: the same `Rungs` the workers stop trials at."""
    if config is None or config.early_stopping.kind != "moasha":
        return ()
    rule = config.early_stopping
    return stopping.Rungs(config.schedule.epochs, rule.eta, rule.min_epochs).levels


def report_data(rs: Sequence[TrialRecord], objectives: Sequence[str] = ("top1", "gflops"), study_name: str = "",
                budget: float | None = None, holdout: int | None = None,
                fidelity: dict[str, Any] | None = None, rungs: Sequence[int] = (),
                rung_records: Sequence[stopping.RungRecord] = (),
                schedule_epochs: int | None = None, run: dict[str, Any] | None = None,
                gflops_tol: float = GFLOPS_TOL) -> dict[str, Any]:
    """Everything the report shows, JSON-ready (records as `TrialRecord.to_dict()`).

    `holdout` is the held-out set's size (its binomial error marks single-run front members' noise);
    `fidelity` is what `attnas fidelity` stored for the study, or None. `rungs`, `rung_records` and
    `schedule_epochs` place the learning curves: where MO-ASHA judges, where each stopped trial was
    stopped, and how long a full run is. `run` is studies.provenance.run_summary (how the study was run);
    without it, the part the records alone tell (outcomes, compute). `gflops_tol` folds front members of
    (nearly) the same cost (`records.same_cost`); 0 shows the exact front.
    """
    objectives = tuple(objectives)
    exact = pareto_front(rs, objectives)
    folded = same_cost(exact, objectives, gflops_tol)
    front = [r for r in exact if r.number in folded]
    on_front = {r.number for r in front}
    noise = front_noise(front, holdout, front_candidates(rs, objectives))
    trained = [r for r in rs if r.status == Status.TRAINED and r.top1 is not None and r.gflops is not None]
    reference = reference_point(rs, objectives)
    history = hypervolume_history(rs, reference, objectives)
    return {
        "study": study_name,
        "objectives": list(objectives),
        "budget_gflops": budget,
        "counts": counts(rs),
        "front": [{**r.to_dict(), "se": noise["se"][r.number], "within_noise_of": noise["ties"][r.number],
                   "same_cost": folded[r.number]} for r in front],
        "front_noise": {"source": noise["source"], "holdout_images": holdout, "pairs": noise["pairs"],
                        "seed_sigma": noise["seed_sigma"], "gflops_tol": gflops_tol},
        "points": [point(r, r.number in on_front) for r in trained],
        "axes": axes(trained),
        "over_budget": [{"number": r.number, "name": r.name, "gflops": r.gflops}
                        for r in rs if r.status == Status.OVER_BUDGET and r.gflops is not None],
        "not_trained": [{"number": r.number, "status": r.status.value, "name": r.name, "error": r.error,
                         "reused_from": r.reused_from}
                        for r in rs if r.status in (Status.DIVERGED, Status.STOPPED, Status.FAILED,
                                                    Status.INTERRUPTED, Status.REUSED)],
        "stage_effects": stage_effects(trained),
        "importances": importances(trained, objectives),
        "hypervolume": {"reference": list(reference), "history": history,
                        "final": history[-1]["hypervolume"] if history else 0.0},
        "fidelity": fidelity,
        "curves": learning_curves(rs, rungs, rung_records, schedule_epochs),
        "run": run if run is not None else run_summary(rs, None, ()),
    }


def point(r: TrialRecord, on_front: bool) -> dict[str, Any]:
    """One trained trial of the Pareto plot; `seed_se` is its seeds' standard error (None with one run)."""
    seed_se = stdev(r.seeds) / len(r.seeds) ** 0.5 if len(r.seeds) >= 2 else None
    return {"number": r.number, "name": r.name, "top1": r.top1, "gflops": r.gflops, "params_m": r.params_m,
            "feasible": r.feasible, "on_front": on_front, "seed_se": seed_se}


def learning_curves(rs: Sequence[TrialRecord], rungs: Sequence[int], rung_records: Sequence[stopping.RungRecord],
                    schedule_epochs: int | None) -> dict[str, Any]:
    """Top-1 per epoch of the trained and stopped trials, the rung epochs, and how many stopped at each.

    Without configured rungs (no stored study file, or early stopping switched off on resume) the epochs
    that hold rung records are the rungs, so stops already made are still placed.
    """
    stops = stopping.stopped(rung_records)
    shown = [r for r in rs if r.status in (Status.TRAINED, Status.STOPPED) and r.curve]
    trials = [curve_row(r, stopped_at(r, stops)) for r in shown]
    return {
        "epochs": schedule_epochs or max((len(r.curve) for r in shown), default=0),
        "rungs": list(rungs) or sorted({r.epoch for r in rung_records}),
        "trials": trials,
        "stopped": stop_counts([stopped_at(r, stops) for r in rs if r.status == Status.STOPPED]),
    }


def stopped_at(r: TrialRecord, stops: dict[int, stopping.RungRecord]) -> int | None:
    """The rung epoch a stopped trial ended at (None for any other trial).

    Its own rung record when it has one; a retried run takes its earlier attempt's decision and writes
    none, so else the last epoch it trained, which is where the worker stopped it.
    """
    if r.status != Status.STOPPED:
        return None
    if r.number in stops:
        return stops[r.number].epoch
    return len(r.curve) or r.epochs or None


def curve_row(r: TrialRecord, stop: int | None) -> dict[str, Any]:
    """One trial's curve: epoch i holds the top-1 after it (history spans resumes, so epoch 1 is the first)."""
    return {"number": r.number, "name": r.name, "status": r.status.value, "gflops": r.gflops,
            "epochs": list(range(1, len(r.curve) + 1)),
            "top1": [v if math.isfinite(v) else None for v in r.curve], "stopped_at": stop}


def stop_counts(epochs: Sequence[int | None]) -> list[dict[str, Any]]:
    """Stopped trials per rung epoch, earliest first; None (no record, no curve) counts last."""
    tally: dict[int | None, int] = {}
    for epoch in epochs:
        tally[epoch] = tally.get(epoch, 0) + 1
    order = sorted(tally, key=lambda e: (e is None, e or 0))
    return [{"epoch": e, "trials": tally[e]} for e in order]


def axes(trained: Sequence[TrialRecord]) -> dict[str, list[float] | None]:
    """Axis ranges of the Pareto plot: the trained trials' span, padded (None when nothing is trained)."""
    def span(values: list[float]) -> list[float] | None:
        if not values:
            return None
        low, high = min(values), max(values)
        pad = AXIS_PAD * (high - low) if high > low else max(abs(high) * 0.05, 0.01)
        return [low - pad, high + pad]

    return {"gflops": span([r.gflops for r in trained if r.gflops is not None]),
            "top1": span([r.top1 for r in trained if r.top1 is not None])}


def kind_of(r: TrialRecord, stage: str) -> str | None:
    """The block kind of `stage` in this record's spec (else the sampler's `cN.kind` choice)."""
    if r.spec is not None:
        return r.spec.stage(stage).kind
    choice = r.choices.get(f"{stage}.kind")
    return None if choice is None else str(choice)


def stage_effects(trained: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """Per (stage, kind): how many trained trials, mean and standard deviation of top-1 and GFLOPs."""
    rows = []
    order = {k: i for i, k in enumerate(kinds())}  # the registry's order
    for stage in STAGES:
        groups: dict[str, list[TrialRecord]] = {}
        for r in trained:
            kind = kind_of(r, stage)
            if kind is not None:
                groups.setdefault(kind, []).append(r)
        for kind in sorted(groups, key=lambda k: (order.get(k, len(order)), k)):
            group = groups[kind]
            top1 = [r.top1 for r in group if r.top1 is not None]
            gflops = [r.gflops for r in group if r.gflops is not None]
            rows.append({"stage": stage, "kind": kind, "trials": len(group),
                         "mean_top1": fmean(top1), "std_top1": stdev(top1) if len(top1) > 1 else 0.0,
                         "mean_gflops": fmean(gflops), "std_gflops": stdev(gflops) if len(gflops) > 1 else 0.0})
    return rows


def importances(trained: Sequence[TrialRecord], objectives: Sequence[str]) -> dict[str, Any]:
    """fANOVA importance of each sampled parameter per objective, over trained trials only.

    Mean and standard deviation over a few fixed seeds (the forest's own spread), so a bar says how
    sure it is; `trials` is how many trained trials it stands on; `note` says why there are none.
    """
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    out: dict[str, Any] = {"trials": len(trained), "seeds": list(IMPORTANCE_SEEDS), "rows": [], "note": None}
    if len(trained) < MIN_IMPORTANCE_TRIALS:
        out["note"] = (f"Parameter importances need {MIN_IMPORTANCE_TRIALS}+ trained trials "
                       f"({len(trained)} so far).")
        return out
    study = trained_study(trained, objectives)
    rows = []
    for index, objective in enumerate(objectives):
        try:
            runs = [get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed),
                                          target=lambda t, i=index: t.values[i]) for seed in IMPORTANCE_SEEDS]
        except (ValueError, RuntimeError) as exc:
            out["note"] = f"Parameter importances need more varied trained trials ({exc})."
            return out
        for param in runs[0]:
            values = [float(run[param]) for run in runs]
            rows.append({"objective": objective, "param": param, "importance": fmean(values),
                         "std": stdev(values) if len(values) > 1 else 0.0, "trials": len(trained)})
    if not rows:
        out["note"] = "Parameter importances need trained trials whose parameters vary."
    out["rows"] = rows
    return out


def trained_study(trained: Sequence[TrialRecord], objectives: Sequence[str]) -> optuna.Study:
    """An in-memory study of just the trained trials (params, distributions, objective values)."""
    from optuna.distributions import json_to_distribution

    directions = ["maximize" if MAXIMISE[o] else "minimize" for o in objectives]
    study = optuna.create_study(directions=directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.add_trials([
            optuna.trial.create_trial(
                params=dict(r.choices),
                distributions={k: json_to_distribution(v) for k, v in r.distributions.items()},
                values=[float(r.objective(o) or 0.0) for o in objectives],
            )
            for r in trained if r.choices
        ])
    return study


# -- the page ---------------------------------------------------------------------------------------------------
def report_html(data: dict[str, Any]) -> str:
    title = f"attnas study {html.escape(data['study'])}"
    head = f"<h1>{title}</h1>\n<p>{html.escape(summary_line(data))}</p>"
    if not data["points"]:
        body = "<p><b>No trained trials yet</b>: nothing to plot. Run the study, then rebuild this report.</p>"
        sections = [head, body, plots.table_html("Trials that did not train", data["not_trained"]),
                    curves_section(data["curves"], include_js=True), plots.run_section(data.get("run"))]
        return plots.page(title, [s for s in sections if s])
    reference = data["hypervolume"]["reference"]
    sections = [
        head,
        plots.figure_html(plots.pareto_figure(data), "pareto-plot", include_js=True),
        plots.figure_html(plots.over_budget_figure(data), "over-budget-plot") if data["over_budget"] else "",
        plots.table_html("Pareto front (trained, within budget, one per architecture)", front_rows(data)),
        noise_note(data),
        fidelity_section(data["fidelity"]),
        plots.table_html("Trials that did not train", data["not_trained"]),
        curves_section(data["curves"]),
        plots.figure_html(plots.hypervolume_figure(data["hypervolume"]["history"]), "hypervolume-plot"),
        f"<p>Hypervolume reference point: {html.escape(reference_text(data['objectives'], reference))} "
        "(0 for top-1, 1.1 × the largest trained value otherwise); only the front's trained trials count.</p>",
        importance_section(data["importances"]),
        plots.figure_html(plots.stage_effect_figure(data["stage_effects"]), "stage-effect-plot"),
        plots.run_section(data.get("run")),
    ]
    return plots.page(title, [s for s in sections if s])


def reference_text(objectives: Sequence[str], reference: Sequence[float]) -> str:
    return ", ".join(f"{o} = {v:.4g}" for o, v in zip(objectives, reference, strict=True))


def summary_line(data: dict[str, Any]) -> str:
    from studies.trunks import cost_line

    tally = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in data["counts"].items()) or "no trials"
    budget = f"; FLOP budget {data['budget_gflops']:g} GFLOPs" if data.get("budget_gflops") else ""
    trunks = "".join(f" {cost_line(row)}." for row in data.get("trunks") or ())
    return (f"{sum(data['counts'].values())} trials: {tally}. Objectives: {', '.join(data['objectives'])}{budget}."
            f"{trunks}")


def front_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The front's table, cheapest first; `± se` and the members each one is within noise of."""
    return [
        {"name": r["spec_name"] or f"trial {r['number']}", "top-1": f"{r['top1']:.4f}",
         "± se": "" if r.get("se") is None else f"{r['se']:.4f}", "GFLOPs": f"{r['gflops']:.3f}",
         "params (M)": "" if r["params_m"] is None else f"{r['params_m']:.2f}",
         "within noise of": ", ".join(f"#{n}" for n in r.get("within_noise_of") or ()),
         "same cost as": ", ".join(f"#{n}" for n in r.get("same_cost") or ()), "trial": r["number"]}
        for r in data["front"]
    ]


def noise_note(data: dict[str, Any]) -> str:
    """One sentence saying where the front's ± comes from and which members tie."""
    noise = data["front_noise"]
    if noise["source"] == "seeds":
        where = "± is the seed σ pooled over the trials with 2+ seeds, over √ each member's seeds"
    elif noise["holdout_images"]:
        where = (f"± is the binomial error of one run on the {noise['holdout_images']} held-out images "
                 "(no seeds: seed noise, often larger, is not in it)")
    else:
        return "<p>The held-out set's size is unknown here, so the front's noise is not shown.</p>"
    pairs = "; ".join(f"#{a} ~ #{b}" for a, b in noise["pairs"]) or "none"
    tol = noise.get("gflops_tol") or 0
    folded = (f" A member within {100 * tol:g}% of a more accurate one's GFLOPs is folded into it ('same cost "
              "as'); the stored values stay exact." if tol else "")
    return (f"<p id='front-noise'>{html.escape(where)}. Members whose top-1 differ by less than 1.96 × the "
            f"combined error cannot be told apart: {html.escape(pairs)}.{html.escape(folded)}</p>")


def fidelity_section(fidelity: dict[str, Any] | None) -> str:
    """`attnas fidelity`'s numbers: τ/ρ with intervals, seed σ, front retention, ties, and the scatter."""
    if not fidelity:
        return ""

    def interval(stat: dict[str, float | None]) -> str:
        value, low, high = (stat.get(k) for k in ("value", "low", "high"))
        text = "n/a" if value is None else f"{value:.2f}"
        return text + ("" if low is None or high is None else f" (95% CI {low:.2f} to {high:.2f})")

    sigma = fidelity.get("seed_sigma")
    ratio = fidelity.get("spread_to_noise")
    ties = "; ".join(f"{a} ~ {b}" for a, b in fidelity.get("indistinguishable") or ()) or "none"
    settings = fidelity.get("settings") or {}
    ranking = ranking_text(fidelity)  # empty for numbers stored before attnas reported it
    text = (
        f"Proxy vs high fidelity (linked study {fidelity['linked_study']}, {len(fidelity['architectures'])} "
        f"architectures, {settings.get('seeds')} seed(s), epochs × {settings.get('epochs_factor')}): "
        f"Kendall τ {interval(fidelity['kendall_tau'])}, Spearman ρ {interval(fidelity['spearman_rho'])}. "
        f"Seed σ {'n/a' if sigma is None else f'{100 * sigma:.2f} points'}; spread between architectures / seed σ "
        f"{'n/a' if ratio is None else f'{ratio:.2f}'}. Proxy front members still on the high-fidelity front: "
        f"{fidelity['front_kept']} of {fidelity['front_size']}. Indistinguishable within noise: {ties}."
        + (f" {ranking[:1].upper()}{ranking[1:]}." if ranking else "")
    )
    rows = [{"name": a["name"], "trial": a["trial"], "proxy top-1": f"{a['proxy_top1']:.4f}",
             "high-fidelity mean": f"{a['mean_top1']:.4f}",
             "seed σ": "" if a["seed_sigma"] is None else f"{a['seed_sigma']:.4f}",
             "seeds": ", ".join(f"{v:.4f}" for v in a["runs"]), "proxy front": "yes" if a["on_proxy_front"] else ""}
            for a in fidelity["architectures"]]
    return "\n".join([
        "<h2 id='fidelity'>Proxy fidelity</h2>", f"<p id='fidelity-summary'>{html.escape(text)}</p>",
        plots.figure_html(plots.fidelity_figure(fidelity), "fidelity-plot"),
        plots.table_html("Architectures retrained at the higher fidelity", rows),
    ])


def curves_section(curves: dict[str, Any], include_js: bool = False) -> str:
    """The learning curves with one line on the stops; nothing for a study with no curves yet."""
    if not curves["trials"]:
        return ""
    return "\n".join([
        "<h2 id='learning-curves'>Learning curves</h2>",
        f"<p id='stopping-summary'>{html.escape(stopping_line(curves))}</p>",
        plots.figure_html(plots.curves_figure(curves), "curves-plot", include_js=include_js),
    ])


def stopping_line(curves: dict[str, Any]) -> str:
    """How many trials were stopped at which rung, in one sentence."""
    rungs = f"rungs at epochs {', '.join(map(str, curves['rungs']))}" if curves["rungs"] else "no rungs"
    full = f"{rungs}; a full run is {curves['epochs']} epochs"
    stopped = curves["stopped"]
    if not stopped:
        return f"No trial was stopped early ({full})."
    total = sum(s["trials"] for s in stopped)
    where = ", ".join(f"{s['trials']} at " + (f"epoch {s['epoch']}" if s["epoch"] is not None else "an unknown rung")
                      for s in stopped)
    return f"{total} trial{'s' if total != 1 else ''} stopped early by MO-ASHA: {where} ({full})."


def importance_section(data: dict[str, Any]) -> str:
    if data["note"]:
        return f"<h2>Parameter importances</h2><p>{html.escape(data['note'])}</p>"
    return plots.figure_html(plots.importance_figure(data), "importance-plot")
