"""`attnas fidelity` on a real tiny digits study: the linked study, the numbers, a rerun, and the report page."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import optuna
import pytest
from scipy import stats
from test_report import CHROMIUM, chromium, colour_columns
from typer.testing import CliRunner

from studies import config as cfg
from studies import plots
from studies.cli import app
from studies.fidelity import PAIR_ATTR, SEED_ATTR, STUDY_ATTR, linked_name, ranking_text, runs_to_rank
from studies.fidelity_stats import runs_for_tau, spread_and_noise
from studies.records import front_candidates, pareto_front, records
from studies.report import report_data, report_html, study_report_data, write_report
from studies.worker import start, work

optuna.logging.set_verbosity(optuna.logging.WARNING)
FLAGS = ["--extra", "2", "--seeds", "2", "--epochs-factor", "2", "--no-wandb"]
FIDELITY_PINK = tuple(int(plots.FIDELITY[i : i + 2], 16) for i in (1, 3, 5))


def linked_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=linked_name(name), storage=url).get_trials()


@pytest.mark.slow
def test_fidelity_measures_stores_resumes_and_reports(tiny_study, tmp_path: Path, monkeypatch) -> None:
    path = tiny_study(trials=4, epochs=1)
    monkeypatch.chdir(tmp_path)
    config = cfg.read_file(path)
    url = config.storage
    ctx, parent = start(config, join=True)
    work(ctx, parent)  # the proxy study: 4 real 1-epoch digits trials
    proxy = {r.spec_id: r for r in front_candidates(records(parent))}
    assert len(proxy) >= 3, "the tiny study should train 3+ distinct architectures"

    first = CliRunner().invoke(app, ["fidelity", str(path), *FLAGS])
    assert first.exit_code == 0, first.output
    for text in ("Kendall tau", "Spearman rho", "95% CI", "seed sigma (pooled)", "still on the high-fidelity front"):
        assert text in first.stdout

    # The linked study: every (architecture, seed) pair trained once, at twice the epochs, with its own seed.
    trials = linked_trials(url, config.name)
    pairs = [(t.user_attrs[PAIR_ATTR]["spec_id"], t.user_attrs[SEED_ATTR]) for t in trials]
    assert len(pairs) == len(set(pairs)) == 2 * len({p[0] for p in pairs})
    assert {p[1] for p in pairs} == {0, 1}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(t.user_attrs["attnas"]["epochs"] == 2 and t.user_attrs["attnas"]["spec_id"] == s for t, (s, _) in
               zip(trials, pairs, strict=True))
    front = {r.spec_id for r in pareto_front(records(parent))}
    assert front <= {p[0] for p in pairs} and len({p[0] for p in pairs}) == len(front) + min(2, len(proxy) - len(front))

    # The stored numbers agree with the linked study's own trials, recomputed here.
    stored = optuna.load_study(study_name=config.name, storage=url).user_attrs[STUDY_ATTR]
    runs: dict[str, list[float]] = {}
    for t, (spec_id, _) in zip(trials, pairs, strict=True):
        runs.setdefault(spec_id, []).append(t.user_attrs["attnas"]["top1"])
    order = sorted(runs, key=lambda k: proxy[k].number)
    assert [a["spec_id"] for a in stored["architectures"]] == order
    means = [sum(runs[k]) / len(runs[k]) for k in order]
    assert [a["mean_top1"] for a in stored["architectures"]] == pytest.approx(means)
    tau = stats.kendalltau([proxy[k].top1 for k in order], means).statistic
    if stored["kendall_tau"]["value"] is not None:
        assert stored["kendall_tau"]["value"] == pytest.approx(tau)
        assert stored["kendall_tau"]["low"] <= stored["kendall_tau"]["value"] <= stored["kendall_tau"]["high"]
    sigmas = [stats.tstd(runs[k]) for k in order]
    assert [a["seed_sigma"] for a in stored["architectures"]] == pytest.approx(sigmas)
    assert stored["front_size"] == len(front) and 0 <= stored["front_kept"] <= len(front)
    spread, sigma = spread_and_noise(runs)  # how many runs of this training ranking them takes
    printed = " ".join(first.stdout.split())  # the console wraps long lines
    assert "true spread between architectures" in printed
    assert stored["true_spread"] == pytest.approx(spread)
    if spread > 0:
        assert stored["runs_for_tau_0.6"] == pytest.approx(runs_for_tau(0.6, spread, sigma))
        assert stored["runs_for_tau_0.6"] < stored["runs_for_repeat_tau_0.7"]
        assert f"~{max(stored['runs_for_tau_0.6'], 1):.1f} run(s)" in printed
    else:
        assert stored["runs_for_tau_0.6"] is None and "no number of runs ranks them" in printed

    # A rerun trains nothing new and --json prints the same numbers.
    again = CliRunner().invoke(app, ["fidelity", str(path), *FLAGS, "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == stored
    assert [(t.number, t.datetime_complete) for t in linked_trials(url, config.name)] == [
        (t.number, t.datetime_complete) for t in trials]

    # The report: the fidelity section with its figure, drawn in headless Chromium.
    data = study_report_data(parent)
    assert data["fidelity"] == stored and data["front_noise"]["holdout_images"] == 40  # 4 per class × 10
    page = write_report(parent, tmp_path / "report.html")
    text = page.read_text()
    assert 'id="fidelity-plot"' in text and "Kendall τ" in text and "Seed σ" in text
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (tests/install.sh installs it as root)")
    dom = chromium(page, tmp_path, "--dump-dom")
    plot = dom[dom.index('id="fidelity-plot"') :]
    plot = plot[: plot.index("<h2>")]
    assert "scatterlayer" in plot
    assert len(re.findall(r'class="point[ "]', plot)) == len(stored["architectures"])
    shot = tmp_path / "report.png"
    chromium(page, tmp_path, f"--screenshot={shot}")
    assert colour_columns(shot, FIDELITY_PINK, (0, 0, 1400, 2400)).size > 5  # the scatter's markers are drawn
    bare = tmp_path / "bare.html"
    bare.write_text(report_html(report_data(records(parent), study_name=config.name)))
    chromium(bare, tmp_path, f"--screenshot={tmp_path / 'bare.png'}")
    assert colour_columns(tmp_path / "bare.png", FIDELITY_PINK, (0, 0, 1400, 2400)).size == 0  # the check can fail


def test_the_front_names_trials_off_it_that_are_within_noise_of_it(synthetic, attnas, tmp_path: Path) -> None:
    """A one-member front reads as an answer; a dominated trial not separated from it (at 1,000 held-out
    images) is named under the table, a clearly worse one is not, and a sharper noise drops the tie."""
    from studies.fidelity import study_front_noise
    from studies.records import DATA_ATTR

    url = f"sqlite:///{tmp_path / 'near.db'}"
    Record = synthetic.Record
    study = synthetic.make_study([Record(("none", "none", "none", "none"), 0.700, 4.1),
                                  Record(("none", "none", "none", "se"), 0.695, 4.2),  # 2.4 % costlier: not folded
                                  Record(("none", "none", "se", "none"), 0.500, 4.2)], storage=url, name="near")
    assert [r.number for r in pareto_front(records(study))] == [0]
    study.set_user_attr(DATA_ATTR, {"holdout_images": 1000})  # binomial se ≈ 0.015 a run: 0.005 apart is a tie
    assert study_front_noise(study)["near"] == [1]
    done = attnas("front", "--storage", url, "--study", "near")
    assert done.returncode == 0, done.stderr
    assert "within noise of the front, on none: #1 (" in done.stdout, done.stdout
    study.set_user_attr(DATA_ATTR, {"holdout_images": 1_000_000})  # se ≈ 0.0005: 0.005 apart is separated
    assert study_front_noise(study)["near"] == []
    assert "within noise of the front" not in attnas("front", "--storage", url, "--study", "near").stdout


def test_front_noise_marks_members_within_the_held_out_binomial_error(synthetic) -> None:
    """Single runs: two front members 5 points apart tie on 400 held-out images, not on 10,000."""
    from studies.fidelity import front_noise
    from studies.fidelity_stats import binomial_se

    rs = records(synthetic.make_study(synthetic.mixed(), name="noise"))
    front = pareto_front(rs)
    assert [r.top1 for r in front] == [0.61, 0.66]
    wide = front_noise(front, 400)  # se ≈ 0.024 each: 0.05 apart is within 1.96 × 0.034
    assert wide["pairs"] == [[front[0].number, front[1].number]] and wide["source"] == "binomial"
    assert wide["se"][front[0].number] == pytest.approx(binomial_se(0.61, 400))
    narrow = front_noise(front, 10_000)  # se ≈ 0.005: 0.05 apart is a real difference
    assert narrow["pairs"] == [] and narrow["ties"] == {front[0].number: [], front[1].number: []}
    data = report_data(rs, holdout=400)
    assert data["front"][0]["within_noise_of"] == [front[1].number]


def test_ranking_text_says_how_many_runs_rank_the_architectures() -> None:
    """Well-separated architectures need under one run each; twins need more than any; one run each says n/a;
    numbers stored before the figures existed print nothing."""
    apart = runs_to_rank({"a": [0.60, 0.62, 0.61], "b": [0.55, 0.57, 0.56], "c": [0.50, 0.49, 0.51]})
    assert 0 < apart["runs_for_tau_0.6"] < apart["runs_for_repeat_tau_0.7"] < 1
    # the means' variance less their own noise (each run 0.01 from its mean: sigma^2 / 3 runs)
    assert apart["true_spread"] == pytest.approx((statistics.variance([0.61, 0.56, 0.50]) - 0.01**2 / 3) ** 0.5)
    assert "~1.0 run(s) of this training each" in ranking_text(apart)  # one run does (the model says 0.0x)
    close = runs_to_rank({"a": [0.56, 0.62, 0.68], "b": [0.50, 0.56, 0.62], "c": [0.44, 0.50, 0.56]})
    assert close["runs_for_tau_0.6"] > 1 and f"~{close['runs_for_tau_0.6']:.1f} run(s)" in ranking_text(close)
    twins = runs_to_rank({"a": [0.60, 0.62, 0.58], "b": [0.62, 0.58, 0.60]})
    assert twins["true_spread"] == 0 and twins["runs_for_tau_0.6"] is None
    assert "no number of runs ranks them" in ranking_text(twins)
    assert "n/a" in ranking_text(runs_to_rank({"a": [0.6], "b": [0.5]}))
    assert ranking_text({"kendall_tau": {}}) == ""
