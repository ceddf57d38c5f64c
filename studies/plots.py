"""Figures and HTML fragments for the study report: they draw `report.report_data`, they never compute.

Kept apart from `studies.report` so what is shown (and tested, and printed by `attnas report --json`) is
decided in one place and how it is drawn in another; plotly is imported only here. Kind names, their order and so
their colours come from the kind registry (`search_space.registry.kinds()`), plug-in kinds included.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from search_space.registry import kinds

TRAINED, INFEASIBLE, FRONT, OVER_BUDGET = "#1f77b4", "#b0b0b0", "#d62728", "#7f7f7f"
FIDELITY = "#e7298a"  # the proxy-vs-high-fidelity scatter (a colour no other figure uses)
STOPPED, RUNG = "#8c8c8c", "#444444"  # stopped trials' curves (grey, dashed) and the rung lines (dark, dotted)
PALETTE = ("#7f7f7f", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
HOVER = "%{text}<br>top-1 %{y:.4f}<br>%{x:.3f} GFLOPs<extra></extra>"


def kind_colour(kind: str) -> str:
    """A registered kind's colour: the palette in registry order (none grey, se blue, gc green, nl orange)."""
    names = list(kinds())
    return PALETTE[names.index(kind) % len(PALETTE)] if kind in names else "#000000"


def pareto_figure(data: dict[str, Any]) -> go.Figure:
    """Top-1 against GFLOPs of trained trials; the front as a red stepped line; axes = the trained span.

    Trials with seeds get whiskers of ± their seeds' standard error (`seed_se`); single runs get none.
    """
    points = data["points"]
    others = [p for p in points if p["feasible"] and not p["on_front"]]
    infeasible = [p for p in points if not p["feasible"]]
    seed_se = {p["number"]: p.get("seed_se") for p in points}
    front = data["front"]
    figure = go.Figure()
    for group, name, marker, mode in (
        (others, "trained", {"color": TRAINED, "size": 9, "symbol": "circle"}, "markers"),
        (infeasible, "trained, over budget", {"color": INFEASIBLE, "size": 10, "symbol": "x"}, "markers"),
        (front, "Pareto front", {"color": FRONT, "size": 13, "symbol": "diamond"}, "lines+markers"),
    ):
        figure.add_trace(go.Scatter(
            x=[p["gflops"] for p in group], y=[p["top1"] for p in group], customdata=[p["number"] for p in group],
            text=[f"#{p['number']} {p.get('name') or p.get('spec_name')}" for p in group], mode=mode,
            name=f"{name} ({len(group)})", marker=marker, hovertemplate=HOVER, line={"shape": "hv", "color": FRONT},
            error_y=seed_whiskers([seed_se.get(p["number"]) for p in group]),
        ))
    axes = data["axes"]
    figure.update_layout(title="Pareto front of trained trials: proxy top-1 (↑) vs GFLOPs (↓)", height=560,
                         xaxis={"title": "GFLOPs", "range": axes["gflops"]},
                         yaxis={"title": "proxy top-1", "range": axes["top1"]})
    return figure


def seed_whiskers(se: Sequence[float | None]) -> dict[str, Any] | None:
    """Error bars of ± se where a point has seeds (0 elsewhere); None when no point has any."""
    if not any(v is not None for v in se):
        return None
    return {"type": "data", "array": [v or 0.0 for v in se], "visible": True}


def fidelity_figure(fidelity: dict[str, Any]) -> go.Figure:
    """High-fidelity mean top-1 (± seed σ) against proxy top-1, one point per architecture, with y = x."""
    archs = fidelity["architectures"]
    x = [a["proxy_top1"] for a in archs]
    y = [a["mean_top1"] for a in archs]
    figure = go.Figure(go.Scatter(
        x=x, y=y, mode="markers", name="architectures", customdata=[a["trial"] for a in archs],
        text=[f"#{a['trial']} {a['name']}{' (proxy front)' if a['on_proxy_front'] else ''}" for a in archs],
        marker={"color": FIDELITY, "size": [14 if a["on_proxy_front"] else 10 for a in archs],
                "symbol": ["diamond" if a["on_proxy_front"] else "circle" for a in archs]},
        error_y={"type": "data", "array": [a["seed_sigma"] or 0.0 for a in archs], "visible": True,
                 "color": FIDELITY},
        hovertemplate="%{text}<br>proxy %{x:.4f}<br>high fidelity %{y:.4f}<extra></extra>",
    ))
    if x and y:
        low, high = min(x + y), max(x + y)
        figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="y = x",
                                    line={"color": OVER_BUDGET, "dash": "dot"}, hoverinfo="skip"))
    tau = fidelity["kendall_tau"]["value"]
    figure.update_layout(
        title=f"Proxy vs high-fidelity top-1 (whiskers: ± seed σ; Kendall τ "
              f"{'n/a' if tau is None else f'{tau:.2f}'})",
        xaxis_title="proxy top-1", yaxis_title="high-fidelity mean top-1", height=460,
    )
    return figure


