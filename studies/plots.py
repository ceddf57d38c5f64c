"""Figures and HTML fragments for the study report: they draw rows, they never compute them.

Kept apart from `studies.report` so what is shown (and tested) is decided in one place and how it is
drawn in another; plotly is imported only here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

FEASIBLE, INFEASIBLE, FRONT = "#1f77b4", "#b0b0b0", "#d62728"
KIND_COLOURS = {"none": "#7f7f7f", "se": "#1f77b4", "gc": "#2ca02c", "nl": "#ff7f0e"}
HOVER = "%{text}<br>top-1 %{y:.4f}<br>%{x:.3f} GFLOPs<extra></extra>"


def pareto_figure(points: Sequence[Any]) -> go.Figure:
    """Top-1 against GFLOPs: feasible dots, infeasible grey crosses, the front as a red stepped line."""
    feasible = [p for p in points if p.feasible and not p.on_front]
    infeasible = [p for p in points if not p.feasible]
    front = sorted((p for p in points if p.on_front), key=lambda p: p.gflops)
    figure = go.Figure()
    for group, name, marker, mode in (
        (feasible, "feasible", {"color": FEASIBLE, "size": 9, "symbol": "circle"}, "markers"),
        (infeasible, "infeasible (over budget)", {"color": INFEASIBLE, "size": 10, "symbol": "x"}, "markers"),
        (front, "Pareto front", {"color": FRONT, "size": 13, "symbol": "diamond"}, "lines+markers"),
    ):
        figure.add_trace(go.Scatter(
            x=[p.gflops for p in group], y=[p.top1 for p in group], text=[f"#{p.number} {p.name}" for p in group],
            mode=mode, name=f"{name} ({len(group)})", marker=marker, hovertemplate=HOVER,
            line={"shape": "hv", "color": FRONT},
        ))
    figure.update_layout(title="Pareto front: proxy top-1 (↑) vs GFLOPs (↓)", xaxis_title="GFLOPs",
                         yaxis_title="proxy top-1", height=560)
    return figure


def hypervolume_figure(rows: Sequence[dict[str, Any]]) -> go.Figure:
    figure = go.Figure(go.Scatter(x=[r["trial"] for r in rows], y=[r["hypervolume"] for r in rows],
                                  mode="lines+markers", name="hypervolume"))
    figure.update_layout(title="Hypervolume of the feasible front by trial", xaxis_title="trial",
                         yaxis_title="hypervolume (top-1 × GFLOPs)", height=420)
    return figure


def importance_figure(rows: Sequence[dict[str, Any]]) -> go.Figure:
    """One horizontal bar group per objective, parameters sorted by importance for the first objective."""
    figure = go.Figure()
    for objective in dict.fromkeys(r["objective"] for r in rows):
        mine = [r for r in rows if r["objective"] == objective]
        figure.add_trace(go.Bar(y=[r["param"] for r in mine], x=[r["importance"] for r in mine],
                                orientation="h", name=objective))
    figure.update_layout(title="Parameter importances (fANOVA, seed 0) per objective", barmode="group",
                         xaxis_title="importance (normalised)", height=180 + 28 * len(rows))
    return figure


def stage_effect_figure(rows: Sequence[dict[str, Any]]) -> go.Figure:
    """Mean top-1 (left) and mean GFLOPs (right) of trials with each block kind in each stage."""
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=("mean top-1", "mean GFLOPs"))
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        colour = KIND_COLOURS.get(kind)
        for col, key in ((1, "mean_top1"), (2, "mean_gflops")):
            figure.add_trace(go.Bar(
                x=[r["stage"] for r in mine], y=[r[key] for r in mine], name=kind, legendgroup=kind,
                showlegend=col == 1, marker_color=colour, text=[f"n={r['trials']}" for r in mine],
            ), row=1, col=col)
    figure.update_layout(title="Per-stage effect of each attention kind", barmode="group", height=440)
    return figure


def figure_html(figure: go.Figure, div_id: str, include_js: bool = False) -> str:
    """A figure as a <div>; the first one on the page carries plotly.js inline (no CDN, works offline)."""
    return figure.to_html(full_html=False, include_plotlyjs=include_js, div_id=div_id)


def table_html(title: str, rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return f"<h2>{html.escape(title)}</h2><p>No feasible trial yet.</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>" for row in rows
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
