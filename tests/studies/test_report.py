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
from studies.config import from_dict
from studies.constraints import set_constraints
from studies.records import Status, pareto_front, records, shown_front
from studies.report import front_rows, report_data, report_html, study_report_data, write_report
from studies.stopping import Rungs, record_and_decide, rung_records, stopped

optuna.logging.set_verbosity(optuna.logging.WARNING)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FRONT_RED, OVER_BUDGET_GREY = (214, 39, 40), (127, 127, 127)
FULL, ETA = 9, 3  # MO-ASHA's rungs at epochs 1 and 3 of 9


@pytest.fixture(scope="module")
def study(synthetic) -> optuna.Study:
    """A digits-like study: 24 architectures, over half of them over the FLOP budget (never trained)."""
    return synthetic.make_study(synthetic.records(24, seed=1))


@pytest.fixture(scope="module")
def data(study: optuna.Study) -> dict:
    return study_report_data(study)


def moasha_trial(study: optuna.Study, kinds: tuple[str, ...], gflops: float, curve: list[float], synthetic) -> None:
    """Train `curve` epoch by epoch through the real MO-ASHA rule and record the trial as the worker does:
    stopped at the first rung that says stop (told PRUNED, its curve ending there), else trained to the end."""
    trial = study.ask()
    rungs = Rungs(FULL, ETA)
    done = next((e for e in range(1, len(curve) + 1)
                 if e in rungs and not record_and_decide(study, trial.number, e, curve[e - 1], gflops, eta=ETA)),
                len(curve))
    outcome = "trained" if done == FULL else "stopped"
    spec = synthetic.spec_of(kinds)
    set_constraints(trial, {"gflops_budget": gflops - synthetic.budget,
                            "front_eligible": -1.0 if outcome == "trained" else 1.0})
    trial.set_user_attr("attnas", {
        "spec": spec.to_dict(), "spec_id": spec.id, "spec_name": spec.name, "gflops": gflops, "params": 25_600_000,
        "outcome": outcome, "top1": curve[done - 1], "top5": None, "epochs": done, "start_epoch": 0,
        "curve": curve[:done], "seconds": 1.0, "reused_from": None, "error": None, "artifacts": [],
    })
    if outcome == "stopped":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, [curve[-1], gflops])


@pytest.fixture(scope="module")
def moasha(synthetic, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, optuna.Study]:
    """A moasha study on SQLite: #0-#2 train all 9 epochs (too few at the rungs to judge them), #3 is the
    worst at rung 1 and #4 the best at rung 1 but dominated at rung 3, so MO-ASHA stops them there."""
    url = f"sqlite:///{tmp_path_factory.mktemp('moasha') / 'moasha.db'}"
    study = synthetic.make_study([], storage=url, name="moasha")
    config = {"name": "moasha", "schedule": {"epochs": FULL}, "early_stopping": {"kind": "moasha", "eta": ETA}}
    study.set_user_attr("attnas.config", from_dict(config).to_dict())
    for kinds, gflops, (first, last) in (
        (("none", "se", "none", "none"), 4.2, (0.30, 0.62)),
        (("se", "se", "gc", "none"), 4.6, (0.35, 0.66)),
        (("none", "none", "gc", "none"), 4.5, (0.32, 0.60)),
        (("gc", "none", "se", "se"), 4.9, (0.10, 0.50)),
        (("se", "none", "none", "se"), 4.8, (0.40, 0.41)),
    ):
        moasha_trial(study, kinds, gflops, [round(float(v), 4) for v in np.linspace(first, last, FULL)], synthetic)
    return url, study


def test_front_and_points_are_trained_trials_only(study: optuna.Study, data: dict) -> None:
    rs = records(study)
    trained = {r.number for r in rs if r.status == Status.TRAINED}
    over = {r.number for r in rs if r.status == Status.OVER_BUDGET}
    reused = {r.number for r in rs if r.status == Status.REUSED}
    assert len(trained) >= 5 and len(over) >= 5 and reused and trained | over | reused == set(range(24))
    assert [r["number"] for r in data["front"]] == [r.number for r in shown_front(rs)]
    # the shown members and those folded into them (same cost within 2%) are exactly the exact front
    shown_and_folded = {r["number"] for r in data["front"]} | {n for r in data["front"] for n in r["same_cost"]}
    assert shown_and_folded == {r.number for r in pareto_front(rs)} == {t.number for t in study.best_trials}
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