def curves_figure(curves: dict[str, Any]) -> go.Figure:
    """Top-1 per epoch: trained trials solid blue, stopped ones dashed grey ending in an x at their rung.

    One trace per trial (hover names it), grouped in the legend by outcome so a click hides a group; the
    rungs are dotted vertical lines, so a stopped curve visibly ends on one.
    """
    figure = go.Figure()
    trained = [t for t in curves["trials"] if t["stopped_at"] is None]
    stopped = [t for t in curves["trials"] if t["stopped_at"] is not None]
    for group, name, line in ((trained, "trained to the end", {"color": TRAINED, "width": 1.5}),
                              (stopped, "stopped at a rung", {"color": STOPPED, "width": 1.5, "dash": "dash"})):
        for index, t in enumerate(group):
            figure.add_trace(curve_trace(t, f"{name} ({len(group)})", line, show_legend=index == 0))
    if stopped:
        figure.add_trace(go.Scatter(
            x=[t["epochs"][-1] for t in stopped], y=[t["top1"][-1] for t in stopped],
            customdata=[t["number"] for t in stopped], text=[f"#{t['number']} {t['name']}" for t in stopped],
            mode="markers", name="where it was stopped", legendgroup="stopped at a rung",
            marker={"color": STOPPED, "size": 10, "symbol": "x"},
            hovertemplate="%{text}<br>stopped at epoch %{x}, top-1 %{y:.4f}<extra></extra>",
        ))
    for epoch in curves["rungs"]:
        figure.add_vline(x=epoch, line={"color": RUNG, "dash": "dot", "width": 1},
                         annotation_text=f"rung {epoch}", annotation_position="top left")
    figure.update_layout(title="Learning curves: proxy top-1 after each epoch (dotted: MO-ASHA rungs)", height=480,
                         xaxis={"title": "epoch", "range": [0.5, max(curves["epochs"], 1) + 0.5]},
                         yaxis_title="proxy top-1")
    return figure


def curve_trace(t: dict[str, Any], group: str, line: dict[str, Any], show_legend: bool) -> go.Scatter:
    """One trial's curve in its outcome's legend group; only the group's first trace is listed, not every trial."""
    return go.Scatter(
        x=t["epochs"], y=t["top1"], customdata=[t["number"]] * len(t["epochs"]), mode="lines+markers", line=line,
        marker={"color": line["color"], "size": 4},  # a one-epoch curve is a point, not nothing
        name=group, legendgroup=group.split(" (")[0], showlegend=show_legend,
        text=[f"#{t['number']} {t['name']}"] * len(t["epochs"]),
        hovertemplate="%{text}<br>epoch %{x}<br>top-1 %{y:.4f}<extra></extra>",
    )


def over_budget_figure(data: dict[str, Any]) -> go.Figure:
    """A strip of the over-budget (never trained) architectures at their GFLOPs, with the budget line."""
    rows = data["over_budget"]
    figure = go.Figure(go.Scatter(
        x=[r["gflops"] for r in rows], y=[0] * len(rows), customdata=[r["number"] for r in rows],
        text=[f"#{r['number']} {r['name']}" for r in rows], mode="markers", name=f"over budget ({len(rows)})",
        marker={"color": OVER_BUDGET, "size": 11, "symbol": "line-ns-open", "line": {"width": 2}},
        hovertemplate="%{text}<br>%{x:.3f} GFLOPs, not trained<extra></extra>",
    ))
    if data.get("budget_gflops"):
        figure.add_vline(x=data["budget_gflops"], line={"color": FRONT, "dash": "dash"},
                         annotation_text=f"budget {data['budget_gflops']:g}")
    figure.update_layout(title=f"Over the FLOP budget, not trained ({len(rows)}): their GFLOPs", height=200,
                         xaxis_title="GFLOPs", yaxis={"visible": False}, showlegend=False)
    return figure


