"""benchmarks/search_tally.py: every kept search is checked against the truth without its own runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
import pytest  # noqa: E402
from known_answer import ground_truth  # noqa: E402
from search_odds import pooled  # noqa: E402
from search_tally import base_taus, runs_needed, tally  # noqa: E402


def runs_file(path: Path, runs: dict[str, list[float]]) -> str:
    path.write_text("".join(json.dumps({"name": n, "seed": i, "top1": t}) + "\n"
                            for n, v in runs.items() for i, t in enumerate(v)))
    return str(path)


def test_a_search_is_checked_against_the_others_not_its_own_runs(tmp_path: Path) -> None:
    base = runs_file(tmp_path / "base.jsonl", {"a": [0.60, 0.61, 0.59, 0.60], "b": [0.55, 0.56, 0.54, 0.55],
                                               "c": [0.50, 0.51, 0.49, 0.50]})
    lucky = runs_file(tmp_path / "lucky.jsonl", {"a": [0.58], "b": [0.70, 0.71, 0.69, 0.70, 0.70, 0.71],
                                                 "c": [0.50]})  # b led it, on runs far above b's others
    fair = runs_file(tmp_path / "fair.jsonl", {"a": [0.61, 0.60], "b": [0.55], "c": [0.50]})
    names = {"a", "b", "c"}
    # with its own runs in the truth, the lucky search's b would be (tied for) the truth's best
    assert "b" in ground_truth(pooled([base, lucky, fair]))["best"]
    rows = {Path(r["search"]).stem: r for r in tally([base], [lucky, fair], names)}
    assert rows["lucky"]["answer"] == "b" and rows["lucky"]["runs"] == 6 and rows["lucky"]["truth_rank"] == 2
    assert not rows["lucky"]["hit"] and rows["lucky"]["truth_best"] == ["a"]
    # the fair search is checked against a truth that holds the lucky runs: b leads it, a is within noise
    assert rows["fair"]["answer"] == "a" and rows["fair"]["truth_rank"] == 2
    assert rows["fair"]["hit"] and set(rows["fair"]["truth_best"]) == {"a", "b"}


def test_each_truth_best_is_placed_on_the_search_s_front_within_noise_of_it_or_off(tmp_path: Path) -> None:
    """One cost level (GFLOPs within the 2 % tolerance): the search shows its most accurate placement; a truth
    best its runs leave within noise of that is a tie under the table, one they clearly part from it is off."""
    tied = [0.58, 0.62] * 6  # the truth's best: a and b, tied, with or without either search's runs
    base = runs_file(tmp_path / "base.jsonl", {"a": tied, "b": tied, "c": [0.40, 0.41, 0.39]})
    near = runs_file(tmp_path / "near.jsonl", {"a": [0.60, 0.62], "b": [0.59, 0.61], "c": [0.40]})
    far = runs_file(tmp_path / "far.jsonl", {"a": [0.61, 0.60, 0.62], "b": [0.50], "c": [0.40]})
    gflops = {"a": 1.00, "b": 1.001, "c": 1.002}
    rows = {Path(r["search"]).stem: r for r in tally([base], [near, far], {"a", "b", "c"}, gflops, 2500)}
    assert rows["near"]["truth_best_places"] == {"a": "shown", "b": "within noise"}
    assert rows["far"]["truth_best_places"] == {"a": "shown", "b": "off"}  # far's b: 11 points under a
    assert "truth_best_places" not in tally([base], [near, far], {"a", "b", "c"})[0]  # no GFLOPs: not placed


def test_a_search_s_ranking_is_measured_by_its_means_and_by_its_first_runs_alone(tmp_path: Path) -> None:
    """Kendall tau against the truth's means: this search's means keep the truth's order a > b > c > d, its
    first runs (seed 0 of each) reverse it, so the one-run proxy and the seeded search read apart."""
    base = runs_file(tmp_path / "base.jsonl", {"a": [0.60, 0.61], "b": [0.55, 0.56], "c": [0.50, 0.51],
                                               "d": [0.45, 0.46]})
    search = runs_file(tmp_path / "search.jsonl", {"a": [0.40, 0.80], "b": [0.45, 0.65], "c": [0.50, 0.50],
                                                   "d": [0.55, 0.35]})
    (row,) = tally([base], [search], {"a", "b", "c", "d"})
    assert row["truth_tau"]["value"] == 1.0 and row["first_run_tau"]["value"] == -1.0
    assert row["runs_per_arch"] == 2
    # the other way round: each base seed, and their mean, against the searches' pooled means (a > b > c > d)
    taus = base_taus([base], [search], {"a", "b", "c", "d"})
    assert set(taus) == {"seed 0", "seed 1", "their mean"} and all(t["value"] == 1.0 for t in taus.values())


def test_runs_needed_draws_proxies_from_unconditioned_runs_and_ranks_them_against_every_other(tmp_path: Path) -> None:
    """Base runs and each search's first run are the unconditioned pool; a search's extra seeds only join the
    truth. Here the extras reverse the pool's order a > b > c > d, so ground-truth tau is negative for every draw
    while two disjoint draws agree; with more runs the truth leans ever more on the pool, so tau rises with k."""
    order = {"a": 0.70, "b": 0.60, "c": 0.50, "d": 0.40}
    base = runs_file(tmp_path / "base.jsonl", {n: [m + 0.001 * i for i in range(4)] for n, m in order.items()})
    flipped = {"a": 0.10, "b": 0.20, "c": 0.30, "d": 0.40}  # 30 extra seeds each, far below/above the pool
    searches = [runs_file(tmp_path / f"s{j}.jsonl", {n: [m, *[flipped[n]] * 30] for n, m in order.items()})
                for j in range(2)]
    rows, _ = runs_needed([base], searches, set(order), most=3, draws=50)
    assert [r["k"] for r in rows] == [1, 2, 3]
    assert all(r["repeat_tau"]["mean"] == 1.0 for r in rows)  # the pool is ordered whatever the draw
    assert all(r["truth_tau"]["p90"] == -1.0 for r in rows)  # the extras (60 a placement) dominate the truth
    with pytest.raises(SystemExit, match="ask for 3 or fewer"):  # 4 base runs + 2 first runs: 6 a placement
        runs_needed([base], searches, set(order), most=4, draws=5)


def test_runs_needed_finds_no_order_in_pure_noise(tmp_path: Path) -> None:
    """40 placements of one mean: the draws' mean tau is 0 up to the one dataset's chance (sd 0.04 for the truth
    and 0.016 for the repeats over 20 datasets, measured), far below the first test's 1."""
    import numpy as np

    rng = np.random.default_rng(1)
    names = [f"p{i}" for i in range(40)]
    base = runs_file(tmp_path / "base.jsonl", {n: list(0.5 + 0.02 * rng.standard_normal(10)) for n in names})
    searches = [runs_file(tmp_path / f"s{j}.jsonl", {n: [float(0.5 + 0.02 * rng.standard_normal())] for n in names})
                for j in range(2)]
    (row,), _ = runs_needed([base], searches, set(names), most=1, draws=100)
    assert abs(row["truth_tau"]["mean"]) < 0.2 and abs(row["repeat_tau"]["mean"]) < 0.1
    assert row["repeat_tau"]["p10"] < 0 < row["repeat_tau"]["p90"]