def test_stopped_trials_curves_end_at_their_rung_beside_trained_ones(moasha: tuple[str, optuna.Study], attnas,
                                                                     tmp_path: Path) -> None:
    url, moasha_study = moasha
    data = study_report_data(moasha_study)
    curves = data["curves"]
    assert curves["epochs"] == FULL and curves["rungs"] == list(Rungs(FULL, ETA, 1).levels) == [1, 3]
    rows = {t["number"]: t for t in curves["trials"]}
    assert set(rows) == {0, 1, 2, 3, 4}
    stops = {n: r.epoch for n, r in stopped(rung_records(moasha_study)).items()}
    assert stops == {3: 1, 4: 3} == {n: t["stopped_at"] for n, t in rows.items() if t["stopped_at"] is not None}
    for number, rung in stops.items():  # a stopped curve ends at its rung, short of the schedule
        assert rows[number]["status"] == "stopped" and rows[number]["epochs"] == list(range(1, rung + 1))
        assert len(rows[number]["top1"]) == rung < FULL
    for number in (0, 1, 2):
        assert rows[number]["status"] == "trained" and rows[number]["epochs"] == list(range(1, FULL + 1))
    assert curves["stopped"] == [{"epoch": 1, "trials": 1}, {"epoch": 3, "trials": 1}]
    assert not {3, 4} & {r["number"] for r in data["front"]}  # never on the front

    printed = attnas("report", "--storage", url, "--study", "moasha", "--json")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["curves"] == json.loads(json.dumps(curves, allow_nan=False))

    text = write_report(moasha_study, tmp_path / "moasha.html").read_text()
    assert "<h2 id='learning-curves'>Learning curves</h2>" in text and 'id="curves-plot"' in text
    assert ("2 trials stopped early by MO-ASHA: 1 at epoch 1, 1 at epoch 3 (rungs at epochs 1, 3; a full run "
            "is 9 epochs).") in text
    figure = plots.curves_figure(curves)
    dashed = [t for t in figure.data if t.mode == "lines+markers" and t.line.dash == "dash"]
    assert sorted(t.customdata[0] for t in dashed) == [3, 4]
    assert [s.x0 for s in figure.layout.shapes] == [1, 3]  # the rung lines
    only_stopped = report_html(report_data([r for r in records(moasha_study) if r.status == Status.STOPPED]))
    assert "No trained trials yet" in only_stopped and 'id="curves-plot"' in only_stopped  # still drawn, with its js


def test_the_curves_section_needs_curves(synthetic) -> None:
    """Trained trials of the shared synthetic study have curves, no rungs; the mixed study's untrained ones none."""
    curves = report_data(records(synthetic.make_study(synthetic.records(3), name="few")))["curves"]
    assert curves["trials"] and curves["rungs"] == [] and curves["stopped"] == []
    study = synthetic.make_study([r for r in synthetic.mixed() if r.outcome != "trained"], name="untrained")
    data = report_data(records(study))
    assert data["curves"]["trials"] == [] and "learning-curves" not in report_html(data)


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


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (tests/install.sh installs it as root)")
def test_learning_curves_render_in_headless_chromium(moasha: tuple[str, optuna.Study], tmp_path: Path) -> None:
    _, study = moasha
    curves = study_report_data(study)["curves"]
    dom = chromium(write_report(study, tmp_path / "moasha.html"), tmp_path, "--dump-dom")
    div = dom[dom.index('id="curves-plot"') : dom.index('id="hypervolume-plot"')]
    assert len(re.findall(r'class="trace scatter', div)) == len(curves["trials"]) + 1  # + the stop markers
    drawn = sum(len(t["epochs"]) for t in curves["trials"]) + sum(s["trials"] for s in curves["stopped"])
    assert len(re.findall(r'class="point[ "]', div)) == drawn
    assert re.findall(r'data-unformatted="(rung \d+)"', div) == ["rung 1", "rung 3"]