def hypervolume_figure(rows: Sequence[dict[str, Any]]) -> go.Figure:
    figure = go.Figure(go.Scatter(x=[r["trial"] for r in rows], y=[r["hypervolume"] for r in rows],
                                  mode="lines+markers", name="hypervolume"))
    figure.update_layout(title="Hypervolume of the front by trial", xaxis_title="trial",
                         yaxis_title="hypervolume (top-1 × GFLOPs)", height=420)
    return figure


def importance_figure(data: dict[str, Any]) -> go.Figure:
    """One horizontal bar group per objective, ± the spread over seeds; the title states the trial count."""
    rows = data["rows"]
    figure = go.Figure()
    for objective in dict.fromkeys(r["objective"] for r in rows):
        mine = [r for r in rows if r["objective"] == objective]
        figure.add_trace(go.Bar(
            y=[r["param"] for r in mine], x=[r["importance"] for r in mine], orientation="h", name=objective,
            error_x={"type": "data", "array": [r["std"] for r in mine]}, text=[f"n={r['trials']}" for r in mine],
        ))
    figure.update_layout(
        title=f"Parameter importances (fANOVA over {data['trials']} trained trials, ± std over seeds "
              f"{', '.join(map(str, data['seeds']))})",
        barmode="group", xaxis_title="importance (normalised)", height=180 + 28 * len(rows),
    )
    return figure


def stage_effect_figure(rows: Sequence[dict[str, Any]]) -> go.Figure:
    """Mean top-1 (left) and GFLOPs (right) of trained trials per stage and kind, ± std, labelled n=trials."""
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=("mean top-1 (trained trials)", "mean GFLOPs"))
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        for col, key in ((1, "top1"), (2, "gflops")):
            figure.add_trace(go.Bar(
                x=[r["stage"] for r in mine], y=[r[f"mean_{key}"] for r in mine], name=kind, legendgroup=kind,
                showlegend=col == 1, marker_color=kind_colour(kind), text=[f"n={r['trials']}" for r in mine],
                textposition="inside", error_y={"type": "data", "array": [r[f"std_{key}"] for r in mine]},
            ), row=1, col=col)
    figure.update_layout(title="Per-stage effect of each attention kind (bars: n = trials, whiskers: ± std)",
                         barmode="group", height=440)
    return figure


def figure_html(figure: go.Figure, div_id: str, include_js: bool = False) -> str:
    """A figure as a <div>; the first one on the page carries plotly.js inline (no CDN, works offline)."""
    return figure.to_html(full_html=False, include_plotlyjs=include_js, div_id=div_id)


def table_html(title: str, rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return f"<h2>{html.escape(title)}</h2><p>None.</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def page(title: str, sections: Sequence[str]) -> str:
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1300px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-family:monospace}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style>"
        "</head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


# -- how the study was run (studies.provenance.run_summary) -------------------------------------------------------
ENV_COLUMNS = ("workers", "hosts", "attnas", "commit", "python", "torch", "torchvision", "optuna", "device",
               "device_name", "cpu_capability", "threads", "started")


def run_section(run: dict[str, Any] | None) -> str:
    """"How this study was run": one line per fact, then the environment table (differing columns marked)."""
    if not run:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in run_lines(run))
    env = run["environment"]
    rows = [{c + (" ≠" if c in env["differ"] else ""): env_cell(row, c) for c in ENV_COLUMNS} for row in env["rows"]]
    mixed = (f"<p id='environment-mixed'><b>Workers differ in {html.escape(', '.join(env['mixed']))}</b>: "
             "a mixed setup may not reproduce this study.</p>") if env["mixed"] else ""
    table = table_html("Environment (one row per distinct setup; ≠ marks what differs)", rows) if rows else (
        "<h2>Environment</h2><p>Not recorded (the study's workers ran an attnas older than this record).</p>")
    return f"<h2 id='how-run'>How this study was run</h2><ul id='run-summary'>{items}</ul>{mixed}{table}"


def env_cell(row: dict[str, Any], column: str) -> str:
    """An environment table cell: worker numbers and hosts as lists, the commit short (+ when dirty)."""
    value = row.get(column)
    if column == "workers":
        return spans([v for v in value or () if isinstance(v, int)])
    if column == "hosts":
        hosts = [str(v) for v in value or ()]
        return ", ".join(hosts) if len(hosts) <= 3 else f"{', '.join(hosts[:2])}, … ({len(hosts)} hosts)"
    if column == "commit":
        return "" if not value else str(value)[:10] + ("+" if row.get("dirty") else "")
    return "" if value is None else str(value)


