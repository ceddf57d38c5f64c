"""benchmarks/search_tally.py: every kept search is checked against the truth without its own runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
from known_answer import ground_truth  # noqa: E402
from search_odds import pooled  # noqa: E402
from search_tally import tally  # noqa: E402


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
    rows = {Path(r["search"]).stem: r for r in tally(base, [lucky, fair], names)}
    assert rows["lucky"]["answer"] == "b" and rows["lucky"]["runs"] == 6 and rows["lucky"]["truth_rank"] == 2
    assert not rows["lucky"]["hit"] and rows["lucky"]["truth_best"] == ["a"]
    # the fair search is checked against a truth that holds the lucky runs: b leads it, a is within noise
    assert rows["fair"]["answer"] == "a" and rows["fair"]["truth_rank"] == 2
    assert rows["fair"]["hit"] and set(rows["fair"]["truth_best"]) == {"a", "b"}
