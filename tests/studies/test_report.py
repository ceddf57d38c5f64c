"""The HTML report: right rows from a contract-shaped study, and a page that really renders in Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest

from studies.constraints import feasible, set_constraints
from studies.report import (
    front_rows,
    hypervolume_rows,
    importance_rows,
    reference_point,
    stage_effect_rows,
    trial_points,
    write_report,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FRONT_RED, INFEASIBLE_GREY = (214, 39, 40), (176, 176, 176)


@pytest.fixture(scope="module")
def study(synthetic) -> optuna.Study:
    return synthetic.make_study(synthetic.records(24, seed=1))


def test_front_is_optunas_feasible_front_and_never_holds_infeasible_trials(study: optuna.Study) -> None:
    points = trial_points(study)
    assert len(points) == 24 and any(not p.feasible for p in points)
    assert {p.number for p in points if p.on_front} == {t.number for t in study.best_trials}
    assert all(p.feasible for p in points if p.on_front)
    # Without constraints the most accurate (over-budget) trial would be on the front; it is not shown there.
    best_top1 = max(points, key=lambda p: p.top1)
    assert not best_top1.feasible and not best_top1.on_front
    rows = front_rows(points)
    assert [r["trial"] for r in rows] == sorted((p.number for p in points if p.on_front),
                                                key=lambda n: study.trials[n].values[1])
    assert rows[0]["name"] == study.trials[rows[0]["trial"]].user_attrs["spec_name"]


def test_hypervolume_history_matches_a_hand_computed_staircase(study: optuna.Study) -> None:
    points = trial_points(study)
    ref_top1, ref_gflops = reference_point(points)
    assert (ref_top1, ref_gflops) == (0.0, pytest.approx(1.1 * max(t.values[1] for t in study.trials)))
    rows = hypervolume_rows(points, (ref_top1, ref_gflops))
    volumes = [r["hypervolume"] for r in rows]
    assert volumes == sorted(volumes) and volumes[-1] > 0
    front = sorted((t.values[1], t.values[0]) for t in study.best_trials)  # (gflops, top1), top1 rising
    area = sum((nxt - g) * t for (g, t), nxt in zip(front, [g for g, _ in front[1:]] + [ref_gflops], strict=True))
    assert volumes[-1] == pytest.approx(area)


def test_importances_are_deterministic_per_objective_and_stage_effects_are_means(study: optuna.Study) -> None:
    rows, why_not = importance_rows(study)
    assert why_not is None and rows == importance_rows(study)[0]
    assert {(r["objective"], r["param"]) for r in rows} == {
        (o, f"{s}.kind") for o in ("top1", "gflops") for s in ("c2", "c3", "c4", "c5")
    }
    effects = {(r["stage"], r["kind"]): r for r in stage_effect_rows(study)}
    with_nl_in_c5 = [t for t in study.trials if t.params["c5.kind"] == "nl"]
    assert effects[("c5", "nl")]["trials"] == len(with_nl_in_c5)
    assert effects[("c5", "nl")]["mean_gflops"] == pytest.approx(
        sum(t.values[1] for t in with_nl_in_c5) / len(with_nl_in_c5)
    )


def test_empty_tiny_and_single_objective_studies_still_give_a_page(tmp_path: Path, synthetic) -> None:
    empty = optuna.create_study(study_name="empty", directions=["maximize", "minimize"])
    assert "No completed trials yet" in write_report(empty, tmp_path / "empty.html").read_text()
    tiny = synthetic.make_study(synthetic.records(1), name="tiny")
    text = write_report(tiny, tmp_path / "tiny.html").read_text()
    assert "Parameter importances need" in text and 'id="pareto-plot"' in text
    single = optuna.create_study(study_name="single", direction="maximize")
    for top1 in (0.5, 0.6):
        trial = single.ask()
        trial.suggest_categorical("c2.kind", ["none", "se"])
        set_constraints(trial, {"gflops_budget": -1.0})
        trial.set_user_attr("scores", {"gflops": 4.1, "top1": top1, "params": 25_557_032})
        single.tell(trial, top1)
    assert [p.on_front for p in trial_points(single)] == [False, True]
    assert 'id="pareto-plot"' in write_report(single, tmp_path / "single.html").read_text()
    assert all(feasible(t) for t in single.trials)


def chromium(page: Path, tmp_path: Path, *flags: str) -> str:
    """Run headless Chromium on `page` (offline, no GPU, fresh profile) and return its stdout."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1400,2400", "--virtual-time-budget=5000", *flags,
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def colour_count(png: Path, colour: tuple[int, int, int], box: tuple[int, int, int, int]) -> int:
    """Pixels within ±12 of `colour` per channel inside `box` (left, top, right, bottom)."""
    import numpy as np
    from PIL import Image

    region = np.asarray(Image.open(png).convert("RGB").crop(box)).astype(int)
    return int((np.abs(region - np.array(colour)) <= 12).all(axis=-1).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (tests/install.sh installs it as root)")
def test_report_renders_a_non_empty_pareto_plot_in_headless_chromium(
    study: optuna.Study, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = write_report(study, tmp_path / "report.html")
    assert "cdn.plot.ly" not in page.read_text()[:2000]  # plotly.js is inline: the page needs no network
    dom = chromium(page, tmp_path, "--dump-dom")
    pareto_div = dom[dom.index('id="pareto-plot"') : dom.index('id="hypervolume-plot"')]
    assert "scatterlayer" in pareto_div
    assert len(re.findall(r'class="point"', pareto_div)) == len(study.trials)

    shot = tmp_path / "report.png"
    chromium(page, tmp_path, f"--screenshot={shot}")
    plot_box = (0, 0, 1400, 1100)  # the title, the Pareto plot and the front's table
    assert colour_count(shot, FRONT_RED, plot_box) > 150
    assert colour_count(shot, INFEASIBLE_GREY, plot_box) > 50
    example = tmp_path_factory.getbasetemp() / "report-example.png"
    shutil.copy(shot, example)
    print(f"report screenshot: {example}")

    empty = write_report(optuna.create_study(directions=["maximize", "minimize"]), tmp_path / "empty.html")
    chromium(empty, tmp_path, f"--screenshot={tmp_path / 'empty.png'}")
    assert colour_count(tmp_path / "empty.png", FRONT_RED, plot_box) == 0  # the check can fail