def spans(numbers: Sequence[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8' (a Slurm array's workers in a few characters)."""
    out: list[str] = []
    for n in sorted(set(numbers)):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def run_lines(run: dict[str, Any]) -> list[str]:
    """The section's facts as sentences; what the study does not know says so."""
    return [space_line(run["space"]), budget_line(run["budget"]), sampler_line(run["sampler"]),
            trials_line(run["counts"], run["planned"]), compute_line(run["compute"]),
            fidelity_line(run["fidelity"]), baseline_line(run["random_baseline"], run["sampler"])]


def space_line(space: dict[str, Any] | None) -> str:
    if not space:
        return "Search space: not stored with the study."
    settings = space["settings"]
    kinds_ = "; ".join(f"{s} {'/'.join(k)}" for s, k in (settings.get("kinds") or {}).items())
    rest = ", ".join(f"{k} {'/'.join(map(str, v))}" if isinstance(v, list) else f"{k} {v}"
                     for k, v in settings.items() if k != "kinds")
    return f"Search space: {space['size']:,} architectures ({kinds_}; {rest})."


def budget_line(b: dict[str, Any] | None) -> str:
    if not b:
        return "Budget per trial: not stored with the study."
    images = (f"{b['train_images']} training and {b['holdout_images']} held-out images of {b['classes']} classes"
              if b.get("train_images") is not None else
              f"{b['train_per_class'] or 'all'} training and {b['holdout_per_class']} held-out images per class")
    seeds = f"{b['seeds']} seed(s) from seed {b['seed']}"
    flops = f"FLOP budget {b['max_gflops']:g} GFLOPs" if b.get("max_gflops") else "no FLOP budget"
    return (f"Budget per trial: {b['epochs']} epoch(s) × {seeds}, {images} ({b['data']}) at {b['resolution']} px, "
            f"width × {b['width_mult']}, batch {b['batch_size']}; early stopping {b['early_stopping']}; GFLOPs "
            f"counted at {b['deploy_resolution']} px, {flops}.")


def sampler_line(s: dict[str, Any] | None) -> str:
    if not s:
        return "Sampler: not stored with the study."
    seed = "unseeded" if s["seed"] is None else f"seed {s['seed']} (worker 0; later workers derive theirs from it)"
    return f"Sampler: {s['name']}, {seed}; {s['workers']} worker(s) recorded."


def trials_line(counts: dict[str, int], planned: int | None) -> str:
    tally = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items()) or "none yet"
    return f"Trials: {tally}" + (f" (the study asks for {planned})." if planned else ".")


def compute_line(c: dict[str, Any]) -> str:
    return (f"Compute: {c['seconds']:.1f} s of training over {c['epochs']} epoch(s) in {c['trials']} trained "
            "trial(s), as recorded (all seeds counted; failed trials record none).")


def fidelity_line(f: dict[str, Any] | None) -> str:
    if not f:
        return "Proxy fidelity: not measured (`attnas fidelity` retrains the front at a higher fidelity)."
    tau = "n/a" if f["kendall_tau"] is None else f"{f['kendall_tau']:.2f}"
    rho = "n/a" if f["spearman_rho"] is None else f"{f['spearman_rho']:.2f}"
    return (f"Proxy fidelity: Kendall τ {tau}, Spearman ρ {rho} over {f['architectures']} architectures "
            f"(linked study {f['linked_study']}); {f['front_kept']} of {f['front_size']} front members kept.")


def baseline_line(b: dict[str, Any] | None, sampler: dict[str, Any] | None = None) -> str:
    if not b and sampler and sampler["name"] == "random":
        return "Random-sampler comparison: this study is the random sampler."
    if not b:
        return ("Random-sampler comparison: not run (run this study file with [sampler] name = \"random\" under "
                "another name in the same storage, then rebuild this report).")
    return (f"Random-sampler comparison: study {b['study']} ({b['trials']} trials) reaches hypervolume "
            f"{b['hypervolume']:.4g}; this study ({b['this_trials']} trials) {b['this_hypervolume']:.4g} "
            "(one reference point for both).")
