"""The HTML report: right rows from a contract-shaped study, and a page that really renders in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest

from studies import plots
from studies.constraints import set_constraints
from studies.records import Status, pareto_front, records
from studies.report import front_rows, report_data, study_report_data, write_report

optuna.logging.set_verbosity(optuna.logging.WARNING)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FRONT_RED, OVER_BUDGET_GREY = (214, 39, 40), (127, 127, 127)


@pytest.fixture(scope="module")
def study(synthetic) -> optuna.Study:
    """A digits-like study: 24 architectures, over half of them over the FLOP budget (never trained)."""
    return synthetic.make_study(synthetic.records(24, seed=1))


@pytest.fixture(scope="module")
def data(study: optuna.Study) -> dict:
    return study_report_data(study)


def test_front_and_points_are_trained_trials_only(study: optuna.Study, data: dict) -> None:
    rs = records(study)
    trained = {r.number for r in rs if r.status == Status.TRAINED}
    over = {r.number for r in rs if r.status == Status.OVER_BUDGET}
    reused = {r.number for r in rs if r.status == Status.REUSED}
    assert len(trained) >= 5 and len(over) >= 5 and reused and trained | over | reused == set(range(24))
    assert [r["number"] for r in data["front"]] == [r.number for r in pareto_front(rs)]
    assert {r["number"] for r in data["front"]} == {t.number for t in study.best_trials}
    assert {p["number"] for p in data["points"]} == trained  # no over-budget trial drawn at top-1 0, no copy
    assert {r["number"] for r in data["over_budget"]} == over
    assert all(p["top1"] > 0.5 for p in data["points"])
    rows = front_rows(data)
    assert [r["trial"] for r in rows] == sorted((r["number"] for r in data["front"]),
                                                key=lambda n: study.trials[n].values[1])
    assert rows[0]["name"] == study.trials[rows[0]["trial"]].user_attrs["attnas"]["spec_name"]
    json.dumps(data, allow_nan=False)  # what `attnas report --json` prints


def test_axes_span_the_trained_trials_and_over_budget_ones_are_drawn_apart(study: optuna.Study, data: dict) -> None:
    trained = [t.values[1] for t in study.trials if t.user_attrs["attnas"]["outcome"] == "trained"]
    over = [t.values[1] for t in study.trials if t.user_attrs["attnas"]["outcome"] == "over_budget"]
    low, high = plots.pareto_figure(data).layout.xaxis.range
    assert low < min(trained) and high > max(trained)
    assert high - low == pytest.approx((max(trained) - min(trained)) * 1.12)
    assert high < min(over)  # every over-budget trial is off this axis ...
    strip = plots.over_budget_figure(data)
    assert sorted(strip.data[0].x) == sorted(over)  # ... and on its own strip
    y_low, _ = plots.pareto_figure(data).layout.yaxis.range
    assert y_low > 0.5  # no top-1 0 stretching the axis


def test_hypervolume_history_matches_a_hand_computed_staircase(study: optuna.Study, data: dict) -> None:
    ref_top1, ref_gflops = data["hypervolume"]["reference"]
    trained = [t.values[1] for t in study.trials if t.user_attrs["attnas"]["outcome"] == "trained"]
    assert (ref_top1, ref_gflops) == (0.0, pytest.approx(1.1 * max(trained)))
    volumes = [r["hypervolume"] for r in data["hypervolume"]["history"]]
    assert volumes == sorted(volumes) and volumes[-1] > 0
    front = sorted((t.values[1], t.values[0]) for t in study.best_trials)  # (gflops, top1), top1 rising
    area = sum((nxt - g) * t for (g, t), nxt in zip(front, [g for g, _ in front[1:]] + [ref_gflops], strict=True))
    assert volumes[-1] == pytest.approx(area) == data["hypervolume"]["final"]


def test_stage_effects_and_importances_stand_on_trained_trials_with_a_spread(study: optuna.Study,
                                                                            data: dict) -> None:
    trained = [t for t in study.trials if t.user_attrs["attnas"]["outcome"] == "trained"]
    effects = {(r["stage"], r["kind"]): r for r in data["stage_effects"]}
    for stage in ("c2", "c3", "c4", "c5"):
        assert sum(r["trials"] for (s, _), r in effects.items() if s == stage) == len(trained)
    key = max(effects, key=lambda k: effects[k]["trials"])
    group = [t for t in trained if t.params[f"{key[0]}.kind"] == key[1]]
    top1 = [t.values[0] for t in group]
    assert effects[key]["trials"] == len(group) >= 2
    assert effects[key]["mean_top1"] == pytest.approx(sum(top1) / len(top1))
    assert effects[key]["std_top1"] == pytest.approx(float(np.std(top1, ddof=1)))
    importances = data["importances"]
    assert importances["note"] is None and importances["trials"] == len(trained)
    assert {(r["objective"], r["param"]) for r in importances["rows"]} == {
        (o, f"{s}.kind") for o in ("top1", "gflops") for s in ("c2", "c3", "c4", "c5")
    }
    assert all(r["trials"] == len(trained) and r["std"] >= 0 for r in importances["rows"])
    assert importances == study_report_data(study)["importances"]  # fixed seeds: deterministic
    bars = plots.stage_effect_figure(data["stage_effects"])
    assert all(list(b.text) == [f"n={r['trials']}" for r in data["stage_effects"] if r["kind"] == b.name]
               for b in bars.data)
    assert all(b.error_y.array is not None for b in bars.data)


def test_over_budget_zeros_do_not_drive_the_importances(synthetic) -> None:
    """Trained top-1 depends on c3 only; every c2=nl spec is over budget (told 0.0). Counting those zeros
    would credit c2 with the top-1 importance; over trained trials only, c3 leads."""
    records_ = []
    grid = [(a, b, c) for c in ("none", "se") for a in ("none", "se", "nl") for b in ("none", "se", "gc")]
    for i, (c2, c3, c4) in enumerate(grid):
        gflops = 4.2 + 0.05 * (i % 3) + (2.0 if c2 == "nl" else 0.0)
        top1 = 0.5 + {"none": 0.0, "se": 0.05, "gc": 0.1}[c3] + 0.001 * i
        over = gflops > synthetic.budget
        records_.append(synthetic.Record((c2, c3, c4, "none"), None if over else top1, gflops,
                                         "over_budget" if over else "trained"))
    study = synthetic.make_study(records_, name="zeros")
    rows = {r["param"]: r["importance"] for r in study_report_data(study)["importances"]["rows"]
            if r["objective"] == "top1"}
    assert max(rows, key=rows.get) == "c3.kind"
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    naive = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), target=lambda t: t.values[0])
    assert max(naive, key=naive.get) == "c2.kind"  # the failure this guards against


def test_failed_trials_error_lines_are_on_the_page(tmp_path: Path, synthetic) -> None:
    study = synthetic.make_study(synthetic.mixed(), name="mixed")
    text = write_report(study, tmp_path / "mixed.html").read_text()
    assert "trial 6: RuntimeError: CUDA error: out of memory" in text
    assert {r["number"]: r["status"] for r in report_data(records(study))["not_trained"]} == {
        4: "reused", 5: "diverged", 6: "failed"}


def test_empty_tiny_and_single_objective_studies_still_give_a_page(tmp_path: Path, synthetic) -> None:
    empty = optuna.create_study(study_name="empty", directions=["maximize", "minimize"])
    assert "No trained trials yet" in write_report(empty, tmp_path / "empty.html").read_text()
    tiny = synthetic.make_study(synthetic.records(1), name="tiny")
    text = write_report(tiny, tmp_path / "tiny.html").read_text()
    assert "Parameter importances need" in text and 'id="pareto-plot"' in text
    single = optuna.create_study(study_name="single", direction="maximize")
    for top1 in (0.5, 0.6):
        trial = single.ask()
        trial.suggest_categorical("c2.kind", ["none", "se"])
        set_constraints(trial, {"gflops_budget": -1.0, "front_eligible": -1.0})
        trial.set_user_attr("attnas", {"outcome": "trained", "gflops": 4.1, "top1": top1, "params": 25_557_032})
        single.tell(trial, top1)
    assert [r["number"] for r in study_report_data(single)["front"]] == [1]
    assert 'id="pareto-plot"' in write_report(single, tmp_path / "single.html").read_text()


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


def colour_columns(png: Path, colour: tuple[int, int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """x positions (page pixels) of the columns in `box` holding any pixel within ±12 of `colour`."""
    from PIL import Image

    region = np.asarray(Image.open(png).convert("RGB").crop(box)).astype(int)
    hits = (np.abs(region - np.array(colour)) <= 12).all(axis=-1)
    return np.flatnonzero(hits.any(axis=0)) + box[0]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (tests/install.sh installs it as root)")
def test_report_in_headless_chromium_spans_trained_gflops_and_labels_bar_counts(
    study: optuna.Study, data: dict, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = write_report(study, tmp_path / "report.html")
    assert "cdn.plot.ly" not in page.read_text()[:2000]  # plotly.js is inline: the page needs no network
    dom = chromium(page, tmp_path, "--dump-dom")
    pareto_div = dom[dom.index('id="pareto-plot"') : dom.index('id="over-budget-plot"')]
    assert "scatterlayer" in pareto_div
    assert len(re.findall(r'class="point[ "]', pareto_div)) == len(data["points"])  # trained ones only
    strip_div = dom[dom.index('id="over-budget-plot"') : dom.index("<h2>Pareto front")]
    assert len(re.findall(r'class="point[ "]', strip_div)) == len(data["over_budget"])
    stage_div = dom[dom.index('id="stage-effect-plot"') :]
    shown = re.findall(r'class="bartext[^"]*"[^>]*>(?:<[^>]+>)*\s*(n=\d+)', stage_div)
    assert sorted(shown) == sorted(2 * [f"n={r['trials']}" for r in data["stage_effects"]])  # both panels

    shot = tmp_path / "report.png"
    chromium(page, tmp_path, f"--screenshot={shot}")
    plot_box = (0, 80, 1300, 700)  # the Pareto plot under the title
    red = colour_columns(shot, FRONT_RED, plot_box)
    assert red.size > 20
    # The front spans the plot's width: the axis is the trained trials' span, not stretched by
    # over-budget GFLOPs (the plot area is ~1100 px wide; front from cheapest to dearest trained trial).
    front_share = (max(r["gflops"] for r in data["front"]) - min(r["gflops"] for r in data["front"])) / (
        data["axes"]["gflops"][1] - data["axes"]["gflops"][0])
    assert red.max() - red.min() > 0.8 * front_share * 1000
    strip_box = (0, 700, 1300, 900)
    assert colour_columns(shot, OVER_BUDGET_GREY, strip_box).size > 5
    example = tmp_path_factory.getbasetemp() / "report-example.png"
    shutil.copy(shot, example)
    print(f"report screenshot: {example}")

    empty = write_report(optuna.create_study(directions=["maximize", "minimize"]), tmp_path / "empty.html")
    chromium(empty, tmp_path, f"--screenshot={tmp_path / 'empty.png'}")
    assert colour_columns(tmp_path / "empty.png", FRONT_RED, plot_box).size == 0  # the check can fail
